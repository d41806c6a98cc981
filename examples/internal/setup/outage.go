package setup

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// ErrOutage is what the durable tier answers while an Outage is cut.
var ErrOutage = errors.New("setup: database cut by the demo")

// Outage is a durable tier that can be cut for a while, in the demo only:
// while it is cut every call fails with ErrOutage, as when the database is
// unreachable, and the Store carries on with memcached.
type Outage struct {
	core.Durable
	until atomic.Int64 // Unix nanoseconds; cut while now is before it
}

// Cut makes every call fail for d from now (0 ends a cut at once).
func (o *Outage) Cut(d time.Duration) { o.until.Store(time.Now().Add(d).UnixNano()) }

// Until returns when the current cut ends, zero when the tier is up.
func (o *Outage) Until() time.Time {
	u := o.until.Load()
	if u == 0 || time.Now().UnixNano() >= u {
		return time.Time{}
	}
	return time.Unix(0, u)
}

func (o *Outage) down() error {
	if !o.Until().IsZero() {
		return ErrOutage
	}
	return nil
}

// Load fails while cut, else calls the database.
func (o *Outage) Load(ctx context.Context, key string, now time.Time) (core.Record, bool, error) {
	if err := o.down(); err != nil {
		return core.Record{}, false, err
	}
	return o.Durable.Load(ctx, key, now)
}

// Save fails while cut, else calls the database.
func (o *Outage) Save(ctx context.Context, rec core.Record) (bool, error) {
	if err := o.down(); err != nil {
		return false, err
	}
	return o.Durable.Save(ctx, rec)
}

// Delete fails while cut, else calls the database.
func (o *Outage) Delete(ctx context.Context, keys ...string) error {
	if err := o.down(); err != nil {
		return err
	}
	return o.Durable.Delete(ctx, keys...)
}

// DeleteSubject fails while cut, else calls the database.
func (o *Outage) DeleteSubject(ctx context.Context, subject string) ([]string, error) {
	if err := o.down(); err != nil {
		return nil, err
	}
	return o.Durable.DeleteSubject(ctx, subject)
}

// List fails while cut, else calls the database.
func (o *Outage) List(ctx context.Context, now time.Time, after string, limit int) ([]core.Record, error) {
	if err := o.down(); err != nil {
		return nil, err
	}
	return o.Durable.List(ctx, now, after, limit)
}

// Reap fails while cut, else calls the database.
func (o *Outage) Reap(ctx context.Context, now time.Time, limit int, judge core.ReapJudge) (int, error) {
	if err := o.down(); err != nil {
		return 0, err
	}
	return o.Durable.Reap(ctx, now, limit, judge)
}
