package core

import "context"

// A memcached copy forks from the database row when an app server that
// cannot reach the copy's node writes the session around it, to the row,
// while the node keeps its copy: a pause, a partition, or the breaker
// cooldown after either. Versions alone cannot tell the branches apart (a
// later change on the copy outranks the row), so every database write
// names its basis, the row it was built on, and the row wins a fork
// (docs/consistency.md, I4 and I5):
//
//   - An entry's SyncedVersion is the row version it was built on: read
//     from the row, or a sync of it the database confirmed (promote).
//     UnsyncedSince bounds its own changes since from below; they may reach
//     the row by other paths (the reaper, a write that timed out on a
//     paused node and went around it, then was applied by the node).
//   - Durable.Save refuses a write whose row is not one its basis covers.
//   - A refused write whose row was written around a node (its envelope
//     was never synced: aroundNode) is a fork: the row replaces the copy
//     (rebase), and a request that made the write re-applies its changes
//     to it (ErrConflict). Any other refusal — a newer copy of its own, or
//     one a cache loss separated it from — is decided by version, as ever.

// basis is what a write was built on, for the durable tier's check
// (Record.Base): the row version its copy was built on, and a range that
// holds the versions of the copy's own changes since, from..to (inclusive;
// none when from is 0). The zero basis turns the check off.
type basis struct{ base, from, to uint64 }

// basisOf returns the basis of a write built on e, a copy a request read.
func basisOf(e *Entry) basis {
	b := basis{base: e.SyncedVersion, from: e.UnsyncedSince, to: e.Version}
	if b.from == 0 && e.Version > e.SyncedVersion {
		// Changes since the sync, of an envelope that does not say which
		// (format 1, of an older release): all count as its own.
		b.from = e.SyncedVersion + 1
	}
	if b.from == 0 {
		b.to = 0
	}
	return b
}

func (b basis) apply(r *Record) { r.Base, r.UnsyncedFrom, r.UnsyncedTo = b.base, b.from, b.to }

func basisOfRecord(r Record) basis { return basis{r.Base, r.UnsyncedFrom, r.UnsyncedTo} }

// withoutBasis returns r with the check of its basis turned off.
func withoutBasis(r Record) Record {
	basis{}.apply(&r)
	return r
}

// builtOn reports whether a row at version v is one a write of basis b was
// built on: the row its copy was read from or confirmed in (or an older
// one), or one of the copy's own changes.
func (b basis) builtOn(v uint64) bool {
	return b.base == 0 || v <= b.base || b.from != 0 && b.from <= v && v <= b.to
}

// forkedFrom reports whether row, whose envelope opens, holds a change a
// copy of basis b never saw that was written around the copy's node (the
// envelope of such a write says it was never synced).
func (s *Store) forkedFrom(row Record, b basis) bool {
	var e Entry
	return s.openEnvelope(row.Key, row.Payload, &e) == nil && !isTombstone(&e) &&
		e.SyncedAt.IsZero() && !b.builtOn(row.Version)
}

// refused runs after the durable tier refused rec, a write with a basis.
// It reports whether rec's copy forked from the row, after replacing that
// copy in memcached with the row (rebase); the changes made on the copy
// since the fork are lost, except a request's own, which the Manager
// re-applies (syncNow returns ErrConflict). resave reports that the
// refusal came from the basis alone and is no fork: the caller saves rec
// again without its basis, and the version order decides.
func (s *Store) refused(ctx context.Context, rec Record) (forked, resave bool) {
	s.stats.dbReads.Add(1)
	row, found, err := s.load(ctx, rec.Key, s.now())
	switch {
	case err != nil:
		s.stats.dbReadErrors.Add(1)
		return false, false
	case !found:
		return false, true // expired or reaped since: nothing to be built on
	case s.forkedFrom(row, basisOfRecord(rec)):
		s.rebase(ctx, rec.Key)
		s.stats.rowConflicts.Add(1) // after the copy's repair, which the count announces
		return true, false
	}
	return false, row.Version < rec.Version || row.Version == rec.Version && !row.ExpiresAt.After(rec.ExpiresAt)
}

// rebase replaces memcached's copy of key, forked from the row, with the
// row (compare-and-swap), keeping the copy's later activity, so that the
// next read sees the row's change and the next write is built on it. A
// copy built on the row — restored from it since, or re-applied to it by
// another request — stays, and so does a tombstone. The copy is read
// before the row, so a copy restored meanwhile cannot be newer than the
// row it is compared with.
func (s *Store) rebase(ctx context.Context, key string) {
	if s.mc == nil {
		return
	}
	mkey := s.mc.key(key)
	it, err := s.mc.get(mkey)
	if err != nil || it == nil {
		return // unreachable (the request re-reads the row), or the next read restores it
	}
	s.stats.dbReads.Add(1)
	row, found, err := s.load(ctx, key, s.now())
	if err != nil || !found {
		return
	}
	var cur, fresh Entry
	curOK := s.openEnvelope(key, it.Value, &cur) == nil
	if curOK && (isTombstone(&cur) || basisOf(&cur).builtOn(row.Version)) {
		return
	}
	if s.openEnvelope(key, row.Payload, &fresh) != nil || isTombstone(&fresh) {
		return
	}
	now := s.now()
	if !now.Before(fresh.Deadline) {
		_ = s.mc.delete(mkey)
		return
	}
	fresh.SyncedVersion, fresh.UnsyncedSince, fresh.Restored = row.Version, 0, false
	if curOK && cur.ActiveAt.After(fresh.ActiveAt) {
		fresh.ActiveAt = cur.ActiveAt
	}
	_ = s.mc.cas(mkey, s.sealEnvelope(key, nil, &fresh), s.cacheExpiration(now, &fresh), it.CasID)
}

// promote runs after the background writer's save of rec, a sync of
// memcached's copy, was applied: the copy's basis moves up to rec.Version
// (SyncedVersion), so that its later writes are checked against changes
// made after it. Only a copy rec is part of changes, with
// compare-and-swap; a copy left as it was only checks less.
func (s *Store) promote(rec Record) {
	if s.mc == nil {
		return
	}
	mkey := s.mc.key(rec.Key)
	it, err := s.mc.get(mkey)
	if err != nil || it == nil {
		return
	}
	var e Entry
	if s.openEnvelope(rec.Key, it.Value, &e) != nil || isTombstone(&e) || e.SyncedVersion >= rec.Version ||
		e.UnsyncedSince == 0 || rec.Version < e.UnsyncedSince || rec.Version > e.Version {
		return
	}
	e.SyncedVersion, e.UnsyncedSince = rec.Version, 0
	if e.Version > rec.Version {
		e.UnsyncedSince = rec.Version + 1 // a lower bound of the changes made since
	}
	_ = s.mc.cas(mkey, s.sealEnvelope(rec.Key, nil, &e), s.cacheExpiration(s.now(), &e), it.CasID)
}

// verifyBase returns ErrConflict when the row of token holds a change that
// e, read from Get, never saw, written around its node, after replacing
// memcached's copy with the row (rebase): for a write that is not a save
// of e, such as RenewToken's insert of a new session built on it. A
// database that cannot answer is not a conflict.
func (s *Store) verifyBase(ctx context.Context, token string, e *Entry) error {
	b := basisOf(e)
	if s.durable == nil || b.base == 0 {
		return nil
	}
	key, _ := s.entryKeys(token, e)
	// A write newer than any row: refused only for what it was built on.
	rec := Record{Key: key, Version: tombstoneVersion}
	b.apply(&rec)
	if forked, _ := s.refused(ctx, rec); forked {
		return ErrConflict
	}
	return nil
}
