package metrics

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/hybridsession/hybridsession/core/durable"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope name of the spans.
const scope = "github.com/hybridsession/hybridsession/metrics"

// Tracer records an OpenTelemetry span for every memcached operation of a
// Store. Set its StartCacheOp as core.MemcachedConfig.Tracer; leave that
// field nil for no tracing at no cost.
//
// The spans are client spans named "memcached <op>" with the attributes
// db.system.name=memcached, db.operation.name and server.address. A miss,
// "not stored" or a CAS conflict is an answer, recorded as the attribute
// memcached.result; only failures (network errors, timeouts) set the span's
// status to Error.
type Tracer struct {
	tracer trace.Tracer
}

// NewTracer returns a Tracer that records spans with tp's tracer.
// It panics when tp is nil (pass otel.GetTracerProvider() for the global one).
func NewTracer(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		panic("metrics: NewTracer needs a TracerProvider")
	}
	return &Tracer{tracer: tp.Tracer(scope)}
}

var (
	attrMemcached = attribute.String("db.system.name", "memcached")
)

// StartCacheOp starts the span of one memcached operation; see
// core.MemcachedConfig.Tracer. A span the sampler drops costs its Start and nothing
// more.
func (t *Tracer) StartCacheOp(ctx context.Context, op, addr string) func(error) {
	_, span := t.tracer.Start(ctx, cacheSpanName(op), clientKind)
	if !span.IsRecording() {
		return noEnd
	}
	span.SetAttributes(attrMemcached, attribute.String("db.operation.name", op), attribute.String("server.address", addr))
	return func(err error) {
		switch {
		case err == nil:
		case protocolAnswer(err):
			span.SetAttributes(attribute.String("memcached.result", err.Error()))
		default:
			span.RecordError(err)
			span.SetStatus(codes.Error, "memcached unavailable")
		}
		span.End()
	}
}

// protocolAnswer reports whether err, handed to a tracer's end, is the
// node's answer rather than a failure to reach it: a miss, "not stored", a
// CAS conflict, a refused key, or a SERVER_ERROR line (out of memory, item
// too large), which gomemcache reports as an unexpected response line. The
// Store counts the same answers as successes of the node.
func protocolAnswer(err error) bool {
	return errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrNotStored) ||
		errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrMalformedKey) ||
		errors.Is(err, memcache.ErrServerError) || strings.Contains(err.Error(), "SERVER_ERROR")
}

var (
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
	noEnd      = func(error) {}
)

// cacheSpanName returns "memcached "+op without allocating for the
// operations core.MemcachedConfig.Tracer lists.
func cacheSpanName(op string) string {
	switch op {
	case "get":
		return "memcached get"
	case "get_multi":
		return "memcached get_multi"
	case "add":
		return "memcached add"
	case "set":
		return "memcached set"
	case "cas":
		return "memcached cas"
	case "delete":
		return "memcached delete"
	}
	return "memcached " + op
}

// Durable wraps a durable.Tier: it records an OpenTelemetry span around
// every call when it has a TracerProvider, and remembers the reaper's last
// complete pass (see LastReapPass) either way. It is a durable.Tier itself:
// give it to core.StoreConfig.Durable in place of the one it wraps.
type Durable struct {
	next   durable.Tier
	tracer trace.Tracer // nil: no spans

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

// NewDurable wraps d. With a nil tp it records no spans (and costs one
// mutex per reaper batch, nothing per request); otherwise each call is a
// client span named "db <Method>" (db.operation.name=<Method>), with the
// error recorded on failure. It panics when d is nil.
func NewDurable(d durable.Tier, tp trace.TracerProvider) *Durable {
	if d == nil {
		panic("metrics: NewDurable needs a durable.Tier")
	}
	w := &Durable{next: d}
	if tp != nil {
		w.tracer = tp.Tracer(scope)
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

var attrDB = attribute.String("db.system.name", "hybridsession.durable")

// start starts the span called name ("db <method>") of a call to method.
func (d *Durable) start(ctx context.Context, name, method string) (context.Context, trace.Span) {
	if d.tracer == nil {
		return ctx, nil
	}
	ctx, span := d.tracer.Start(ctx, name, clientKind)
	if span.IsRecording() {
		span.SetAttributes(attrDB, attribute.String("db.operation.name", method))
	}
	return ctx, span
}

func end(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Load calls the wrapped Load in a span.
func (d *Durable) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	ctx, span := d.start(ctx, "db Load", "Load")
	rec, found, err := d.next.Load(ctx, key)
	if span != nil {
		span.SetAttributes(attribute.Bool("hybridsession.found", found))
	}
	end(span, err)
	return rec, found, err
}

// Write calls the wrapped Write in a span, with the batch's size and the
// number of writes that applied.
func (d *Durable) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	ctx, span := d.start(ctx, "db Write", "Write")
	applied, err := d.next.Write(ctx, batch)
	if span != nil {
		n := 0
		for _, ok := range applied {
			if ok {
				n++
			}
		}
		span.SetAttributes(attribute.Int("db.operation.batch.size", len(batch)), attribute.Int("hybridsession.applied", n))
	}
	end(span, err)
	return applied, err
}

// List calls the wrapped List in a span.
func (d *Durable) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	ctx, span := d.start(ctx, "db List", "List")
	recs, err := d.next.List(ctx, subject, after, limit)
	end(span, err)
	return recs, err
}

// Reap calls the wrapped Reap in a span and keeps track of the reaper's
// passes: the batches of one pass share its now, and a pass ends with a
// batch that claimed fewer rows than its limit, left every row it claimed
// for a later pass (durable.Leave), or failed.
func (d *Durable) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	ctx, span := d.start(ctx, "db Reap", "Reap")
	pass := d.startBatch(now)
	left := -1 // rows the batch left; -1: judge not called
	n, err := d.next.Reap(ctx, now, limit, func(ctx context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		vs, err := judge(ctx, batch)
		left = 0
		for _, v := range vs {
			if v.Action == durable.Leave {
				left++
			}
		}
		return vs, err
	})
	if span != nil {
		span.SetAttributes(attribute.Int("hybridsession.examined", n))
	}
	end(span, err)
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
