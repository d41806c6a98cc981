package core

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// ReaperConfig configures a Reaper, and the in-process reaper a Store
// starts (StoreConfig.Reaper).
type ReaperConfig struct {
	// Interval is the time between passes of Run and Start; each pass
	// waits Interval ± 10% (jitter, so that the reapers of many app servers
	// do not run in step). A reaper running elsewhere (ReapExternal) must
	// pass at least this often. Keep it at most SyncInterval/2 (the
	// defaults, 1m and 2m, do): a session's first activity after its row
	// was written may come as late as SyncInterval before the row expires,
	// and a pass must see it in that time, even when one pass fails
	// (docs/consistency.md, I1). NewReaper logs a warning when Interval
	// exceeds SyncInterval. Optional. Default 1m.
	Interval time.Duration

	// Lookahead is how far ahead of its expiry a pass claims a row: rows
	// whose ExpiresAt falls within Lookahead are extended while memcached
	// holds a live copy of their session, so the row of a session that is
	// only read never expires under it. It must be at least twice Interval,
	// so that one missed or failed pass loses nothing. Optional. Default
	// 3 × Interval.
	Lookahead time.Duration

	// Batch is how many rows one database transaction claims, and one
	// memcached GetMulti asks about. Optional. Default 500.
	Batch int

	// Archive, when set, receives every dead session before its row is
	// deleted — to keep data about sessions for later analysis. An error
	// keeps the row for the next pass (it is counted in ReapErrors); the
	// session stays dead. It runs inside the batch's database transaction:
	// keep it quick, or queue the work elsewhere. Optional.
	Archive func(ctx context.Context, s ArchivedSession) error

	// Codecs lists codecs, beyond the built-in JSON, Gob and Msgpack, used
	// to decode ArchivedSession.Values. Optional.
	Codecs []Codec
}

// ArchivedSession is a dead session handed to ReaperConfig.Archive: the
// freshest copy the reaper found (memcached's when it still had one, the
// database row's otherwise).
type ArchivedSession struct {
	// Key is the storage key (a hash of the token; the token is not kept).
	Key string
	// Subject is the user id set with Session.SetSubject, "" when none.
	Subject string
	// Created, LastActivity and Deadline are the session's creation time,
	// last recorded activity and absolute deadline.
	Created, LastActivity, Deadline time.Time
	// Version is the number of changes the session went through.
	Version uint64
	// Codec and Payload are the encoded values as stored.
	Codec   uint8
	Payload []byte
	// Values are the decoded values, or nil when no known codec could
	// decode Payload (then use Codec and Payload).
	Values map[string]any
}

// ReapReport sums up one pass of the reaper.
type ReapReport struct {
	// Examined counts expired-looking rows looked at.
	Examined int
	// Extended counts rows of sessions still alive in memcached, rewritten
	// with memcached's latest data and a new expiry.
	Extended int
	// Archived counts dead sessions handed to the archive hook.
	Archived int
	// Deleted counts rows deleted (dead sessions and expired tombstones).
	Deleted int
	// Skipped counts rows left for a later pass because memcached could
	// not be asked about them: an unreachable memcached is never taken to
	// mean "every session is dead".
	Skipped int
	// Waiting counts rows within the look-ahead, not expired yet, whose
	// session memcached holds no live copy of (it lost it, or the session
	// went idle): left as they are, to be judged when they expire.
	Waiting int
	// Errors counts archive hook failures and failed batches.
	Errors int
	// Duration is the wall time of the pass.
	Duration time.Duration

	again int // rows of a batch left within the look-ahead
}

func (r ReapReport) String() string {
	return fmt.Sprintf("examined=%d extended=%d archived=%d deleted=%d skipped=%d waiting=%d errors=%d duration=%s",
		r.Examined, r.Extended, r.Archived, r.Deleted, r.Skipped, r.Waiting, r.Errors, r.Duration.Round(time.Millisecond))
}

// Reaper is the batch half of the hybrid pattern. A session reaches the
// database at most once per SyncInterval when it changes, and not at all
// when it is only read: its activity lives in memcached. Each pass claims
// the rows that expire within Lookahead (oldest first), asks memcached for
// each session's latest copy in one GetMulti per batch, and
//
//   - extends the rows of sessions memcached holds alive, writing
//     memcached's copy when it is newer, in one statement per batch — so a
//     live session's row stays ahead of now, and a memcached loss never
//     logs out a user active within IdleTimeout (docs/consistency.md, I1);
//   - deletes (after the optional archive hook) the rows of sessions that
//     are dead: expired, and gone from memcached, idle there, past their
//     deadline, or destroyed;
//   - leaves the rest for a later pass: rows not expired yet whose session
//     memcached has no live copy of, and expired rows it could not decide
//     (memcached unreachable, archive hook failed), which stay dead to
//     readers while they wait.
//
// Several reapers, in one process or many, may run against one database at
// once: the durable tier hands each row to one of them at a time.
type Reaper struct {
	store  *Store
	cfg    ReaperConfig
	codecs [256]Codec

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

const (
	defaultReapInterval = time.Minute
	defaultReapBatch    = 500
)

// errCacheDown aborts a batch whose every key memcached could not answer.
var errCacheDown = errors.New("core: reaper: memcached unavailable")

// NewReaper returns a Reaper for the Store's tiers. It returns an error
// when the Store has no durable tier (there is nothing to reap).
func (s *Store) NewReaper(cfg ReaperConfig) (*Reaper, error) {
	if s.durable == nil {
		return nil, errors.New("core: NewReaper: the Store has no durable tier")
	}
	if cfg.Interval == 0 {
		cfg.Interval = defaultReapInterval
	}
	if cfg.Batch == 0 {
		cfg.Batch = defaultReapBatch
	}
	if cfg.Lookahead == 0 {
		cfg.Lookahead = 3 * cfg.Interval
	}
	if cfg.Interval < 0 || cfg.Batch < 0 {
		return nil, errors.New("core: ReaperConfig.Interval and Batch must not be negative")
	}
	if cfg.Lookahead < 2*cfg.Interval {
		return nil, errors.New("core: ReaperConfig.Lookahead must be at least twice Interval")
	}
	if s.syncInterval > 0 && cfg.Interval > s.syncInterval {
		s.log.Warn("hybridsession: ReaperConfig.Interval exceeds SyncInterval: a cache loss may log out a session active just before its row expires",
			"interval", cfg.Interval, "syncInterval", s.syncInterval)
	}
	r := &Reaper{store: s, cfg: cfg}
	for _, c := range append([]Codec{JSON, Gob, Msgpack}, cfg.Codecs...) {
		r.codecs[c.ID()] = c
	}
	return r, nil
}

// RunOnce makes one pass: it takes batches of the rows that expire within
// Lookahead of the pass's start, oldest first, until none is left, and
// returns what it did. It is the form for cron (see the operations
// command). The error reports a batch that failed; the pass stops there and
// the rest waits for the next one.
func (r *Reaper) RunOnce(ctx context.Context) (ReapReport, error) {
	start := time.Now()
	now := r.store.now()
	cutoff := now.Add(r.cfg.Lookahead)
	var rep ReapReport
	limit := r.cfg.Batch
	for ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(ctx, r.store.dbTimeout)
		var b ReapReport
		n, err := r.store.durable.Reap(bctx, cutoff, limit, func(ctx context.Context, batch []Record) ([]Verdict, error) {
			b = ReapReport{}
			return r.judge(ctx, now, cutoff, batch, &b)
		})
		cancel()
		if errors.Is(err, errCacheDown) {
			rep.Examined += b.Examined
			rep.Skipped += b.Examined
			r.store.stats.reapSkipped.Add(uint64(b.Examined))
			r.store.log.Warn("hybridsession: reaper skipped a pass: memcached unavailable, deleting nothing")
			break
		}
		if err != nil {
			rep.Errors++
			r.store.stats.reapErrors.Add(1)
			rep.Duration = time.Since(start)
			return rep, fmt.Errorf("core: reaper: %w", err)
		}
		rep.add(b)
		if n < limit {
			break // the last batch
		}
		// Rows left within the look-ahead (waiting, or extended by less
		// than it) stay first in line: when they fill half a batch or
		// more, the next batch is twice as large, so the rows behind them
		// are reached within this pass, and the pass ends.
		if b.again*2 >= n {
			if limit >= maxReapBatchGrowth*r.cfg.Batch {
				break
			}
			limit *= 2
		}
	}
	rep.Duration = time.Since(start)
	return rep, ctx.Err()
}

// maxReapBatchGrowth bounds how large a batch RunOnce grows to past waiting
// rows, as a multiple of ReaperConfig.Batch.
const maxReapBatchGrowth = 64

func (r *ReapReport) add(b ReapReport) {
	r.Examined += b.Examined
	r.Extended += b.Extended
	r.Archived += b.Archived
	r.Deleted += b.Deleted
	r.Skipped += b.Skipped
	r.Waiting += b.Waiting
	r.Errors += b.Errors
}

// judge decides each row of a batch; see Reaper.
func (r *Reaper) judge(ctx context.Context, now, cutoff time.Time, batch []Record, rep *ReapReport) ([]Verdict, error) {
	s := r.store
	verdicts := make([]Verdict, len(batch))
	rep.Examined = len(batch)
	s.stats.reapExamined.Add(uint64(len(batch)))

	var items map[string]Entry
	var failed map[string]bool
	if s.mc != nil {
		mkeys := make([]string, len(batch))
		for i, rec := range batch {
			mkeys[i] = s.mc.key(rec.Key)
		}
		got, bad := s.mc.getMulti(mkeys)
		if len(bad) == len(batch) {
			return nil, errCacheDown
		}
		items = make(map[string]Entry, len(got))
		for k, it := range got {
			var e Entry
			if s.openEnvelope(k[len(s.mc.prefix):], it.Value, &e) == nil {
				e.Payload = it.Value // keep the whole (sealed) envelope for the row
				items[k[len(s.mc.prefix):]] = e
			}
		}
		failed = make(map[string]bool, len(bad))
		for k := range bad {
			failed[k[len(s.mc.prefix):]] = true
		}
	}

	for i, rec := range batch {
		// Expired to readers: past its ExpiresAt, or its Deadline column
		// (a postponed row's is when it expired).
		expired := !rec.ExpiresAt.After(now) || !rec.Deadline.After(now)
		// wait leaves a row as it is, for a later pass.
		wait := func() { verdicts[i] = Verdict{Keep: true, Record: rec} }
		// postpone keeps an expired row for the next pass without a verdict
		// on the session. The row stays dead to readers: its Deadline column
		// is moved back to when the row expired (Load and List skip rows
		// past it; the envelope keeps the real deadline) — not to this
		// pass's now, which an app server whose clock runs behind the
		// reaper's would still see ahead — so waiting for the reaper never
		// revives a session that looked expired.
		postpone := func() {
			verdicts[i] = Verdict{Keep: true, Record: rec}
			verdicts[i].Record.ExpiresAt = cutoff.Add(r.cfg.Interval / 2).Truncate(time.Millisecond)
			verdicts[i].Record.Deadline = minTime(rec.Deadline, minTime(rec.ExpiresAt, now)).Truncate(time.Millisecond)
		}
		var row Entry
		rowErr := s.openEnvelope(rec.Key, rec.Payload, &row)
		rowOK := rowErr == nil
		cached, inCache := items[rec.Key]
		live := inCache && !isTombstone(&cached) && cached.Alive(now)
		switch {
		case rowOK && isTombstone(&row) && expired:
			rep.Deleted++ // verdict zero value: delete
		case rowOK && isTombstone(&row):
			wait() // a tombstone stands until it expires
			rep.Waiting++
		case errors.Is(rowErr, ErrNotAuthentic) && !inCache:
			// Sealed with a key this process does not hold (a reaper
			// deployed without the new key): neither delete a session that
			// may live nor move its row; a reaper that holds the key
			// decides.
			rep.Skipped++
			wait()
		case failed[rec.Key] && expired:
			rep.Skipped++
			postpone()
		case failed[rec.Key]:
			rep.Skipped++
			wait()
		case live:
			var nr Record
			if !rowOK || cached.Version >= row.Version && !s.forkedFrom(rec, basisOf(&cached)) {
				envelope := cached.Payload
				cached.Payload = nil
				if cached.UnsyncedSince != 0 && s.openEnvelope(rec.Key, envelope, &cached) != nil {
					cached.UnsyncedSince = 0 // record re-encodes it, and needs the values
				}
				nr = s.record(rec.Key, &cached, envelope, true)
			} else {
				// memcached holds an older copy than the row, or one that
				// forked from it (a write went through to the database
				// around an unreachable node; the copy's own writer finds
				// the fork when it syncs — see refused): the session
				// lives, with the row's data and memcached's activity.
				row.ActiveAt = maxTime(row.ActiveAt, cached.ActiveAt)
				nr = s.record(rec.Key, &row, rec.Payload, true)
			}
			if nr.Version == rec.Version && !nr.ExpiresAt.After(rec.ExpiresAt) && !nr.Deadline.After(rec.Deadline) {
				// Nothing newer than the row: the session was not active
				// since the row was written. It waits for its expiry. (A
				// postponed row's deadline column is behind the session's:
				// that row is rewritten, so readers see it alive again.)
				wait()
				rep.Waiting++
				break
			}
			verdicts[i] = Verdict{Keep: true, Record: nr}
			rep.Extended++
		case !expired:
			// Not expired, and memcached has no live copy: idle, or lost
			// with the cache — then the row is the session until it
			// expires, and a request may still read it back.
			wait()
			rep.Waiting++
		default:
			// Dead: expired, and gone from memcached, idle there, past its
			// deadline, or destroyed. Archive the freshest copy, then delete.
			if !r.archive(ctx, rec, &row, rowOK, &cached, inCache, rep) {
				postpone()
				break
			}
			rep.Deleted++
		}
		if v := verdicts[i]; v.Keep && !v.Record.ExpiresAt.After(cutoff) {
			rep.again++ // claimed again by this pass's next batch
		}
	}
	s.stats.reapExtended.Add(uint64(rep.Extended))
	s.stats.reapArchived.Add(uint64(rep.Archived))
	s.stats.reapDeleted.Add(uint64(rep.Deleted))
	s.stats.reapSkipped.Add(uint64(rep.Skipped))
	return verdicts, nil
}

// archive hands a dead session to the archive hook, if any, and reports
// whether its row may be deleted.
func (r *Reaper) archive(ctx context.Context, rec Record, row *Entry, rowOK bool, cached *Entry, inCache bool, rep *ReapReport) bool {
	if r.cfg.Archive == nil {
		return true
	}
	a := ArchivedSession{Key: rec.Key}
	switch {
	case inCache && !isTombstone(cached):
		r.fill(&a, cached, true)
	case rowOK:
		r.fill(&a, row, false)
	default:
		a.Payload = rec.Payload
	}
	if err := r.cfg.Archive(ctx, a); err != nil {
		rep.Errors++
		r.store.stats.reapErrors.Add(1)
		r.store.log.Warn("hybridsession: archive hook failed; the row waits for the next pass", "error", err)
		return false
	}
	rep.Archived++
	return true
}

// fill copies e's fields into a. When payloadIsEnvelope, e.Payload holds
// the whole envelope (memcached's copy) and the values are cut out of it.
func (r *Reaper) fill(a *ArchivedSession, e *Entry, payloadIsEnvelope bool) {
	payload := e.Payload
	if payloadIsEnvelope {
		var inner Entry
		if r.store.openEnvelope(a.Key, e.Payload, &inner) == nil {
			payload = inner.Payload
		}
	}
	a.Subject, a.Created, a.LastActivity, a.Deadline = e.Subject, e.Created, e.ActiveAt, e.Deadline
	a.Version, a.Codec, a.Payload = e.Version, e.Codec, payload
	if c := r.codecs[e.Codec]; c != nil {
		if v, err := c.Decode(payload); err == nil {
			a.Values = v
		}
	}
}

// Run makes a pass every Interval (± 10%) until ctx ends, logging each
// pass's failures; it returns ctx's error. The first pass starts at once.
func (r *Reaper) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		rep, err := r.RunOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.store.log.Warn("hybridsession: reaper pass failed", "error", err, "report", rep.String())
		} else if rep.Examined > 0 {
			r.store.log.Debug("hybridsession: reaper pass", "report", rep.String())
		}
		// Interval ± 10%, so that the reapers of many app servers drift
		// apart instead of claiming batches in step.
		t.Reset(r.cfg.Interval + time.Duration(rand.Int64N(int64(r.cfg.Interval)/5+1)) - r.cfg.Interval/10)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Start runs Run in a goroutine until Stop. Calling Start on a running
// Reaper does nothing.
func (r *Reaper) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = r.Run(ctx)
	}(r.done)
}

// Stop ends the goroutine Start began, waiting for a pass in progress to
// finish its current batch. It is a no-op when the Reaper is not running.
func (r *Reaper) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
