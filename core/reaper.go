package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// ArchivedSession is a dead session handed to ReaperConfig.Archive: the freshest copy the reaper found.
type ArchivedSession struct {
	// Key is the storage key (a hash of the token; the token is not kept).
	Key string
	// Subject is the user id set with Session.SetSubject, "" when none.
	Subject string
	// Created, LastActivity and Deadline are its creation time, last recorded activity and absolute deadline.
	Created, LastActivity, Deadline time.Time
	// Codec and Payload are the encoded values as stored.
	Codec   uint8
	Payload []byte
	// Values are the decoded values, or nil when the Store's codecs could not decode Payload.
	Values map[string]any
}

// Reaper deletes the rows of dead sessions. Each pass claims the rows whose ExpiresAt has passed, oldest
// first, asks memcached for their copies in one GetMulti per batch, and
//   - extends the rows of sessions memcached still holds alive (their activity never reached the row: an
//     app server crashed with it queued), writing memcached's copy;
//   - deletes, after the optional archive hook, the rows of dead sessions and of expired tombstones;
//   - leaves rows it cannot decide (memcached unreachable, a key it does not hold) for a later pass.
//
// Reapers in one process or many may share one database: the durable tier hands each row to one at a time.
type Reaper struct {
	store  *Store
	cfg    ReaperConfig
	cancel context.CancelFunc // of the Store's own reaper
	done   chan struct{}
}

// NewReaper returns a Reaper for the Store's tiers, to run instead of the Store's own (ReaperConfig.Interval
// < 0): from cron with RunOnce, for example. It returns an error when the Store has no durable tier.
func (s *Store) NewReaper(cfg ReaperConfig) (*Reaper, error) {
	if s.durable == nil {
		return nil, errors.New("core: NewReaper: the Store has no durable tier")
	}
	cfg.Interval, cfg.Batch = cmp.Or(max(cfg.Interval, 0), time.Minute), cmp.Or(max(cfg.Batch, 0), 500)
	return &Reaper{store: s, cfg: cfg}, nil
}

// RunOnce makes one pass: batches of expired rows, oldest first, until none is left or a batch left every
// row it claimed; what it did is added to the Store's Stats (ReapExtended, ReapDeleted, ReapErrors). It
// returns ctx's error, or that of the batch that failed, where the pass stopped.
func (r *Reaper) RunOnce(ctx context.Context) error {
	s, now := r.store, r.store.now()
	for ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
		var b reapCounts
		n, err := s.durable.Reap(bctx, now, r.cfg.Batch, func(ctx context.Context, batch []durable.Record) ([]durable.Verdict, error) {
			b = reapCounts{}
			return r.judge(ctx, now, batch, &b), nil
		})
		cancel()
		if err != nil {
			s.stats.reapErrors.Add(1)
			return fmt.Errorf("core: reaper: %w", err)
		}
		s.stats.reapExtended.Add(uint64(b.extended))
		s.stats.reapDeleted.Add(uint64(b.deleted))
		s.stats.reapErrors.Add(uint64(b.errors))
		if n < r.cfg.Batch || b.left == n {
			break
		}
	}
	return ctx.Err()
}

// reapCounts is what one batch did.
type reapCounts struct{ extended, deleted, left, errors int }

var (
	reapDelete = durable.Verdict{Action: durable.Delete}
	reapLeave  = durable.Verdict{Action: durable.Leave}
)

// judge decides each row of a batch; see Reaper.
func (r *Reaper) judge(ctx context.Context, now time.Time, batch []durable.Record, n *reapCounts) []durable.Verdict {
	s := r.store
	copies, unknown := s.copies(ctx, batch)
	out := make([]durable.Verdict, len(batch))
	for i, rec := range batch {
		var row envelope.Envelope
		err := s.open(rec.Payload, s.prefix+rec.Key, &row, false)
		switch c := copies[rec.Key]; {
		case errors.Is(err, envelope.ErrUnreadable) && !now.Before(rec.Deadline):
			out[i] = reapDelete // past its absolute deadline, whatever it holds
		case errors.Is(err, envelope.ErrUnreadable):
			// Sealed with a key this Store lacks: postponed one Interval, as it is, lest it stall every pass.
			rec.Version++
			rec.ExpiresAt = now.Add(r.cfg.Interval).Truncate(time.Millisecond)
			out[i] = durable.Verdict{Action: durable.Keep, Record: rec}
		case err != nil:
			out[i] = reapDelete // corrupt: nothing to keep
		case row.Destroyed && !dead(&row, now) && (unknown[rec.Key] || r.unburied(ctx, rec.Key, c, now)):
			out[i] = reapLeave // a copy may still serve the logged-out session: ask again next pass
		case row.Destroyed:
			out[i] = r.byRow(rec, &row, now)
		case unknown[rec.Key]:
			out[i] = reapLeave
		case c != nil && (c.Destroyed || now.Before(c.ExpiresAt())):
			out[i] = r.byCopy(rec, &row, c, now, n)
		case now.Before(row.RowExpiresAt()):
			out[i] = r.byRow(rec, &row, now)
		case r.cfg.Archive != nil && r.cfg.Archive(ctx, r.archived(rec.Key, &row)) != nil:
			n.errors++
			out[i] = reapLeave
		default:
			out[i] = reapDelete
		}
		switch out[i].Action {
		case durable.Delete:
			n.deleted++
		case durable.Leave:
			n.left++
		}
	}
	return out
}

// unburied turns c, a live copy of a tombstone row, into a tombstone (its logout could not reach it) and
// reports whether that failed.
func (r *Reaper) unburied(ctx context.Context, key string, c *envelope.Envelope, now time.Time) bool {
	return c != nil && !c.Destroyed && r.store.bury(ctx, r.store.prefix+key, c, now) != nil
}

// byCopy keeps a row whose memcached copy is alive (or a tombstone) with the copy's state, merged as a sync
// would.
func (r *Reaper) byCopy(rec durable.Record, row, c *envelope.Envelope, now time.Time, n *reapCounts) durable.Verdict {
	s := r.store
	e := &entry{key: rec.Key, mkey: s.prefix + rec.Key, Envelope: *c}
	switch err := s.rebase(e, rec, true, nil); {
	case errors.Is(err, errSuperseded):
		return r.byRow(rec, row, now)
	case err != nil:
		return reapLeave
	}
	if !e.Destroyed {
		n.extended++
	}
	// The copy is not told of the row version it now stands for (Tier.Reap does not say which verdicts
	// applied): its next sync is refused once and finds its own state in the row.
	return durable.Verdict{Action: durable.Keep, Record: s.record(e.mkey, &e.Envelope, rec.Version).Record}
}

// byRow judges a row by its own data: alive (or a tombstone before its deadline), it is kept with its
// ExpiresAt column corrected; dead, it is deleted.
func (r *Reaper) byRow(rec durable.Record, row *envelope.Envelope, now time.Time) durable.Verdict {
	if dead(row, now) {
		return reapDelete
	}
	return durable.Verdict{Action: durable.Keep, Record: r.store.record(r.store.prefix+rec.Key, row, rec.Version).Record}
}

// archived describes a dead session for the archive hook.
func (r *Reaper) archived(key string, e *envelope.Envelope) ArchivedSession {
	values, _ := r.store.decode(e.Codec, e.Payload)
	return ArchivedSession{Key: key, Subject: e.Subject, Created: e.Created, LastActivity: e.ActiveAt,
		Deadline: e.Deadline, Codec: e.Codec, Payload: e.Payload, Values: values}
}

// start makes a pass at once and then every Interval (± 10%), logging failed passes, until stop.
func (r *Reaper) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		for {
			if err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
				r.store.warn.log("reap", "hybridsession: reaper pass failed", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.cfg.Interval + time.Duration(rand.Int64N(int64(r.cfg.Interval)/5+1)) - r.cfg.Interval/10):
			}
		}
	}()
}

// stop ends the goroutine start began, waiting for a batch in progress.
func (r *Reaper) stop() {
	r.cancel()
	<-r.done
}
