package metrics

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Durable wraps a durable.Tier: it records an OpenTelemetry span around
// every call when it has a TracerProvider, times the calls for the latency
// histogram of every Collector and RegisterOTel given it in
// Config.Durable, and remembers the reaper's last complete pass (see
// LastReapPass). It is a durable.Tier itself: give it to
// core.StoreConfig.Durable in place of the one it wraps.
type Durable struct {
	next   durable.Tier
	tracer trace.Tracer // nil: no spans
	timing recorders

	mu     sync.Mutex
	passes map[int64]*reapProgress // the reaper passes in progress, by their now in Unix nanoseconds
	last   ReapPass
}

// reapProgress is a reaper pass in progress: when its first batch started
// and the rows its batches claimed so far.
type reapProgress struct {
	start time.Time
	rows  int
}

// maxPasses bounds Durable.passes: a pass whose reaper stopped between two
// batches never ends, and the one with the earliest now is forgotten to
// make room.
const maxPasses = 64

var _ durable.Tier = (*Durable)(nil)

// ReapPass describes the reaper's last complete pass, as seen by Durable.
type ReapPass struct {
	// End is when the pass's last batch returned; zero before the first pass.
	End time.Time
	// Duration is the wall time from the pass's first batch to its end.
	Duration time.Duration
	// Examined counts the rows the pass's batches claimed.
	Examined int
	// Err is the error that ended the pass early, nil when it ran out of rows.
	Err error
}

// NewDurable wraps d. With a nil tp it records no spans (and, until a
// histogram is attached, costs one mutex per reaper batch and nothing per
// request); otherwise each call is a
// client span, a child of the span in the call's context, following
// OpenTelemetry's semantic conventions for database clients: named after
// the operation ("load", "write", "list", "reap"), with
// db.system.name=other_sql (the wrapper cannot tell which SQL database is
// behind the tier), db.operation.name, db.operation.batch.size for a Write
// of two rows or more, and on failure error.type and the status Error. It
// panics when d is nil.
func NewDurable(d durable.Tier, tp trace.TracerProvider) *Durable {
	if d == nil {
		panic("metrics: NewDurable needs a durable.Tier")
	}
	w := &Durable{next: d}
	if tp != nil {
		w.tracer = tp.Tracer(scope, trace.WithSchemaURL(semconv.SchemaURL))
	}
	return w
}

// Unwrap returns the wrapped durable tier.
func (d *Durable) Unwrap() durable.Tier { return d.next }

// LastReapPass returns the reaper's last complete pass through this
// Durable: the pass ends with a batch that examined fewer rows than its
// limit, or failed. When several reapers (one per Store) share this
// Durable, it is the pass that ended last; each pass is timed and counted
// on its own, told apart by the now its batches share.
func (d *Durable) LastReapPass() ReapPass {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// dbCall is a call to the wrapped tier in progress.
type dbCall struct {
	ctx   context.Context // the call's, with its span
	op    string
	span  trace.Span // nil: none recorded
	recs  []recorder // nil: not timed
	start time.Time
}

// start starts the span of a call to the operation op, named op, and when
// timed, times it for the histograms attached.
func (d *Durable) start(ctx context.Context, op string, timed bool) dbCall {
	c := dbCall{ctx: ctx, op: op}
	if d.tracer != nil {
		var span trace.Span
		c.ctx, span = d.tracer.Start(ctx, op, clientKind)
		if span.IsRecording() {
			span.SetAttributes(semconv.DBSystemNameOtherSQL, semconv.DBOperationName(op))
			c.span = span
		}
	}
	if timed {
		if c.recs = d.timing.load(); len(c.recs) > 0 {
			c.start = time.Now()
		}
	}
	return c
}

// end ends the call's span, as failed when err is not nil, and records
// its duration.
func (c *dbCall) end(err error) {
	var et string
	if err != nil {
		et = errorType(err)
	}
	var took time.Duration
	if len(c.recs) > 0 {
		took = time.Since(c.start)
	}
	if c.span != nil {
		if err != nil {
			failed(c.span, et, err)
		}
		c.span.End()
	}
	for _, r := range c.recs {
		r.record(c.ctx, call{op: c.op, took: took, errorType: et})
	}
}

// Load calls the wrapped Load in a span.
func (d *Durable) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	c := d.start(ctx, "load", true)
	rec, found, err := d.next.Load(c.ctx, key)
	if c.span != nil {
		c.span.SetAttributes(attribute.Bool("hybridsession.found", found))
	}
	c.end(err)
	return rec, found, err
}

// Write calls the wrapped Write in a span, with the batch's size and the
// number of writes that applied.
func (d *Durable) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	c := d.start(ctx, "write", true)
	applied, err := d.next.Write(c.ctx, batch)
	if c.span != nil {
		n := 0
		for _, ok := range applied {
			if ok {
				n++
			}
		}
		c.span.SetAttributes(attribute.Int("hybridsession.applied", n))
		if len(batch) > 1 {
			c.span.SetAttributes(semconv.DBOperationBatchSize(len(batch)))
		}
	}
	c.end(err)
	return applied, err
}

// List calls the wrapped List in a span.
func (d *Durable) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	c := d.start(ctx, "list", true)
	recs, err := d.next.List(c.ctx, subject, after, limit)
	c.end(err)
	return recs, err
}

// Reap calls the wrapped Reap in a span and keeps track of the reaper's
// passes: the batches of one pass share its now, and a pass ends with a
// batch that claimed fewer rows than its limit, left every row it claimed
// for a later pass (durable.Leave), or failed.
func (d *Durable) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	c := d.start(ctx, "reap", false) // not timed: the batch holds the judge's work
	pass := d.startBatch(now)
	left := -1 // rows the batch left; -1: judge not called
	n, err := d.next.Reap(c.ctx, now, limit, func(ctx context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		vs, err := judge(ctx, batch)
		left = 0
		for _, v := range vs {
			if v.Action == durable.Leave {
				left++
			}
		}
		return vs, err
	})
	if c.span != nil {
		c.span.SetAttributes(attribute.Int("hybridsession.examined", n))
	}
	c.end(err)
	d.endBatch(now, pass, n, err != nil || n < limit || left == n, err)
	return n, err
}

// startBatch returns the pass of a reaper batch called with now, starting
// one when it is the pass's first batch.
func (d *Durable) startBatch(now time.Time) *reapProgress {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := now.UnixNano()
	if p := d.passes[key]; p != nil {
		return p
	}
	if d.passes == nil {
		d.passes = map[int64]*reapProgress{}
	}
	if len(d.passes) >= maxPasses {
		delete(d.passes, slices.Min(slices.Collect(maps.Keys(d.passes))))
	}
	p := &reapProgress{start: time.Now()}
	d.passes[key] = p
	return p
}

// endBatch adds a batch's n rows to its pass and, when the batch ended the
// pass, makes the pass the last one.
func (d *Durable) endBatch(now time.Time, p *reapProgress, n int, ended bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.rows += n
	if !ended {
		return
	}
	t := time.Now()
	d.last = ReapPass{End: t, Duration: t.Sub(p.start), Examined: p.rows, Err: err}
	if key := now.UnixNano(); d.passes[key] == p {
		delete(d.passes, key)
	}
}
