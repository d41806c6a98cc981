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

// read returns the live session stored under token: memcached's copy, else the row's, which then
// refills memcached. It returns nil, nil when no tier holds a live session (never stored, expired,
// destroyed, unreadable), and ErrUnavailable wrapped when no tier that may hold it answered.
func (s *Store) read(ctx context.Context, token string) (*entry, error) {
	e := &entry{}
	e.key, e.mkey = s.keys(token)
	now := s.now()
	var cacheErr error
	replace := false       // memcached holds something a refill may overwrite
	var idledOut time.Time // the last activity of a copy that idled out
	if s.mc != nil {
		it, err := s.mc.Get(ctx, e.mkey)
		if err == nil && it != nil {
			err = s.open(it.Value, e.mkey, &e.Envelope, true)
			switch {
			case err == nil && e.Destroyed:
				s.stats.cacheHits.Add(1)
				return nil, nil
			case err == nil && now.Before(e.ExpiresAt()):
				s.stats.cacheHits.Add(1)
				e.via, e.casID, e.source = viaCache, it.CasID, srcCache
				return e, nil
			case err == nil:
				idledOut, replace = e.ActiveAt, true
			case !errors.Is(err, envelope.ErrUnreadable):
				err, replace = nil, true // corrupt
			}
		}
		if cacheErr = err; err == nil || errors.Is(err, envelope.ErrUnreadable) {
			s.stats.cacheMisses.Add(1) // an unreadable copy is never overwritten: the row serves
		}
	}
	if s.durable == nil {
		if cacheErr != nil && !errors.Is(cacheErr, envelope.ErrUnreadable) {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, cacheErr)
		}
		return nil, nil
	}
	// Under a copy that idled out, a row with no later activity means the session idled out too; with
	// later activity, the copy is stale (its node came back with old memory).
	rec, found, err := s.load(ctx, e.key)
	if err != nil || !found || s.open(rec.Payload, e.mkey, &e.Envelope, false) != nil || e.Destroyed ||
		!now.Before(e.RowExpiresAt()) || !e.ActiveAt.After(idledOut) {
		return nil, err
	}
	e.Changed, e.WholeAt = nil, 0 // the row holds what its writer noted as changed
	e.MarkSynced(rec.Version, e.Version, now)
	e.via, e.source = viaRow, srcDatabase
	if s.mc != nil && cacheErr == nil {
		s.refill(ctx, e, now, replace)
	}
	return e, nil
}

// refill writes e, just read from its row, to memcached as a new copy: a new lineage on the row,
// with this read as activity the row has not seen. replace overwrites what memcached holds (dead
// or corrupt); else a copy another request refilled meanwhile stays, and update compares with it.
func (s *Store) refill(ctx context.Context, e *entry, now time.Time, replace bool) {
	e.Lineage, e.ActiveAt, e.Grace, e.Unsynced = newLineage(), now, s.grace(), true
	buf, exp := s.seal(nil, e.mkey, &e.Envelope), cache.Expiration(now, copyExpiry(&e.Envelope))
	write := s.mc.Add
	if replace {
		write = s.mc.Set
	}
	switch err := write(ctx, e.mkey, buf, exp); {
	case err == nil:
		e.via = viaAdded
		s.writer.schedule(e.mkey, now.Add(s.syncInterval))
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

// listedEntry is a live session of a list page: storage key and latest state (memcached's copy
// when it has a live one); not for update.
type listedEntry struct {
	Key   string
	Entry *entry
}

// list returns the live sessions among up to limit rows (of subject, when not "") with storage keys
// after after, in key order, and the key to continue from ("" at the end).
func (s *Store) list(ctx context.Context, subject, after string, limit int) ([]listedEntry, string, error) {
	if s.durable == nil {
		return nil, "", errors.New("core: listing needs a durable tier")
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
		e := &entry{key: rec.Key, source: srcDatabase}
		if s.open(rec.Payload, s.prefix+rec.Key, &e.Envelope, false) != nil {
			continue
		}
		alive := now.Before(e.RowExpiresAt())
		if c, ok := copies[rec.Key]; ok && (c.Destroyed || !c.ActiveAt.Before(e.ActiveAt)) {
			e.Envelope, e.source = c, srcCache // the copy knows at least what the row does
			alive = c.Destroyed || now.Before(c.ExpiresAt())
		}
		if alive && !e.Destroyed && now.Before(e.Deadline) {
			out = append(out, listedEntry{Key: rec.Key, Entry: e})
		}
	}
	return out, recs[len(recs)-1].Key, nil
}

// copies returns the readable memcached copies of recs' sessions by storage key, and the keys whose
// copy is unknown: its node did not answer, or this Store cannot read it (another key ring).
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
		var v envelope.Envelope
		if it := items[mkeys[i]]; it == nil {
			unknown[rec.Key] = err != nil // a node that failed may hold it
		} else if err := s.open(it.Value, mkeys[i], &v, false); err == nil {
			out[rec.Key] = v
		} else if errors.Is(err, envelope.ErrUnreadable) {
			unknown[rec.Key] = true
		}
	}
	return out, unknown
}
