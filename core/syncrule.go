package core

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// record builds the durable row for e. ExpiresAt is chosen so that losing
// memcached can never log out a user who was active within the idle
// timeout: after a sync through memcached, activity is recorded only in
// memcached for less than SyncInterval (the next change after that syncs
// again; the reaper extends the rows of sessions that only read), so
// ActiveAt + IdleTimeout + SyncInterval bounds the session's true expiry.
// The overshoot — a session read back from the database after a real
// memcached loss may outlive its idle timeout by up to SyncInterval — is
// the documented price (docs/consistency.md, I3). A write that does not go
// through memcached (write-through while it is unavailable, or a Store
// without it) leaves nothing newer behind: its row expires exactly.
func (s *Store) record(key string, e *Entry, payload []byte, throughCache bool) Record {
	exp := e.ActiveAt.Add(e.IdleTimeout)
	if throughCache && s.mc != nil {
		exp = exp.Add(s.rowSlack())
	}
	if exp.After(e.Deadline) {
		exp = e.Deadline
	}
	if e.UnsyncedSince != 0 {
		// The row's envelope leaves it out (format 1, which earlier
		// releases read too): an entry read from a row is built on that
		// row (readRow).
		row := *e
		row.UnsyncedSince = 0
		payload = s.sealEnvelope(key, nil, &row)
	}
	return Record{
		Key:       key,
		Payload:   payload,
		Version:   e.Version,
		ExpiresAt: exp.Truncate(time.Millisecond),
		Deadline:  e.Deadline.Truncate(time.Millisecond),
		Subject:   e.Subject,
	}
}

// rowSlack is how far a row's ExpiresAt may run past the session's idle
// expiry: SyncInterval, or nothing when every write is synced.
func (s *Store) rowSlack() time.Duration { return max(s.syncInterval, 0) }

// cacheExpiration is memcached's TTL for e written at now. The entry
// outlives the session's idle expiry by rowSlack, capped at the deadline:
// as long as the database row may still look alive, memcached keeps the
// dead envelope, so a read finds it dead there instead of reading the row
// back as a live session. Only a real cache loss (restart, eviction) falls
// through to the row (docs/consistency.md, I3).
//
// One second more covers memcached's clock, which ticks once a second and
// may expire an item up to a second before its TTL has passed in real time.
func (s *Store) cacheExpiration(now time.Time, e *Entry) int32 {
	until := e.ExpiresAt().Add(s.rowSlack())
	if until.After(e.Deadline) {
		until = e.Deadline
	}
	return expiration(now, until.Add(time.Second))
}

// syncNow writes e, a durable write, to the durable tier on the request
// path. When memcached holds the write (cacheDown false) a database failure
// hands it to the background writer, which keeps it until the database
// takes it (retryLater); the request fails only when it cannot be held.
//
// For Insert (writeInsert in flags) a refused save means the key has a
// row with a higher version: a tombstone, or the row of a dead session not
// reaped yet (its clock ran ahead). A tombstone stands — ErrDestroyed —
// unless WriteReuseKey says the caller reuses keys on purpose; anything
// else is replaced, as Insert found no live session under the key.
//
// b is what e was built on (zero for Insert). When the row holds a change
// e never saw, written around its node, syncNow replaces memcached's copy
// with the row and returns ErrConflict, so the Manager re-applies this
// request's changes to it (refused).
func (s *Store) syncNow(ctx context.Context, key string, e *Entry, buf []byte, now time.Time, cacheDown bool, flags WriteFlags, b basis) error {
	if s.durable == nil {
		if cacheDown {
			return fmt.Errorf("%w: memcached unavailable and no durable tier", ErrUnavailable)
		}
		return nil
	}
	rec := s.record(key, e, bytesClone(buf), !cacheDown)
	b.apply(&rec)
	applied, err := s.save(ctx, rec)
	if err == nil && !applied && b.base != 0 {
		forked, resave := s.refused(ctx, rec)
		if forked {
			return ErrConflict
		}
		if resave {
			rec = withoutBasis(rec)
			applied, err = s.save(ctx, rec)
		}
	}
	if err == nil && !applied && flags&writeInsert != 0 {
		var old Record
		var found bool
		if old, found, err = s.load(ctx, key, now); err == nil && found &&
			old.Version >= tombstoneVersion && flags&WriteReuseKey == 0 {
			return ErrDestroyed
		}
		if err == nil {
			s.syncer.forget(key)
			err = s.deleteRows(ctx, key)
		}
		if err == nil {
			applied, err = s.save(ctx, rec)
		}
		if err == nil && !applied {
			err = errors.New("a concurrent writer took the key")
		}
	}
	if err != nil {
		s.stats.dbWriteErrors.Add(1)
		switch {
		case s.mc == nil:
			return fmt.Errorf("%w: database: %w", ErrUnavailable, err)
		case cacheDown:
			return fmt.Errorf("%w: memcached unavailable; database: %w", ErrUnavailable, err)
		}
		return s.retryLater(rec, err)
	}
	s.stats.dbWrites.Add(1)
	return nil
}

// saveConditional is the write-through path while memcached is unavailable:
// the durable tier's version check, and its check of b, what e was built
// on, stand in for CAS.
func (s *Store) saveConditional(ctx context.Context, key string, e *Entry, buf []byte, cacheErr error, b basis) error {
	s.syncer.forget(key) // an older pending sync must not follow this write
	rec := s.record(key, e, bytesClone(buf), false)
	b.apply(&rec)
	applied, err := s.save(ctx, rec)
	if err != nil {
		s.stats.dbWriteErrors.Add(1)
		if cacheErr != nil {
			return fmt.Errorf("%w: %w; database: %w", ErrUnavailable, cacheErr, err)
		}
		return fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	s.stats.dbWrites.Add(1)
	if !applied {
		s.stats.casConflicts.Add(1)
		return ErrConflict
	}
	return nil
}

// retryLater hands a durable write that failed on the request path to the
// background writer, which retries it until the database takes it. When
// the writer cannot hold it (its queue is full of durable writes, or the
// Store is closing) the request fails with an error wrapping
// ErrUnavailable: acknowledging the write would promise what a memcached
// loss could undo.
func (s *Store) retryLater(rec Record, err error) error {
	if s.syncer.enqueue(rec, true) {
		s.log.Warn("hybridsession: database write failed; memcached holds the session, retrying in the background", "error", err)
		return nil
	}
	return fmt.Errorf("%w: database: %w; the background writer is full", ErrUnavailable, err)
}

// syncLater hands a due periodic sync to the background writer. When the
// writer's queue is full it writes the sync now (back-pressure) — unless the
// database is failing, where that would make every request wait for
// DBTimeout: then the sync is dropped and counted, as in retryLater.
func (s *Store) syncLater(key string, e *Entry, buf []byte, now time.Time, b basis) {
	rec := s.record(key, e, bytesClone(buf), true)
	b.apply(&rec)
	if s.syncer.enqueue(rec, false) {
		return
	}
	if s.syncer.isFailing() {
		s.stats.syncDropped.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.dbTimeout)
	defer cancel()
	applied, err := s.durable.Save(ctx, rec)
	if err != nil {
		s.stats.dbWriteErrors.Add(1)
		s.log.Warn("hybridsession: database sync failed with the background queue full", "error", err)
		return
	}
	s.stats.dbWrites.Add(1)
	if !applied && rec.Base != 0 {
		if _, resave := s.refused(ctx, rec); resave {
			_, _ = s.durable.Save(ctx, withoutBasis(rec))
		}
	}
}

// tombstoneVersion outranks every real version, so the durable tier's
// conditional save refuses any later sync of a destroyed session.
const tombstoneVersion = 1 << 62

// versionShift splits a version into a time (the high bits: Unix
// milliseconds) and a count of changes within that millisecond (the low 20
// bits). See nextVersion.
const versionShift = 20

// nextVersion returns the version of a change made at now to a session at
// version v: above v, and at least now's millisecond shifted left by
// versionShift. Versions are thus hybrid logical clocks: they grow with
// every change, and a change made later (on any app server, in any branch
// of the session) outranks one made earlier. So a delayed or retried sync
// of a copy that memcached lost can never overwrite what was written after
// it, and a read never bumps a version: only changes do. App servers whose
// clocks differ by d may order two changes made within d of each other
// either way. Versions stay below tombstoneVersion until the year 2109.
func nextVersion(v uint64, now time.Time) uint64 {
	return max(v+1, uint64(max(now.UnixMilli(), 0))<<versionShift)
}

func isTombstone(e *Entry) bool { return e.Version >= tombstoneVersion }

// around describes e, written to the database around a memcached node that
// could not take it, for the node's purge (markDirty).
func around(e *Entry, reuse bool) aroundWrite {
	return aroundWrite{version: e.Version, active: e.ActiveAt.UnixMilli(), reuse: reuse}
}

// staleCopy reports whether value, a node's copy of mkey, is staler than w,
// written around the node: it does not open, it has a lower version, or the
// same version with older activity (a touch written around the node: the
// copy would read as idle). A tombstone is never stale — except to an
// Insert that reused the key after it (WriteReuseKey: KV's Set after
// Delete).
func (s *Store) staleCopy(mkey string, value []byte, w aroundWrite) bool {
	var e Entry
	if s.openEnvelope(mkey[len(s.mc.prefix):], value, &e) != nil {
		return true
	}
	switch {
	case isTombstone(&e):
		return w.reuse && e.ActiveAt.UnixMilli() < w.active
	case e.Version != w.version:
		return e.Version < w.version
	}
	return e.ActiveAt.UnixMilli() < w.active
}

// tombstoneLife is how long a tombstone stands in both tiers: as long as
// any copy of the session it replaces could still be served or synced — a
// copy written just before the Delete lives IdleTimeout in memcached plus
// rowSlack, and a sync of it still waiting in some app server's background
// writer carries a row that expires no later — plus a minute for clock
// skew and scheduling. Until the Store has seen a session it uses the
// default idle timeout.
func (s *Store) tombstoneLife() time.Duration {
	idle := time.Duration(s.maxIdle.Load())
	if idle <= 0 {
		idle = defaultIdleTimeout
	}
	return idle + s.rowSlack() + time.Minute
}

// noteIdle records the longest idle timeout of the sessions this Store
// writes, for tombstoneLife.
func (s *Store) noteIdle(d time.Duration) {
	for {
		cur := s.maxIdle.Load()
		if int64(d) <= cur || s.maxIdle.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// load, save and deleteRows are the request path's calls to the durable
// tier, each bounded by DBTimeout within the request's own context: a
// database that accepts connections and never answers costs a request at
// most DBTimeout, then counts as unavailable (docs/consistency.md, I7).
func (s *Store) load(ctx context.Context, key string, now time.Time) (Record, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.durable.Load(ctx, key, now)
}

func (s *Store) save(ctx context.Context, rec Record) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.durable.Save(ctx, rec)
}

func (s *Store) deleteRows(ctx context.Context, keys ...string) error {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.durable.Delete(ctx, keys...)
}
