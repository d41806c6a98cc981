package core

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// syncer is the write-behind half of the sync rule: a bounded queue of rows
// bound for the durable tier, coalesced per session (a newer copy replaces a
// pending older one), drained by a few workers, retried with backoff while
// the database is down. It keeps the periodic sync off the request path.
//
// Two kinds of sync wait here. A periodic sync that is still failing after
// maxAge is dropped (counted): the session is in memcached, its envelope
// says when it was last synced, and its next write after SyncInterval
// queues it again; the reaper rescues the rest. A durable sync — a new or
// renewed session, a write marked durable, or any write under EveryWrite,
// whose request already returned because memcached holds it — is never
// dropped for age or for room: it is retried until the database takes it
// (docs/consistency.md, I5). Either kind is dropped once the row it carries
// has expired, since no reader would be served it any more.
type syncer struct {
	durable Durable
	now     func() time.Time // the Store's clock, for row expiry
	stats   *counters
	log     *slog.Logger
	limit   int
	maxAge  time.Duration
	timeout time.Duration
	// refused is called, outside mu, with a save the durable tier refused
	// whose Record.Base was set (Store.refused); synced with one it
	// applied (Store.promote). Both are set before the first enqueue.
	refused func(ctx context.Context, rec Record) (forked, resave bool)
	synced  func(rec Record)

	mu        sync.Mutex
	cond      *sync.Cond // signalled when work arrives, a save ends, or on close
	pending   map[string]*pendingSync
	queue     []string // keys in arrival order; each key at most once
	inflight  map[string]bool
	forgotten map[string]bool // forgotten while in flight: no retry
	failing   bool            // the last background save failed
	closed    bool
	lost      int // durable syncs that close could not write
	wg        sync.WaitGroup
}

type pendingSync struct {
	rec      Record
	durable  bool
	queuedAt time.Time
	notAfter time.Time // retry backoff: not before this time
	attempts int
}

func newSyncer(d Durable, now func() time.Time, workers, limit int, maxAge, timeout time.Duration, stats *counters, log *slog.Logger) *syncer {
	s := &syncer{
		durable:   d,
		now:       now,
		stats:     stats,
		log:       log,
		limit:     limit,
		maxAge:    maxAge,
		timeout:   timeout,
		pending:   map[string]*pendingSync{},
		inflight:  map[string]bool{},
		forgotten: map[string]bool{},
	}
	s.cond = sync.NewCond(&s.mu)
	for i := 0; i < workers; i++ {
		s.wg.Add(1)
		go s.work()
	}
	return s
}

// enqueue queues rec; durable marks a sync that must not be dropped (see
// syncer). It reports false when the queue is closed, or full (limit
// sessions held, in flight included) — for a durable sync, full of durable
// syncs: it takes the place of a pending periodic one.
func (s *syncer) enqueue(rec Record, durable bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if p, ok := s.pending[rec.Key]; ok {
		if newer(rec, p.rec) {
			p.rec = rec
		}
		p.durable = p.durable || durable
		s.stats.syncCoalesced.Add(1)
		return true
	}
	if s.held() >= s.limit && !(durable && s.evictPeriodic()) {
		return false
	}
	// Real time, not the Store's clock: retries are paced in real time.
	s.pending[rec.Key] = &pendingSync{rec: rec, durable: durable, queuedAt: time.Now()}
	s.queue = append(s.queue, rec.Key)
	s.stats.syncQueued.Add(1)
	s.cond.Signal()
	return true
}

// held is how many sessions the syncer holds: pending, or in flight (a
// save running, perhaps to be retried) without a newer copy pending. s.mu
// is held.
func (s *syncer) held() int {
	n := len(s.pending)
	for key := range s.inflight {
		if _, ok := s.pending[key]; !ok {
			n++
		}
	}
	return n
}

// evictPeriodic drops one pending periodic sync to make room for a durable
// one, and reports whether there was one. s.mu is held.
func (s *syncer) evictPeriodic() bool {
	for key, p := range s.pending {
		if !p.durable {
			delete(s.pending, key) // its queue slot is skipped by the worker
			s.stats.syncDropped.Add(1)
			return true
		}
	}
	return false
}

// newer reports whether a should replace b under the durable tier's rule.
func newer(a, b Record) bool {
	return a.Version > b.Version || (a.Version == b.Version && !a.ExpiresAt.Before(b.ExpiresAt))
}

// forget drops any pending sync of key and waits for one in flight to end
// (which is then not retried), so a write or Delete that follows cannot be
// undone by a late sync.
func (s *syncer) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, key) // its queue slot is skipped by the worker
	if s.inflight[key] {
		s.forgotten[key] = true
		for s.inflight[key] {
			s.cond.Wait()
		}
	}
}

// isFailing reports whether the last background save failed: the database
// is likely down.
func (s *syncer) isFailing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failing
}

func (s *syncer) pendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *syncer) work() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		key, p := s.next()
		if p == nil { // closed and drained
			s.mu.Unlock()
			return
		}
		s.inflight[key] = true
		s.mu.Unlock()

		applied, err := s.save(p)
		if err == nil && !applied && p.rec.Base != 0 && s.refused != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			forked, resave := s.refused(ctx, p.rec)
			cancel()
			switch {
			case forked && p.durable:
				s.stats.durableLost.Add(1)
				s.log.Error("hybridsession: a durable write held for the database was refused: it was built on a memcached copy that lacked a change written around its node, and that change stands")
			case resave:
				p.rec = withoutBasis(p.rec)
				applied, err = s.save(p)
			}
		}
		if err == nil && applied && p.rec.Base != 0 && s.synced != nil {
			s.synced(p.rec)
		}

		s.mu.Lock()
		delete(s.inflight, key)
		forgotten := s.forgotten[key]
		delete(s.forgotten, key)
		s.failing = err != nil
		switch {
		case err == nil:
			s.stats.dbWrites.Add(1)
		case forgotten:
			s.stats.dbWriteErrors.Add(1)
		default:
			s.stats.dbWriteErrors.Add(1)
			s.retry(key, p, err)
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// save makes one attempt at p's write, bounded by the timeout.
func (s *syncer) save(p *pendingSync) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.durable.Save(ctx, p.rec)
}

// next waits for a ready pending sync and removes it from the queue. It
// returns nil when the syncer is closed and nothing is left. s.mu is held.
func (s *syncer) next() (string, *pendingSync) {
	for {
		now := time.Now()
		var wait time.Duration
		for i, key := range s.queue {
			p, ok := s.pending[key]
			if !ok || s.inflight[key] {
				continue // forgotten, or a retry of it is running
			}
			if !s.closed && now.Before(p.notAfter) {
				if d := p.notAfter.Sub(now); wait == 0 || d < wait {
					wait = d
				}
				continue
			}
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			delete(s.pending, key)
			return key, p
		}
		// Drop queue slots whose pending entry was forgotten.
		kept := s.queue[:0]
		for _, key := range s.queue {
			if _, ok := s.pending[key]; ok {
				kept = append(kept, key)
			}
		}
		s.queue = kept
		if s.closed && len(s.pending) == 0 {
			return "", nil
		}
		if wait > 0 {
			t := time.AfterFunc(wait, func() {
				s.mu.Lock()
				s.cond.Broadcast()
				s.mu.Unlock()
			})
			s.cond.Wait()
			t.Stop()
		} else {
			s.cond.Wait()
		}
	}
}

// retry puts a failed sync back with exponential backoff, unless a newer
// copy is pending, it is too old, or the syncer is closing. s.mu is held.
func (s *syncer) retry(key string, p *pendingSync, err error) {
	if q, ok := s.pending[key]; ok {
		// Another copy arrived meanwhile and will be written: it carries
		// this one's duty (a durable write stays durable), and this copy
		// when it is the newer (a restore may queue an older row).
		q.durable = q.durable || p.durable
		if newer(p.rec, q.rec) {
			q.rec = p.rec
		}
		return
	}
	now := time.Now()
	switch {
	case !s.now().Before(p.rec.ExpiresAt) || !s.now().Before(p.rec.Deadline):
		return // the row would already be dead: nobody can be served it
	case s.closed && p.durable:
		s.lost++
		s.stats.durableLost.Add(1)
		s.log.Error("hybridsession: a durable write was never saved to the database; memcached alone holds it",
			"attempts", p.attempts+1, "error", err)
		return
	case s.closed || (!p.durable && now.Sub(p.queuedAt) > s.maxAge):
		s.stats.syncDropped.Add(1)
		s.log.Warn("hybridsession: giving up a database sync; the session stays in memcached and syncs again on its next write",
			"attempts", p.attempts+1, "error", err)
		return
	}
	p.attempts++
	p.notAfter = now.Add(retryBackoff(p.attempts))
	s.pending[key] = p
	s.queue = append(s.queue, key)
	if p.attempts == 1 {
		s.log.Warn("hybridsession: database sync failed; retrying in the background", "error", err)
	}
}

// maxRetryBackoff caps the wait between retries of one sync. A tombstone
// or durable write held here is in memcached only: an app server that
// cannot read it there reads the older row once the database answers
// again, until the retry lands (docs/consistency.md, I2 and I5). The cap
// bounds that window; the retries it costs a down database are cheap when
// it refuses, and bounded by the worker count when it hangs.
const maxRetryBackoff = time.Second

// retryBackoff is the wait before the attempts-th retry of a sync: 100ms,
// doubling, at most maxRetryBackoff.
func retryBackoff(attempts int) time.Duration {
	return min(50*time.Millisecond<<min(attempts, 5), maxRetryBackoff)
}

// flush waits until every sync pending or in flight when it was called has
// been written, or attempted once more after the call (those waiting to
// retry are tried at once), or ctx ends. An attempt already running at the
// call may have met the database before it came back: when it fails, its
// retry is tried at once and waited for too. flush does not wait for syncs
// queued after the call, nor for retries of attempts made after it.
func (s *syncer) flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	type mark struct {
		p        *pendingSync // nil: in flight at the call, not pending
		attempts int
	}
	want := make(map[string]mark, len(s.pending)+len(s.inflight))
	for k, p := range s.pending {
		p.notAfter = time.Time{}
		want[k] = mark{p, p.attempts}
	}
	for k := range s.inflight {
		if _, ok := want[k]; !ok {
			want[k] = mark{}
		}
	}
	s.cond.Broadcast()
	if testHookFlushing != nil {
		testHookFlushing()
	}
	for {
		for k, w := range want {
			switch q, pending := s.pending[k]; {
			case s.inflight[k]:
			case w.p == nil && pending:
				// The attempt running at the call ended and left a retry
				// (or a newer copy): try it now and wait for it.
				q.notAfter = time.Time{}
				want[k] = mark{q, q.attempts}
				s.cond.Broadcast()
			case w.p != nil && q == w.p && q.attempts == w.attempts:
			default:
				delete(want, k)
			}
		}
		if len(want) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s.cond.Wait()
	}
}

// testHookFlushing, when set by a test, is called once flush has noted
// what it waits for.
var testHookFlushing func()

// close stops accepting work and waits until every pending sync is written
// (one attempt each) or ctx ends.
func (s *syncer) close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// The workers stop once their current save ends; what is left
		// pending is not written.
		s.mu.Lock()
		for _, p := range s.pending {
			if p.durable {
				s.lost++
				s.stats.durableLost.Add(1)
			} else {
				s.stats.syncDropped.Add(1)
			}
		}
		clear(s.pending)
		s.mu.Unlock()
	}
	s.mu.Lock()
	lost := s.lost
	s.mu.Unlock()
	if lost > 0 {
		return fmt.Errorf("%w: %d durable writes", ErrNotSaved, lost)
	}
	return ctx.Err()
}
