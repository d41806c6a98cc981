package core

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// ArchivedSession is a dead session handed to ReaperConfig.Archive: the
// freshest copy the reaper found.
type ArchivedSession struct {
	// Key is the storage key (a hash of the token; the token is not kept).
	Key string
	// Subject is the user id set with Session.SetSubject, "" when none.
	Subject string
	// Created, LastActivity and Deadline are the session's creation time,
	// last recorded activity and absolute deadline.
	Created, LastActivity, Deadline time.Time
	// Codec and Payload are the encoded values as stored.
	Codec   uint8
	Payload []byte
	// Values are the decoded values, or nil when the Store's codecs could
	// not decode Payload.
	Values map[string]any
}

// Reaper is the batch half of the hybrid pattern: it deletes the rows of
// dead sessions. Each pass claims the rows whose ExpiresAt has passed,
// oldest first, asks memcached for each session's copy in one GetMulti per
// batch, and
//
//   - extends the rows of sessions memcached still holds alive (their
//     activity never reached the row: an app server crashed with it
//     queued), writing memcached's copy;
//   - deletes, after the optional archive hook, the rows of dead sessions
//     and of tombstones past their deadline;
//   - leaves rows it cannot decide (memcached unreachable, a key it does
//     not hold) for a later pass.
//
// Several reapers, in one process or many, may run against one database at
// once: the durable tier hands each row to one of them at a time.
type Reaper struct {
	store *Store
	cfg   ReaperConfig

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewReaper returns a Reaper for the Store's tiers, to run elsewhere than
// the Store's own (ReaperConfig.Interval < 0): from cron with RunOnce, for
// example. It returns an error when the Store has no durable tier.
func (s *Store) NewReaper(cfg ReaperConfig) (*Reaper, error) {
	if s.durable == nil {
		return nil, errors.New("core: NewReaper: the Store has no durable tier")
	}
	cfg.Interval = max(cfg.Interval, 0)
	if cfg.Interval == 0 {
		cfg.Interval = defaultReapInterval
	}
	if cfg.Batch <= 0 {
		cfg.Batch = defaultReapBatch
	}
	return &Reaper{store: s, cfg: cfg}, nil
}

// RunOnce makes one pass: batches of expired rows, oldest first, until none
// is left or a batch left every row it claimed; what it did is added to the
// Store's Stats (ReapExtended, ReapDeleted, ...). The error reports a batch
// that failed; the pass stops there. It is the form for cron.
func (r *Reaper) RunOnce(ctx context.Context) error {
	now := r.store.now()
	for ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(ctx, r.store.dbTimeout)
		var b reapCounts
		n, err := r.store.durable.Reap(bctx, now, r.cfg.Batch, func(ctx context.Context, batch []durable.Record) ([]durable.Verdict, error) {
			b = reapCounts{}
			return r.judge(ctx, now, batch, &b)
		})
		cancel()
		if err != nil {
			r.store.stats.reapErrors.Add(1)
			return fmt.Errorf("core: reaper: %w", err)
		}
		r.store.stats.addReap(b)
		if n < r.cfg.Batch || b.skipped == n {
			break
		}
	}
	return ctx.Err()
}

// reapCounts is what one batch did.
type reapCounts struct{ examined, extended, archived, deleted, skipped, errors int }

// judge decides each row of a batch; see Reaper.
func (r *Reaper) judge(ctx context.Context, now time.Time, batch []durable.Record, rep *reapCounts) ([]durable.Verdict, error) {
	s := r.store
	rep.examined = len(batch)
	copies, unknown := s.copies(ctx, batch)
	out := make([]durable.Verdict, len(batch))
	for i, rec := range batch {
		var row envelope.Envelope
		err := s.open(rec.Payload, s.prefix+rec.Key, &row, false)
		switch {
		case errors.Is(err, envelope.ErrUnreadable):
			out[i] = r.postpone(rec, now, rep)
		case err != nil:
			out[i].Action = durable.Delete // corrupt: nothing to keep
		case row.Destroyed:
			out[i] = r.tombstone(rec, &row, now)
		default:
			if c, ok := copies[rec.Key]; ok {
				out[i] = r.live(ctx, rec, &row, &c, false, now, rep)
			} else {
				out[i] = r.live(ctx, rec, &row, nil, unknown[rec.Key], now, rep)
			}
		}
		if out[i].Action == durable.Delete {
			rep.deleted++
		}
	}
	return out, nil
}

// postpone keeps a row sealed with a key this Store does not hold for a
// pass one Interval later, its payload as it is: left in place, such rows
// would stay first in line for as long as the key is missing here and
// stall every pass. (Rows left for a passing reason — memcached could not
// be asked, the archive hook failed — are left as they are: a write
// racing the pass, a touch among them, must not lose to the reaper.) A
// row past its absolute deadline is dead whatever it holds.
func (r *Reaper) postpone(rec durable.Record, now time.Time, rep *reapCounts) durable.Verdict {
	if !now.Before(rec.Deadline) {
		return durable.Verdict{Action: durable.Delete}
	}
	rep.skipped++
	rec.Version++
	rec.ExpiresAt = now.Add(r.cfg.Interval).Truncate(time.Millisecond)
	return durable.Verdict{Action: durable.Keep, Record: rec}
}

// tombstone keeps a tombstone row until the session's deadline.
func (r *Reaper) tombstone(rec durable.Record, row *envelope.Envelope, now time.Time) durable.Verdict {
	if dead(row, now) {
		return durable.Verdict{Action: durable.Delete}
	}
	return durable.Verdict{Action: durable.Keep, Record: r.store.record(r.store.prefix+rec.Key, row, rec.Version).Record}
}

// live judges a row that is not a tombstone, given memcached's copy (nil
// when memcached has none; unknown when it could not be asked, or the copy
// cannot be read here).
func (r *Reaper) live(ctx context.Context, rec durable.Record, row, c *envelope.Envelope, unknown bool, now time.Time, rep *reapCounts) durable.Verdict {
	s := r.store
	switch {
	case unknown:
		rep.skipped++
		return durable.Verdict{Action: durable.Leave}
	case c != nil && (c.Destroyed || now.Before(c.ExpiresAt())):
		e := &Entry{key: rec.Key, mkey: s.prefix + rec.Key, env: *c}
		switch err := s.rebase(e, rec, true, nil); {
		case errors.Is(err, errSuperseded):
			return r.byRow(rec, row, now)
		case err != nil:
			rep.skipped++
			return durable.Verdict{Action: durable.Leave}
		}
		if !e.env.Destroyed {
			rep.extended++
		}
		// The copy is not told of the row version it now stands for:
		// Durable.Reap does not say which verdicts applied. Its next sync
		// is refused once and finds its own state in the row (rule 1).
		return durable.Verdict{Action: durable.Keep, Record: s.record(e.mkey, &e.env, rec.Version).Record}
	case now.Before(row.RowExpiresAt()):
		return r.byRow(rec, row, now)
	}
	if r.cfg.Archive != nil {
		if err := r.cfg.Archive(ctx, r.archived(rec.Key, row)); err != nil {
			rep.errors++
			return durable.Verdict{Action: durable.Leave}
		}
		rep.archived++
	}
	return durable.Verdict{Action: durable.Delete}
}

// byRow judges a row by its own sealed data: alive, its ExpiresAt column
// was wrong, and is corrected; dead, it is deleted.
func (r *Reaper) byRow(rec durable.Record, row *envelope.Envelope, now time.Time) durable.Verdict {
	if dead(row, now) {
		return durable.Verdict{Action: durable.Delete}
	}
	return durable.Verdict{Action: durable.Keep, Record: r.store.record(r.store.prefix+rec.Key, row, rec.Version).Record}
}

// archived describes a dead session for the archive hook.
func (r *Reaper) archived(key string, e *envelope.Envelope) ArchivedSession {
	a := ArchivedSession{
		Key: key, Subject: e.Subject, Created: e.Created, LastActivity: e.ActiveAt, Deadline: e.Deadline,
		Codec: e.Codec, Payload: e.Payload,
	}
	if v, err := r.store.decode(e.Codec, e.Payload); err == nil {
		a.Values = v
	}
	return a
}

// Run makes a pass every Interval (± 10%) until ctx ends, logging failed
// passes; it returns ctx's error. The first pass starts at once.
func (r *Reaper) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.store.warn.log("reap", "hybridsession: reaper pass failed", err)
		}
		t.Reset(r.cfg.Interval + time.Duration(rand.Int64N(int64(r.cfg.Interval)/5+1)) - r.cfg.Interval/10)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// start runs Run in a goroutine until stop.
func (r *Reaper) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	r.cancel, r.done = cancel, make(chan struct{})
	r.mu.Unlock()
	go func(done chan struct{}) {
		defer close(done)
		_ = r.Run(ctx)
	}(r.done)
}

// stop ends the goroutine start began, waiting for a batch in progress.
func (r *Reaper) stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
