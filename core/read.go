package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/cache"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// Get returns the live session stored under token: memcached's copy when it
// has one, the database row's otherwise (which then refills memcached: one
// row read and one memcached write). It returns nil, with a nil error, when
// no tier holds a live session: never stored, expired, destroyed, or
// unreadable. The error wraps ErrUnavailable when no tier that may hold
// the session could answer.
func (s *Store) read(ctx context.Context, token string) (*entry, error) {
	key, mkey := s.keys(token)
	return s.get(ctx, key, mkey)
}

// get is Get by storage key and memcached key.
func (s *Store) get(ctx context.Context, key, mkey string) (*entry, error) {
	e := &entry{key: key, mkey: mkey}
	now := s.now()
	var cacheErr error
	replace := false       // memcached holds something a refill may overwrite
	var idledOut time.Time // the last activity of a copy that idled out
	if s.mc != nil {
		it, err := s.mc.Get(ctx, mkey)
		switch {
		case err != nil:
			cacheErr = err
		case it == nil:
			s.stats.cacheMisses.Add(1)
		default:
			err := s.open(it.Value, mkey, &e.Envelope, true)
			switch {
			case err == nil && e.Destroyed:
				s.stats.cacheHits.Add(1)
				return nil, nil
			case err == nil && now.Before(e.ExpiresAt()):
				s.stats.cacheHits.Add(1)
								e.via, e.casID, e.source = viaCache, it.CasID, srcCache
				return e, nil
			case errors.Is(err, envelope.ErrUnreadable):
				cacheErr = err // never overwritten: the row serves, and takes the writes
			case err == nil:
				idledOut, replace = e.ActiveAt, true
			default:
				replace = true // corrupt
			}
			s.stats.cacheMisses.Add(1)
		}
	}
	if s.durable == nil {
		if cacheErr != nil && !errors.Is(cacheErr, envelope.ErrUnreadable) {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, cacheErr)
		}
		return nil, nil
	}
	found, err := s.readRow(ctx, e, now)
	if err != nil || !found {
		return nil, err
	}
	if !e.ActiveAt.After(idledOut) {
		// The copy knew of all the activity the row knows: the session
		// idled out. A row that knows of later activity belongs to a newer
		// copy (this one is stale: its node came back with old memory).
		return nil, nil
	}
	if s.mc == nil || cacheErr != nil {
		return e, nil
	}
	s.refill(ctx, e, now, replace)
	return e, nil
}

// readRow loads key's row into e as a row-mode entry. found is false when
// there is no live session in it.
func (s *Store) readRow(ctx context.Context, e *entry, now time.Time) (found bool, err error) {
	rec, ok, err := s.load(ctx, e.key)
	if err != nil || !ok {
		return false, err
	}
	if s.open(rec.Payload, e.mkey, &e.Envelope, false) != nil || e.Destroyed || !now.Before(e.RowExpiresAt()) {
		return false, nil
	}
		// The row holds a synced state: whatever its writer had noted as
	// changed is in it.
	e.Changed, e.WholeAt = nil, 0
	e.MarkSynced(rec.Version, e.Version, now)
	e.via, e.source = viaRow, srcDatabase
	return true, nil
}

// refill writes e, just read from its row, to memcached as a new copy: a new
// lineage, built on the row, with this read as activity. replace
// overwrites what memcached holds (corrupt, or dead); otherwise a copy
// refilled meanwhile by another request stays, and Update compares with it.
func (s *Store) refill(ctx context.Context, e *entry, now time.Time, replace bool) {
	v := &e.Envelope
	v.Lineage = newLineage()
	v.ActiveAt, e.ActiveAt = now, now
	v.Grace = s.grace()
	v.Unsynced = true // this read is activity the row has not seen
	buf := s.seal(nil, e.mkey, v)
	exp := cache.Expiration(now, copyExpiry(v))
	var err error
	if replace {
		err = s.mc.Set(ctx, e.mkey, buf, exp)
	} else {
		err = s.mc.Add(ctx, e.mkey, buf, exp)
	}
	switch {
	case err == nil:
		e.via = viaAdded
		s.writer.schedule(e.key, now.Add(s.syncInterval))
	case errors.Is(err, memcache.ErrNotStored):
		e.via = viaAdded
	}
}

// load reads key's row within DBTimeout; the error wraps ErrUnavailable.
func (s *Store) load(ctx context.Context, key string) (durable.Record, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	s.stats.dbReads.Add(1)
	rec, found, err := s.durable.Load(ctx, key)
	if err != nil {
		s.stats.dbErrors.Add(1)
		return rec, false, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	return rec, found, nil
}

// listedEntry is one session of a Store.List page.
type listedEntry struct {
	// Key is the session's storage key.
	Key string
	// Entry is the session's latest copy (memcached's when it has a live
	// one). Only its fields are meaningful: it cannot be passed to Update.
	Entry *entry
}

func (s *Store) list(ctx context.Context, subject, after string, limit int) ([]listedEntry, string, error) {
	if s.durable == nil {
		return nil, "", errors.New("core: List: the Store has no durable tier")
	}
	lctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	recs, err := s.durable.List(lctx, subject, after, limit)
	cancel()
	if err != nil {
		return nil, after, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	if len(recs) == 0 {
		return nil, "", nil
	}
	copies, _ := s.copies(ctx, recs)
	now := s.now()
	var out []listedEntry
	for _, rec := range recs {
		e := &entry{key: rec.Key}
		if s.open(rec.Payload, s.prefix+rec.Key, &e.Envelope, false) != nil {
			continue
		}
		if c, ok := copies[rec.Key]; ok && (c.Destroyed || !c.ActiveAt.Before(e.ActiveAt)) {
			e.Envelope = c // the copy knows at least what the row does
			if !c.Destroyed && !now.Before(c.ExpiresAt()) {
				continue
			}
		} else if !now.Before(e.RowExpiresAt()) {
			continue
		}
		if e.Destroyed || !now.Before(e.Deadline) {
			continue
		}
				out = append(out, listedEntry{Key: rec.Key, Entry: e})
	}
	return out, recs[len(recs)-1].Key, nil
}

// copies returns the readable memcached copies of recs' sessions, by
// storage key, and the keys whose copy is unknown here: its node did not
// answer, or it cannot be read by this Store (another key ring).
func (s *Store) copies(ctx context.Context, recs []durable.Record) (map[string]envelope.Envelope, map[string]bool) {
	if s.mc == nil {
		return nil, nil
	}
	mkeys := make([]string, len(recs))
	for i, rec := range recs {
		mkeys[i] = s.prefix + rec.Key
	}
	items, err := s.mc.GetMulti(ctx, mkeys)
	out, unknown := make(map[string]envelope.Envelope, len(items)), map[string]bool{}
	for i, rec := range recs {
		it := items[mkeys[i]]
		if it == nil {
			unknown[rec.Key] = err != nil // a node that failed may hold it
			continue
		}
		var v envelope.Envelope
		switch err := s.open(it.Value, mkeys[i], &v, false); {
		case err == nil:
			out[rec.Key] = v
		case errors.Is(err, envelope.ErrUnreadable):
			unknown[rec.Key] = true
		}
	}
	return out, unknown
}
