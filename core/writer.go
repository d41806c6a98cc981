package core

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/cache"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// writer brings every row up to date within SyncInterval of its copy's write. It tracks keys and due times,
// not data: when due it reads the current copies (whoever wrote them) and writes their rows in one
// multi-row statement per batch.
type writer struct {
	s     *Store
	limit int
	tick  time.Duration

	mu     sync.Mutex
	due    map[string]time.Time // memcached key → when its row must be written
	stale  map[string]uint64    // memcached key → a row version written around its copy
	busy   int                  // keys taken by the batch being written
	passMu sync.Mutex           // one pass at a time
	stop   chan struct{}
	done   chan struct{}
}

const (
	writerBatch   = 2000            // sessions per GetMulti and Tier.Write
	retryDelay    = 5 * time.Second // after a failed batch, or SyncInterval if shorter
	maxWriterTick = time.Minute     // longest wait between passes
)

func newWriter(s *Store, limit int) *writer {
	w := &writer{
		s: s, limit: limit, due: map[string]time.Time{}, stale: map[string]uint64{},
		tick: min(max(s.syncInterval/8, 10*time.Millisecond), maxWriterTick),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.tick)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				_ = w.flush(context.Background(), false)
			}
		}
	}()
	return w
}

// schedule makes the row of the session under memcached key mkey due by at, and never later than
// SyncInterval from now on this server's clock (a due time reckoned from another server's sync, or a retry,
// waits no longer). row, when not 0, is a row version written around the copy (its node did not answer):
// once the node answers, a copy built on an earlier version is merged with the row though it has nothing
// unsynced, so it stops serving what those writes replaced. A nil writer does nothing.
func (w *writer) schedule(mkey string, at time.Time, row uint64) {
	if w == nil {
		return
	}
	if limit := w.s.now().Add(w.s.syncInterval); at.After(limit) {
		at = limit
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch old, ok := w.due[mkey]; {
	case ok && at.Before(old), !ok && len(w.due) < w.limit:
		w.due[mkey] = at
	case !ok:
		w.s.stats.syncDropped.Add(1)
		return
	}
	if row != 0 {
		w.stale[mkey] = max(w.stale[mkey], row)
	}
}

// take removes and returns up to writerBatch keys due before until (any, with all), each with the row
// version written around its copy (0: none).
func (w *writer) take(until time.Time, all bool) map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := map[string]uint64{}
	for k, at := range w.due {
		if len(keys) == writerBatch {
			break
		}
		if all || at.Before(until) {
			keys[k] = w.stale[k]
			delete(w.due, k)
			delete(w.stale, k)
		}
	}
	w.busy += len(keys)
	return keys
}

// flush writes the rows due before the next tick (all tracked, with all); if ctx ends first it returns
// ctx's error, and the rest stays queued.
func (w *writer) flush(ctx context.Context, all bool) error {
	w.passMu.Lock()
	defer w.passMu.Unlock()
	until := w.s.now().Add(w.tick)
	for ctx.Err() == nil {
		keys := w.take(until, all)
		if len(keys) > 0 {
			w.writeBatch(ctx, keys, all)
			w.mu.Lock()
			w.busy -= len(keys)
			w.mu.Unlock()
		}
		if len(keys) < writerBatch {
			break
		}
	}
	return ctx.Err()
}

// close stops the ticker and writes every tracked row.
func (w *writer) close(ctx context.Context) error {
	close(w.stop)
	<-w.done
	return w.flush(ctx, true)
}

// copyRead is a copy read for a sync, its lineage as read (a merge gives e a new one; sync keeps Version), and
// the row version written around it (0: none), kept by a retry.
type copyRead struct {
	e              entry
	lineage, stale uint64
}

// writeBatch syncs keys' copies: one GetMulti, one Tier.Write, a merge for each row that refused, and a
// confirmation of each synced copy.
func (w *writer) writeBatch(ctx context.Context, keys map[string]uint64, all bool) {
	s := w.s
	now := s.now()
	copies := w.read(ctx, keys, now, all)
	if len(copies) == 0 {
		return
	}
	ws := make([]durable.Write, len(copies))
	for i := range copies {
		ws[i] = s.record(copies[i].e.mkey, &copies[i].e.Envelope, copies[i].e.Base)
	}
	applied, err := s.writeBatch(ctx, ws)
	if err != nil {
		s.warn.log("sync", "hybridsession: background sync failed; retrying", err)
		for _, p := range copies {
			w.schedule(p.e.mkey, now.Add(retryDelay), p.stale)
		}
		return
	}
	synced := copies[:0]
	for i, p := range copies {
		if applied[i] {
			p.e.MarkSynced(p.e.Base+1, p.e.Version, now)
		} else if err := w.resync(ctx, &p, now); err != nil {
			continue
		}
		synced = append(synced, p)
	}
	w.confirm(ctx, synced)
}

// read returns the copies under mkeys (with the row versions written around them) that their rows lack
// something of; those memcached could not be asked about are retried later. Unless all, a copy another
// server synced since is rescheduled to its new due time.
func (w *writer) read(ctx context.Context, mkeys map[string]uint64, now time.Time, all bool) []copyRead {
	s := w.s
	items, err := s.mc.GetMulti(ctx, slices.Collect(maps.Keys(mkeys)))
	var out []copyRead
	for k, stale := range mkeys {
		it := items[k]
		if it == nil && err != nil {
			w.schedule(k, now.Add(retryDelay), stale) // its node may not have answered
			continue
		}
		e := entry{key: k[len(s.prefix):], mkey: k}
		if it == nil || s.open(it.Value, e.mkey, &e.Envelope, false) != nil || !e.Unsynced && e.Base >= stale {
			continue
		}
		// Synced meanwhile by another app server: due again SyncInterval after that sync, unless its time is
		// ahead of this server's clock (a fast clock's, not to be waited for) or writes went around it.
		if due := e.SyncedAt.Add(s.syncInterval); !all && due.After(now.Add(w.tick)) && !e.SyncedAt.After(now) &&
			e.Base >= stale {
			w.schedule(k, due, 0)
			continue
		}
		out = append(out, copyRead{e: e, lineage: e.Lineage, stale: stale})
	}
	return out
}

// resync handles a copy whose row refused the batch's write: the current copy, still the same (lineage,
// version not lower), is merged with the row and written again; gone or refilled, it is left alone (its
// unsynced changes went with the cache loss); a row that says the session is gone makes it a tombstone.
func (w *writer) resync(ctx context.Context, p *copyRead, now time.Time) error {
	s := w.s
	it, err := s.mc.Get(ctx, p.e.mkey)
	if err != nil {
		w.schedule(p.e.mkey, now.Add(retryDelay), p.stale)
		return err
	}
	cur := entry{key: p.e.key, mkey: p.e.mkey}
	if it == nil || s.open(it.Value, cur.mkey, &cur.Envelope, false) != nil || !cur.Unsynced && p.e.Unsynced ||
		cur.Lineage != p.lineage || cur.Version < p.e.Version {
		return errSuperseded
	}
	p.e = cur
	err = s.sync(ctx, &p.e, nil)
	switch {
	case err == nil, errors.Is(err, errSuperseded):
	case errors.Is(err, errDestroyed):
		_ = s.bury(ctx, p.e.mkey, &p.e.Envelope, now)
	case errors.Is(err, ErrUnavailable):
		w.schedule(p.e.mkey, now.Add(retryDelay), p.stale)
	default:
		s.warn.log("sync", "hybridsession: background sync failed", err)
	}
	return err
}

// confirm tells synced copies their rows took them, so each is built on its new row version and forgets
// what was synced. It reads them afresh (a restart renumbers CAS ids) and writes only a copy still the one
// synced or a later state of it, keeping what it gained since (after a merge, only a touch). Best effort:
// an unconfirmed copy's next sync finds its own earlier state in the row and replaces it (rebase).
func (w *writer) confirm(ctx context.Context, ps []copyRead) {
	s := w.s
	mkeys := make([]string, len(ps))
	for i := range ps {
		mkeys[i] = ps[i].e.mkey
	}
	items, _ := s.mc.GetMulti(ctx, mkeys)
	now := s.now()
	for i := range ps {
		p := &ps[i]
		it := items[p.e.mkey]
		var cur envelope.Envelope
		if it == nil || s.open(it.Value, p.e.mkey, &cur, false) != nil || cur.Lineage != p.lineage {
			continue
		}
		next := &p.e.Envelope
		switch {
		case !p.e.merged && cur.Version >= p.e.Version:
			// Keep what the copy gained since it was read: changes, or a touch (ActiveAt, not the version).
			cur.MarkSynced(next.Base, next.SyncedVersion, next.SyncedAt)
			cur.Unsynced = cur.Unsynced || cur.ActiveAt.After(next.ActiveAt)
			next = &cur
		case p.e.merged && cur.Version == p.e.Version:
			if cur.ActiveAt.After(next.ActiveAt) {
				next.ActiveAt = cur.ActiveAt
			}
		default:
			continue
		}
		_ = s.mc.CompareAndSwap(ctx, p.e.mkey, s.seal(nil, p.e.mkey, next), cache.Expiration(now, copyExpiry(next)), it.CasID)
	}
}

// pendingCount returns how many rows the writer tracks.
func (w *writer) pendingCount() int {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.due) + w.busy
}
