package core

import "sync/atomic"

// Stats is a snapshot of a Store's counters since it was created. Counters only grow: compute rates and
// ratios (the cache hit ratio, CacheHits / (CacheHits + CacheMisses)) from two snapshots.
type Stats struct {
	// CacheHits and CacheMisses count memcached reads that found, or did not find, a live or destroyed
	// session; CacheErrors memcached operations that failed (network errors, timeouts, an open breaker).
	CacheHits, CacheMisses, CacheErrors uint64
	// Corrupt counts envelopes from either tier that failed to decode or authenticate (tampering, a broken
	// writer), each a miss. Unreadable counts envelopes left in place that this Store cannot read (another
	// key ring, plain where sealing is required, a newer format, an unknown codec): a configuration to fix.
	Corrupt, Unreadable uint64
	// DBReads counts row loads, DBWrites row writes, batched or not, DBErrors failed durable-tier calls.
	DBReads, DBWrites, DBErrors uint64
	// Conflicts counts writes that found the session changed since it was read (the Manager re-reads and
	// re-applies its changes). Merges counts copies merged key by key with a row that had moved on (a
	// change written around a memcached node, or by a server that could not read the copy).
	Conflicts, Merges uint64
	// SyncPending is the number of sessions the background writer tracks now, a batch being written
	// included; SyncDropped counts those it could not track (SyncQueueSize).
	SyncPending int
	SyncDropped uint64
	// ReapExtended counts expired rows the reaper rewrote from a live memcached copy, ReapDeleted rows it
	// deleted (dead sessions, expired tombstones), ReapErrors its failures (archive hook, batches).
	ReapExtended, ReapDeleted, ReapErrors uint64
	// Nodes maps each memcached node's address to whether its circuit breaker is open (its sessions served
	// by the database until a probe succeeds); nil without memcached.
	Nodes map[string]bool
}

// counters are the Store's own counters; memcached's are in its client.
type counters struct {
	cacheHits, cacheMisses, corrupt, unreadable        atomic.Uint64
	dbReads, dbWrites, dbErrors, conflicts, merges     atomic.Uint64
	syncDropped, reapExtended, reapDeleted, reapErrors atomic.Uint64
}

// Stats returns a snapshot of the Store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	st := Stats{
		CacheHits: c.cacheHits.Load(), CacheMisses: c.cacheMisses.Load(), Corrupt: c.corrupt.Load(),
		Unreadable: c.unreadable.Load(), DBReads: c.dbReads.Load(), DBWrites: c.dbWrites.Load(),
		DBErrors: c.dbErrors.Load(), Conflicts: c.conflicts.Load(), Merges: c.merges.Load(),
		SyncPending: s.writer.pendingCount(), SyncDropped: c.syncDropped.Load(),
		ReapExtended: c.reapExtended.Load(), ReapDeleted: c.reapDeleted.Load(), ReapErrors: c.reapErrors.Load(),
	}
	if s.mc != nil {
		st.CacheErrors, st.Nodes = s.mc.Errors(), s.mc.Nodes()
	}
	return st
}
