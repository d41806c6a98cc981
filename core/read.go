package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// ListedEntry is one session returned by Store.List.
type ListedEntry struct {
	// Key is the session's storage key (a hash of its token).
	Key string
	// Entry is the freshest live copy: memcached's when it holds a newer
	// one, the database row's otherwise.
	Entry *Entry
}

// List returns up to limit live sessions whose storage key is greater than
// after, in key order, for iteration and administration (scs's All) — not
// for the request path. memcached cannot list its keys, so List pages
// through the durable tier's live rows and overlays memcached's newer
// copies (one GetMulti per page), without refilling memcached. Sessions
// that never reached the database are not listed; every session does when
// it is created. An empty result means the end. It returns an error when
// the Store has no durable tier, and one wrapping ErrUnavailable when the
// database could not answer.
func (s *Store) List(ctx context.Context, after string, limit int) ([]ListedEntry, error) {
	if s.durable == nil {
		return nil, errors.New("core: List: the Store has no durable tier")
	}
	now := s.now()
	dctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	recs, err := s.durable.List(dctx, now, after, limit)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	return s.overlay(recs, now), nil
}

// overlay returns the live sessions among rows read from the durable tier,
// each as its freshest copy: memcached's when it holds one at least as new
// (read in one GetMulti, without refilling memcached), the row's otherwise.
// memcached's copy carries the exact idle expiry and is final when dead;
// the rows are live by their ExpiresAt, which the durable tier checked.
// Rows and copies that do not open are left out.
func (s *Store) overlay(recs []Record, now time.Time) []ListedEntry {
	var cached map[string][]byte
	if s.mc != nil && len(recs) > 0 {
		mkeys := make([]string, len(recs))
		for i := range recs {
			mkeys[i] = s.mc.key(recs[i].Key)
		}
		items, _ := s.mc.getMulti(mkeys) // unreachable nodes: the rows stand
		cached = make(map[string][]byte, len(items))
		for k, it := range items {
			cached[k[len(s.mc.prefix):]] = it.Value
		}
	}
	out := make([]ListedEntry, 0, len(recs))
	for _, rec := range recs {
		e := new(Entry)
		if s.openEnvelope(rec.Key, rec.Payload, e) != nil {
			continue
		}
		fromCache := false
		if b, ok := cached[rec.Key]; ok {
			var c Entry
			if s.openEnvelope(rec.Key, b, &c) == nil && c.Version >= e.Version {
				*e, fromCache = c, true
			}
		}
		if isTombstone(e) || !now.Before(e.Deadline) || (fromCache && !e.Alive(now)) {
			continue
		}
		out = append(out, ListedEntry{Key: rec.Key, Entry: e})
	}
	return out
}

// Get returns the live entry for token, or nil with a nil error when there
// is none (never stored, expired, destroyed, or corrupt in every tier).
//
// It reads memcached first. On a miss, or when memcached is unavailable, it
// reads the durable tier; a row found there is treated as active now and
// refills memcached (with add, so a newer copy written meanwhile is never
// clobbered). The error wraps ErrUnavailable when the tiers that had to be
// asked could not answer.
func (s *Store) Get(ctx context.Context, token string) (*Entry, error) {
	key, mkey := s.keys(token)
	e, err := s.get(ctx, key, mkey)
	if e != nil {
		e.token, e.key, e.mkey = token, key, mkey
	}
	return e, err
}

func (s *Store) get(ctx context.Context, key, mkey string) (*Entry, error) {
	now := s.now()
	var cacheErr error
	corrupt := false
	if s.mc != nil {
		it, n, err := s.mc.getFrom(mkey)
		switch {
		case err != nil:
			cacheErr = err
			s.stats.fallbacks.Add(1)
		case it == nil:
			// After an AddServer the previous owner's copy moves here. It
			// is checked against the row like a hit on a key that changed
			// owner: an app server that wrote the session around a node
			// meanwhile left it stale.
			if e := s.moveFromPriorOwner(mkey, now); e != nil {
				return s.serveCopy(ctx, key, mkey, e, true, now), nil
			}
			s.stats.cacheMisses.Add(1)
		default:
			e := new(Entry)
			if err := s.openEnvelopeInPlace(key, it.Value, e); err != nil {
				s.stats.cacheMisses.Add(1)
				s.stats.cacheCorrupt.Add(1)
				corrupt = true
				break
			}
			e.casID, e.cached = it.CasID, true
			return s.serveCopy(ctx, key, mkey, e, n.suspect() || s.mc.movedRecently(mkey, n), now), nil
		}
	}
	if s.durable == nil {
		if cacheErr != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, cacheErr)
		}
		return nil, nil
	}
	// A live row's ExpiresAt covers any activity that memcached may have
	// seen since the last sync, and this request is activity. The row may
	// lag what memcached held by up to SyncInterval of changes — unless
	// there is no memcached, when every write goes through to the row.
	rec, e, err := s.readRow(ctx, key, now, cacheErr)
	if e == nil || s.mc == nil {
		return e, err
	}
	if cacheErr == nil {
		// memcached keeps this read as activity. Without it (memcached
		// unavailable) the row's ActiveAt stays, so that the Manager's
		// touch comes due and writes the row: otherwise a read-only user
		// would expire at the row's expires_at.
		rowActive := e.ActiveAt
		e.ActiveAt = now
		buf := s.sealEnvelope(key, nil, e)
		exp := s.cacheExpiration(now, e)
		if corrupt {
			cacheErr = s.mc.set(mkey, buf, exp)
		} else {
			cacheErr = s.mc.add(mkey, buf, exp)
		}
		switch {
		case cacheErr == nil:
			return s.settleRefill(ctx, key, mkey, e, rec.ExpiresAt, buf, now), nil
		case errors.Is(cacheErr, memcache.ErrNotStored):
			return e, nil // refilled meanwhile: Update compares with that copy
		}
		e.ActiveAt = rowActive
	}
	// memcached is unavailable for the key. The Manager's touch may still
	// land there rather than in the row, if the node answers again by then:
	// a row about to expire is moved ahead now, as a refill would. That is
	// a write around the node, whose copy (idle since) must go when it
	// answers again; and it is this request's activity, so no touch follows.
	if s.rowExpiresSoon(rec.ExpiresAt, now) {
		ahead := *e
		ahead.ActiveAt = now
		applied, err := s.moveRowAhead(ctx, s.record(key, &ahead, s.sealEnvelope(key, nil, &ahead), true))
		switch {
		case applied:
			s.mc.markDirty(mkey, around(&ahead, false))
			e.ActiveAt = now
		case err == nil:
			// The row changed since the load: a change written meanwhile,
			// or a reaper that found it expired and postponed it (its
			// deadline column went back). Nothing else records this read,
			// so it serves what the row holds now, not a session the next
			// request would not find (soak seed 600017).
			_, e, err := s.readRow(ctx, key, s.now(), cacheErr)
			return e, err
		}
	}
	return e, nil
}

// readRow reads key's row as of now and returns it with its session, or a
// nil session when there is none to serve: no live row, a tombstone, past
// its deadline, or corrupt (counted). cacheErr, memcached's error when it
// could not be asked, goes into the error, which wraps ErrUnavailable.
func (s *Store) readRow(ctx context.Context, key string, now time.Time, cacheErr error) (Record, *Entry, error) {
	s.stats.dbReads.Add(1)
	rec, found, err := s.load(ctx, key, now)
	switch {
	case err != nil:
		s.stats.dbReadErrors.Add(1)
		if cacheErr != nil {
			return rec, nil, fmt.Errorf("%w: %w; database: %w", ErrUnavailable, cacheErr, err)
		}
		return rec, nil, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	case !found:
		return rec, nil, nil
	}
	e := new(Entry)
	if err := s.openEnvelope(key, rec.Payload, e); err != nil {
		s.stats.dbCorrupt.Add(1)
		return rec, nil, nil
	}
	if isTombstone(e) || !now.Before(e.Deadline) {
		return rec, nil, nil
	}
	e.Restored = s.mc != nil
	e.SyncedVersion, e.UnsyncedSince = rec.Version, 0 // built on this row (Record.Base)
	return rec, e, nil
}

// serveCopy returns what a request is served from e, a copy memcached
// holds, or nil when the session is over. A copy may be older than the row
// when another app server wrote the session elsewhere: around the node
// while it could not reach it (not purged yet), or on the key's owner in
// its own ring during a ring change. A dead copy is always checked against
// the row (it answers only requests that come within SyncInterval of the
// idle expiry: memcached keeps it no longer), a live one when suspect is
// set (a suspect node, a key that changed owner, a copy moved from its
// previous owner). A tombstone is final.
//
// When the row cannot be read, a live copy of a key that changed owner in
// the last RingChangeWindow is checked against the key's previous owner
// instead: app servers that have not applied the change yet destroy the
// session there, and its tombstone stands in for the row's
// (docs/consistency.md, I2).
func (s *Store) serveCopy(ctx context.Context, key, mkey string, e *Entry, suspect bool, now time.Time) *Entry {
	dead := !isTombstone(e) && !e.Alive(now)
	if s.durable != nil && (dead || suspect && !isTombstone(e)) {
		fresh, replaced, err := s.checkDurable(ctx, key, mkey, e, now)
		if err != nil && !dead {
			replaced = s.destroyedBefore(key, mkey, e, now)
		}
		if replaced {
			if fresh == nil {
				s.stats.cacheMisses.Add(1)
			} else {
				s.stats.cacheHits.Add(1)
			}
			return fresh
		}
	}
	if isTombstone(e) || !e.Alive(now) {
		// Otherwise memcached is never older than the database: the
		// session is over.
		s.stats.cacheMisses.Add(1)
		return nil
	}
	s.stats.cacheHits.Add(1)
	return e
}

// rowExpiresSoon reports whether a row that expires at rowExpires, read
// because memcached had no copy or could not be reached, is to be moved
// ahead on the request path:
// it expires within the reaper's look-ahead, so the reaper may not get to
// it before a second cache loss would find it expired (docs/consistency.md,
// I1).
func (s *Store) rowExpiresSoon(rowExpires, now time.Time) bool {
	return s.syncer != nil && rowExpires.Before(now.Add(s.lookahead))
}

// moveRowAhead writes r, the row of a session a request has just read back
// from it, before answering; when that fails (the error is returned), the
// background writer retries it. applied is false when a newer row is
// stored.
func (s *Store) moveRowAhead(ctx context.Context, r Record) (applied bool, err error) {
	applied, err = s.save(ctx, r)
	if err != nil {
		s.stats.dbWriteErrors.Add(1)
		s.syncer.enqueue(r, false)
		return false, err
	}
	s.stats.dbWrites.Add(1)
	return applied, nil
}

// settleRefill runs after the restore of e, read from a row that expires
// at rowExpires, refilled memcached with buf, and returns the entry to
// serve.
//
// Between the load of the row and the refill, another app server that could
// not reach the key's node may have written a newer copy or a tombstone
// through to the database; its removal of the node's older copy (at once,
// or when its breaker closes) may have come before the refill, which would
// then hide the change until memcached drops the copy. So the row is read
// again after the refill: that write either reached the database before
// this check, which sees it and repairs memcached, or it comes after the
// refill, and so does the removal (docs/consistency.md, I4).
//
// A row that expires within the reaper's look-ahead is written ahead first,
// before answering, so that a second cache loss right after this request
// logs nobody out (I1). When that conditional write applies, no newer row
// was there, and it stands in for the check; when it fails, the check is
// skipped too: the database is not answering, and the request has paid
// DBTimeout once already (I7).
func (s *Store) settleRefill(ctx context.Context, key, mkey string, e *Entry, rowExpires time.Time, buf []byte, now time.Time) *Entry {
	if s.rowExpiresSoon(rowExpires, now) {
		if applied, err := s.moveRowAhead(ctx, s.record(key, e, bytesClone(buf), true)); applied || err != nil {
			return e
		}
	}
	if fresh, replaced, _ := s.checkDurable(ctx, key, mkey, e, now); replaced {
		if fresh != nil {
			fresh.Restored = true
		}
		return fresh
	}
	return e
}

// checkDurable compares have, a copy memcached holds (dead, read from a
// suspect node or a node the key moved to, or just refilled from the row),
// with the database row. When the row is newer — another app server wrote
// the session through while the node was unreachable to it — it writes the row
// over have in memcached, only where have still is (compare-and-swap: a
// copy written since stays, and an emptied slot stays empty for the next
// read to restore) and returns it; a destroyed row's tombstone replaces the
// copy, a dead row's deletes it, and nil is returned. Database errors
// (returned), and rows that do not open, keep have.
func (s *Store) checkDurable(ctx context.Context, key, mkey string, have *Entry, now time.Time) (*Entry, bool, error) {
	s.stats.dbReads.Add(1)
	rec, found, err := s.load(ctx, key, now)
	if err != nil {
		s.stats.dbReadErrors.Add(1)
		return nil, false, err
	}
	if !found || rec.Version < have.Version {
		return nil, false, nil
	}
	e := new(Entry)
	if err := s.openEnvelope(key, rec.Payload, e); err != nil {
		return nil, false, nil
	}
	// The row is newer with a higher version; or, for a dead copy, with
	// later activity at the same version (a read served from the row while
	// the node was unreachable: I3's overshoot makes the session active
	// again).
	if rec.Version == have.Version && (have.Alive(now) || !e.ActiveAt.After(have.ActiveAt)) ||
		!have.Alive(now) && !isTombstone(e) && !e.Alive(now) {
		return nil, false, nil
	}
	switch {
	case isTombstone(e):
		_ = s.mc.set(mkey, rec.Payload, expiration(now, e.Deadline))
		return nil, true, nil
	case !now.Before(e.Deadline):
		_ = s.mc.delete(mkey)
		return nil, true, nil
	}
	e.ActiveAt = now
	e.SyncedVersion, e.UnsyncedSince = rec.Version, 0
	buf, exp := s.sealEnvelope(key, nil, e), s.cacheExpiration(now, e)
	if have.cached {
		_ = s.mc.cas(mkey, buf, exp, have.casID)
	} else if it, err := s.mc.get(mkey); err == nil && it != nil {
		var cur Entry
		if s.openEnvelope(key, it.Value, &cur) == nil && cur.Version == have.Version && !isTombstone(&cur) {
			_ = s.mc.cas(mkey, buf, exp, it.CasID)
		}
	}
	return e, true, nil
}

// destroyedBefore reports whether have, a live copy of a key that changed
// owner in the last ring change, was destroyed on the key's previous owner
// by an app server that had not applied the change yet: a tombstone there
// that is not older than the session (a key reused after it, KV's Set after
// Delete, was created later). It then writes the tombstone over have. It
// stands in for checkDurable when the row cannot be read.
func (s *Store) destroyedBefore(key, mkey string, have *Entry, now time.Time) bool {
	it := s.mc.previousGet(mkey)
	if it == nil {
		return false
	}
	var prev Entry
	if s.openEnvelope(key, it.Value, &prev) != nil || !isTombstone(&prev) || have.Created.After(prev.ActiveAt) {
		return false
	}
	_ = s.mc.set(mkey, it.Value, expiration(now, prev.Deadline))
	return true
}

// moveFromPriorOwner moves mkey's copy from the node that held it before
// the last AddServer to its current node and returns it; nil when there is
// no live copy to move. The old copy is deleted in any case, so that it can
// never come back stale.
func (s *Store) moveFromPriorOwner(mkey string, now time.Time) *Entry {
	it := s.mc.priorGet(mkey)
	if it == nil {
		return nil
	}
	defer s.mc.priorDelete(mkey)
	e := new(Entry)
	if s.openEnvelope(mkey[len(s.mc.prefix):], it.Value, e) != nil || isTombstone(e) || !e.Alive(now) {
		return nil
	}
	if s.mc.add(mkey, it.Value, s.cacheExpiration(now, e)) != nil {
		return nil // refilled meanwhile (or unavailable): a miss
	}
	return e // not cached: Update compares it with the current copy
}
