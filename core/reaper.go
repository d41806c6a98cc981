package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ReaperConfig configures a Reaper.
type ReaperConfig struct {
	// Interval is the time between passes of Run and Start.
	// Optional. Default 1m.
	Interval time.Duration

	// Batch is how many expired-looking rows one database transaction
	// claims, and one memcached GetMulti asks about. Optional. Default 500.
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
	// Errors counts archive hook failures and failed batches.
	Errors int
	// Duration is the wall time of the pass.
	Duration time.Duration
}

func (r ReapReport) String() string {
	return fmt.Sprintf("examined=%d extended=%d archived=%d deleted=%d skipped=%d errors=%d duration=%s",
		r.Examined, r.Extended, r.Archived, r.Deleted, r.Skipped, r.Errors, r.Duration.Round(time.Millisecond))
}

// Reaper is the batch half of the hybrid pattern. Because a session reaches
// the database at most once per SyncInterval, its row can look expired while
// the user is active in memcached. The reaper scans expired-looking rows,
// asks memcached for each session's latest copy, rewrites the rows of
// sessions that are still alive with that copy, and deletes (after the
// optional archive hook) the rows of sessions that are really dead.
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
	if cfg.Interval < 0 || cfg.Batch < 0 {
		return nil, errors.New("core: ReaperConfig.Interval and Batch must not be negative")
	}
	r := &Reaper{store: s, cfg: cfg}
	for _, c := range append([]Codec{JSON, Gob, Msgpack}, cfg.Codecs...) {
		r.codecs[c.ID()] = c
	}
	return r, nil
}

// RunOnce makes one pass: it takes batches of rows that expired before the
// pass began, oldest first, until none is left, and returns what it did.
// It is the form for cron (see examples/reaper). The error reports a batch
// that failed; the pass stops there and the rest waits for the next one.
func (r *Reaper) RunOnce(ctx context.Context) (ReapReport, error) {
	start := time.Now()
	now := r.store.now()
	var rep ReapReport
	for ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(ctx, r.store.dbTimeout)
		var b ReapReport
		n, err := r.store.durable.Reap(bctx, now, r.cfg.Batch, func(ctx context.Context, batch []Record) ([]Verdict, error) {
			b = ReapReport{}
			return r.judge(ctx, now, batch, &b)
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
		if n < r.cfg.Batch || n == b.Skipped+b.Errors {
			// The last batch, or one we could only postpone: stop, rather
			// than spin on rows that stay expired.
			break
		}
	}
	rep.Duration = time.Since(start)
	return rep, ctx.Err()
}

func (r *ReapReport) add(b ReapReport) {
	r.Examined += b.Examined
	r.Extended += b.Extended
	r.Archived += b.Archived
	r.Deleted += b.Deleted
	r.Skipped += b.Skipped
	r.Errors += b.Errors
}

// judge decides each row of a batch; see Reaper.
func (r *Reaper) judge(ctx context.Context, now time.Time, batch []Record, rep *ReapReport) ([]Verdict, error) {
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
		postpone := func() {
			verdicts[i] = Verdict{Keep: true, Record: rec}
			verdicts[i].Record.ExpiresAt = now.Add(r.cfg.Interval).Truncate(time.Millisecond)
		}
		var row Entry
		rowErr := s.openEnvelope(rec.Key, rec.Payload, &row)
		rowOK := rowErr == nil
		if rowOK && isTombstone(&row) {
			rep.Deleted++ // verdict zero value: delete
			continue
		}
		if _, inCache := items[rec.Key]; errors.Is(rowErr, ErrNotAuthentic) && !inCache && now.Before(rec.Deadline) {
			// Sealed with a key this process does not hold (a reaper
			// deployed without the new key): keep the row until its
			// absolute deadline rather than delete a session that may live.
			rep.Skipped++
			postpone()
			continue
		}
		if failed[rec.Key] {
			rep.Skipped++
			postpone()
			continue
		}
		cached, inCache := items[rec.Key]
		if inCache && !isTombstone(&cached) && cached.Alive(now) && (!rowOK || cached.Version >= row.Version) {
			envelope := cached.Payload
			cached.Payload = nil
			nr := s.record(rec.Key, &cached, envelope, now)
			if !nr.ExpiresAt.After(now) { // cannot happen for a live entry; never loop on a row
				nr.ExpiresAt = now.Add(r.cfg.Interval).Truncate(time.Millisecond)
			}
			verdicts[i] = Verdict{Keep: true, Record: nr}
			rep.Extended++
			continue
		}
		if inCache && !isTombstone(&cached) && cached.Alive(now) && rowOK && cached.Version < row.Version {
			// memcached holds an older copy than the row (a write went
			// through to the database around an unreachable node): the
			// session lives, with the row's newer data.
			verdicts[i] = Verdict{Keep: true, Record: s.record(rec.Key, &row, rec.Payload, now)}
			rep.Extended++
			continue
		}
		// Dead: gone from memcached, idle too long, past its deadline, or
		// destroyed. Archive the freshest copy, then delete.
		if r.cfg.Archive != nil {
			a := ArchivedSession{Key: rec.Key}
			switch {
			case inCache && !isTombstone(&cached):
				r.fill(&a, &cached, true)
			case rowOK:
				r.fill(&a, &row, false)
			default:
				a.Payload = rec.Payload
			}
			if err := r.cfg.Archive(ctx, a); err != nil {
				rep.Errors++
				s.stats.reapErrors.Add(1)
				s.log.Warn("hybridsession: archive hook failed; the row waits for the next pass", "error", err)
				postpone()
				continue
			}
			rep.Archived++
		}
		rep.Deleted++
	}
	s.stats.reapExtended.Add(uint64(rep.Extended))
	s.stats.reapArchived.Add(uint64(rep.Archived))
	s.stats.reapDeleted.Add(uint64(rep.Deleted))
	s.stats.reapSkipped.Add(uint64(rep.Skipped))
	return verdicts, nil
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

// Run makes a pass every Interval until ctx ends, logging each pass's
// failures; it returns ctx's error. The first pass starts at once.
func (r *Reaper) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
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
