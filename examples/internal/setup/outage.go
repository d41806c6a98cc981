package setup

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
)

// ErrOutage is what the durable tier answers while an Outage is cut.
var ErrOutage = errors.New("setup: database cut by the demo")

// Outage is a durable tier that can be cut for a while, in the demo only:
// while it is cut every call fails with ErrOutage, as when the database is
// unreachable, and the Store carries on with memcached. It also counts the
// calls that reach the database, for the operator panel.
type Outage struct {
	durable.Tier
	until atomic.Int64  // Unix nanoseconds; cut while now is before it
	calls atomic.Uint64 // calls passed to Durable
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

// Calls returns how many calls reached the database: row loads, row writes
// (one call, and a few statements, however many rows its batch holds),
// listings and reaper batches.
func (o *Outage) Calls() uint64 { return o.calls.Load() }

func (o *Outage) down() error {
	if !o.Until().IsZero() {
		return ErrOutage
	}
	o.calls.Add(1)
	return nil
}

// Load fails while cut, else calls the database.
func (o *Outage) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	if err := o.down(); err != nil {
		return durable.Record{}, false, err
	}
	return o.Tier.Load(ctx, key)
}

// Write fails while cut, else calls the database.
func (o *Outage) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	if err := o.down(); err != nil {
		return nil, err
	}
	return o.Tier.Write(ctx, batch)
}

// List fails while cut, else calls the database.
func (o *Outage) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	if err := o.down(); err != nil {
		return nil, err
	}
	return o.Tier.List(ctx, subject, after, limit)
}

// Reap fails while cut, else calls the database.
func (o *Outage) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	if err := o.down(); err != nil {
		return 0, err
	}
	return o.Tier.Reap(ctx, now, limit, judge)
}
