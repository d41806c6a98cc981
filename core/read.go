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
	var replace uint64     // CAS id of what memcached holds that a refill may overwrite (dead or corrupt)
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
				idledOut, replace = e.ActiveAt, it.CasID
			case !errors.Is(err, envelope.ErrUnreadable):
				err, replace = nil, it.CasID // corrupt
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
// with this read as activity the row has not seen. It writes over nothing, or by compare-and-swap
// over the dead or corrupt entry read (CAS id replace), never over what was written since (a
// logout's tombstone, a copy another request refilled): update then compares with that.
func (s *Store) refill(ctx context.Context, e *entry, now time.Time, replace uint64) {
	e.Lineage, e.ActiveAt, e.Grace, e.Unsynced = newLineage(), now, s.grace, true
	buf, exp := s.seal(nil, e.mkey, &e.Envelope), cache.Expiration(now, copyExpiry(&e.Envelope))
	err := memcache.ErrCacheMiss
	if replace != 0 {
		err = s.mc.CompareAndSwap(ctx, e.mkey, buf, exp, replace)
	}
	if errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrNotStored) {
		err = s.mc.Add(ctx, e.mkey, buf, exp) // nothing there (evicted meanwhile)
	}
	switch {
	case err == nil:
		e.via = viaAdded
		s.writer.schedule(e.mkey, now.Add(s.syncInterval), 0)
	case errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCASConflict):
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

// each calls fn, in storage-key order, with every readable row of subject ("" every row), page by page,
// and memcached's readable copy of it (nil when there is none or its node did not answer). It stops at
// fn's first error and returns it; a failed page is an error wrapping ErrUnavailable.
func (s *Store) each(ctx context.Context, subject string,
	fn func(rec durable.Record, row, cp *envelope.Envelope) error) error {
	if s.durable == nil {
		return errors.New("core: listing needs a durable tier")
	}
	for after := ""; ; {
		lctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
		recs, err := s.durable.List(lctx, subject, after, listPage)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: database: %w", ErrUnavailable, err)
		}
		if len(recs) == 0 {
			return nil
		}
		copies, _ := s.copies(ctx, recs)
		for _, rec := range recs {
			var row envelope.Envelope
			if s.open(rec.Payload, s.prefix+rec.Key, &row, false) != nil {
				continue
			}
			if err := fn(rec, &row, copies[rec.Key]); err != nil {
				return err
			}
		}
		after = recs[len(recs)-1].Key
	}
}

// latest returns the listed session's latest state — memcached's copy when it knows at least what the row
// does — with where it came from, or nil when the session is not alive.
func latest(row, cp *envelope.Envelope, now time.Time) (*envelope.Envelope, string) {
	e, src, alive := row, srcDatabase, now.Before(row.RowExpiresAt())
	if cp != nil && (cp.Destroyed || !cp.ActiveAt.Before(row.ActiveAt)) {
		e, src, alive = cp, srcCache, cp.Destroyed || now.Before(cp.ExpiresAt())
	}
	if !alive || e.Destroyed || !now.Before(e.Deadline) {
		return nil, ""
	}
	return e, src
}

// copies returns the readable memcached copies of recs' sessions by storage key, and the keys whose
// copy is unknown: its node did not answer, or this Store cannot read it (another key ring).
func (s *Store) copies(ctx context.Context, recs []durable.Record) (map[string]*envelope.Envelope, map[string]bool) {
	if s.mc == nil {
		return nil, nil
	}
	mkeys := make([]string, len(recs))
	for i, rec := range recs {
		mkeys[i] = s.prefix + rec.Key
	}
	items, err := s.mc.GetMulti(ctx, mkeys)
	out, unknown := make(map[string]*envelope.Envelope, len(items)), map[string]bool{}
	for i, rec := range recs {
		v := new(envelope.Envelope)
		if it := items[mkeys[i]]; it == nil {
			unknown[rec.Key] = err != nil // a node that failed may hold it
		} else if err := s.open(it.Value, mkeys[i], v, false); err == nil {
			out[rec.Key] = v
		} else if errors.Is(err, envelope.ErrUnreadable) {
			unknown[rec.Key] = true
		}
	}
	return out, unknown
}
