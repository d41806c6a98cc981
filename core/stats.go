package core

import (
	"sort"
	"sync/atomic"
)

// Stats is a snapshot of a Store's counters since it was created. Every
// field counts events; none is reset by reading. The figure operators watch
// is CacheHitRatio.
type Stats struct {
	// CacheHits and CacheMisses count memcached reads that found, or did not
	// find, a live session. Corrupt entries count as misses and in CacheCorrupt.
	CacheHits, CacheMisses, CacheCorrupt uint64
	// SealFailures counts envelopes, from either tier, that failed to open
	// (see ErrNotAuthentic): each was treated as a miss. Anything above zero
	// means tampering, a key missing from some server's ring, or plain-text
	// entries met by a Store with keys.
	SealFailures uint64
	// CacheErrors counts memcached operations that failed (network errors,
	// timeouts). CacheShortCircuits counts operations skipped because the
	// node's circuit breaker was open.
	CacheErrors, CacheShortCircuits uint64
	// BreakerOpens and BreakerCloses count circuit breaker transitions over
	// all nodes.
	BreakerOpens, BreakerCloses uint64

	// DBReads counts durable-tier loads (memcached misses and fallbacks);
	// DBReadErrors those that failed. DBCorrupt counts rows that could not be
	// decoded (treated as absent).
	DBReads, DBReadErrors, DBCorrupt uint64
	// DBWrites counts rows written to the durable tier, on the request path
	// or by the background writer; DBWriteErrors the attempts that failed.
	// DBWritesSkipped counts session writes that went to memcached only
	// because the session had been synced less than SyncInterval ago.
	DBWrites, DBWriteErrors, DBWritesSkipped uint64
	// SyncQueued counts syncs handed to the background writer; SyncCoalesced
	// those that replaced a pending sync of the same session; SyncDropped
	// periodic syncs given up: after retrying for longer than
	// max(SyncInterval, 1m), to make room for a durable one, or at Close
	// (the session is still in memcached, and its next write syncs it
	// again).
	SyncQueued, SyncCoalesced, SyncDropped uint64
	// DurableLost counts durable writes (new and renewed sessions, writes
	// marked durable, every write under EveryWrite) acknowledged while the
	// database failed and never saved: Close ended before the database took
	// them, or, once it answered, it refused one because the row had forked
	// from the copy the write was built on (RowConflicts). Each is logged at
	// error level. It should stay 0.
	DurableLost uint64
	// SyncPending is the number of syncs waiting in the background writer now.
	SyncPending int

	// Fallbacks counts reads and writes served by the database because
	// memcached was unavailable for the key.
	Fallbacks uint64
	// Touches counts writes that only refreshed a session's activity
	// (read-only requests, at most once per TouchInterval).
	Touches uint64
	// CASConflicts counts writes that found the session changed by another
	// request; Merges counts the re-applications that followed.
	CASConflicts, Merges uint64
	// RowConflicts counts database writes refused because the row held a
	// change the writer's memcached copy never saw: one written around the
	// copy's node by an app server that could not reach it. The row won and
	// replaced the copy; changes made on the copy since were lost, except a
	// request's own, which the Manager re-applied (docs/consistency.md, I4).
	RowConflicts uint64

	// ReapExamined, ReapExtended, ReapArchived, ReapDeleted and ReapErrors
	// count the reaper's work: rows looked at, rows rescued with memcached's
	// newer copy, rows handed to the archive hook, rows deleted, and failures.
	ReapExamined, ReapExtended, ReapArchived, ReapDeleted, ReapErrors uint64
	// ReapSkipped counts rows left for a later pass because memcached could
	// not be asked about them, or because they were sealed with a key the
	// Store does not hold (a reaper holding it decides).
	ReapSkipped uint64

	// Nodes describes each memcached node and its circuit breaker, in
	// address order.
	Nodes []NodeStats
}

// CacheHitRatio returns CacheHits / (CacheHits + CacheMisses), or 0 before
// the first read.
func (s Stats) CacheHitRatio() float64 {
	total := s.CacheHits + s.CacheMisses
	if total == 0 {
		return 0
	}
	return float64(s.CacheHits) / float64(total)
}

type counters struct {
	cacheHits, cacheMisses, cacheCorrupt     atomic.Uint64
	cacheErrors, cacheShortCircuits          atomic.Uint64
	breakerOpens, breakerCloses              atomic.Uint64
	dbReads, dbReadErrors, dbCorrupt         atomic.Uint64
	dbWrites, dbWriteErrors, dbWritesSkipped atomic.Uint64
	syncQueued, syncCoalesced, syncDropped   atomic.Uint64
	durableLost                              atomic.Uint64
	fallbacks, touches, casConflicts, merges atomic.Uint64
	rowConflicts                             atomic.Uint64
	reapExamined, reapExtended, reapArchived atomic.Uint64
	reapDeleted, reapErrors, reapSkipped     atomic.Uint64
	sealFailures                             atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		CacheHits: c.cacheHits.Load(), CacheMisses: c.cacheMisses.Load(), CacheCorrupt: c.cacheCorrupt.Load(),
		CacheErrors: c.cacheErrors.Load(), CacheShortCircuits: c.cacheShortCircuits.Load(),
		BreakerOpens: c.breakerOpens.Load(), BreakerCloses: c.breakerCloses.Load(),
		DBReads: c.dbReads.Load(), DBReadErrors: c.dbReadErrors.Load(), DBCorrupt: c.dbCorrupt.Load(),
		DBWrites: c.dbWrites.Load(), DBWriteErrors: c.dbWriteErrors.Load(), DBWritesSkipped: c.dbWritesSkipped.Load(),
		SyncQueued: c.syncQueued.Load(), SyncCoalesced: c.syncCoalesced.Load(), SyncDropped: c.syncDropped.Load(),
		DurableLost: c.durableLost.Load(),
		Fallbacks:   c.fallbacks.Load(), Touches: c.touches.Load(),
		CASConflicts: c.casConflicts.Load(), Merges: c.merges.Load(), RowConflicts: c.rowConflicts.Load(),
		ReapExamined: c.reapExamined.Load(), ReapExtended: c.reapExtended.Load(), ReapArchived: c.reapArchived.Load(),
		ReapDeleted: c.reapDeleted.Load(), ReapErrors: c.reapErrors.Load(), ReapSkipped: c.reapSkipped.Load(),
		SealFailures: c.sealFailures.Load(),
	}
}

func sortNodes(n []NodeStats) {
	sort.Slice(n, func(i, j int) bool { return n[i].Addr < n[j].Addr })
}
