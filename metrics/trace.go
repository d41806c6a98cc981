package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope name of the spans.
const scope = "github.com/hybridsession/hybridsession/metrics"

// Tracer records an OpenTelemetry span for every memcached operation of a
// Store. Set it as core.MemcachedConfig.Tracer; leave that field nil for
// no tracing at no cost.
//
// The spans are client spans named "memcached <op>" with the attributes
// db.system.name=memcached, db.operation.name and server.address. A miss,
// "not stored" or a CAS conflict is an answer, recorded as the attribute
// memcached.result; only failures (network errors, timeouts) set the span's
// status to Error.
type Tracer struct {
	tracer trace.Tracer
}

var _ core.CacheTracer = (*Tracer)(nil)

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
// core.CacheTracer. A span the sampler drops costs its Start and nothing
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
		case errors.Is(err, core.ErrCacheUnavailable):
			span.RecordError(err)
			span.SetStatus(codes.Error, "memcached unavailable")
		default:
			span.SetAttributes(attribute.String("memcached.result", err.Error()))
		}
		span.End()
	}
}

var (
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
	noEnd      = func(error) {}
)

// cacheSpanName returns "memcached "+op without allocating for the
// operations core.CacheTracer lists.
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

// Durable wraps a core.Durable: it records an OpenTelemetry span around
// every call when it has a TracerProvider, and remembers the reaper's last
// complete pass (see LastReapPass) either way. It is a core.Durable itself:
// give it to core.StoreConfig.Durable in place of the one it wraps.
type Durable struct {
	next   core.Durable
	tracer trace.Tracer // nil: no spans

	mu        sync.Mutex
	passNow   time.Time // the now argument of the pass in progress
	passStart time.Time
	passRows  int
	last      ReapPass
}

var _ core.Durable = (*Durable)(nil)

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
func NewDurable(d core.Durable, tp trace.TracerProvider) *Durable {
	if d == nil {
		panic("metrics: NewDurable needs a core.Durable")
	}
	w := &Durable{next: d}
	if tp != nil {
		w.tracer = tp.Tracer(scope)
	}
	return w
}

// Unwrap returns the wrapped durable tier.
func (d *Durable) Unwrap() core.Durable { return d.next }

// LastReapPass returns the reaper's last complete pass through this
// Durable: the pass ends with a batch that examined fewer rows than its
// limit, or failed. Several reapers (one per Store) sharing this Durable
// are counted as one.
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
func (d *Durable) Load(ctx context.Context, key string, now time.Time) (core.Record, bool, error) {
	ctx, span := d.start(ctx, "db Load", "Load")
	rec, found, err := d.next.Load(ctx, key, now)
	if span != nil {
		span.SetAttributes(attribute.Bool("hybridsession.found", found))
	}
	end(span, err)
	return rec, found, err
}

// Save calls the wrapped Save in a span.
func (d *Durable) Save(ctx context.Context, rec core.Record) (bool, error) {
	ctx, span := d.start(ctx, "db Save", "Save")
	applied, err := d.next.Save(ctx, rec)
	if span != nil {
		span.SetAttributes(attribute.Bool("hybridsession.applied", applied))
	}
	end(span, err)
	return applied, err
}

// Delete calls the wrapped Delete in a span.
func (d *Durable) Delete(ctx context.Context, keys ...string) error {
	ctx, span := d.start(ctx, "db Delete", "Delete")
	err := d.next.Delete(ctx, keys...)
	end(span, err)
	return err
}

// DeleteSubject calls the wrapped DeleteSubject in a span.
func (d *Durable) DeleteSubject(ctx context.Context, subject string) ([]string, error) {
	ctx, span := d.start(ctx, "db DeleteSubject", "DeleteSubject")
	keys, err := d.next.DeleteSubject(ctx, subject)
	end(span, err)
	return keys, err
}

// List calls the wrapped List in a span.
func (d *Durable) List(ctx context.Context, now time.Time, after string, limit int) ([]core.Record, error) {
	ctx, span := d.start(ctx, "db List", "List")
	recs, err := d.next.List(ctx, now, after, limit)
	end(span, err)
	return recs, err
}

// ListSubject calls the wrapped ListSubject in a span.
func (d *Durable) ListSubject(ctx context.Context, subject string, now time.Time, limit int) ([]core.Record, error) {
	ctx, span := d.start(ctx, "db ListSubject", "ListSubject")
	recs, err := d.next.ListSubject(ctx, subject, now, limit)
	end(span, err)
	return recs, err
}

// Reap calls the wrapped Reap in a span and keeps track of the reaper's
// passes: the batches of one pass share its now.
func (d *Durable) Reap(ctx context.Context, now time.Time, limit int, judge core.ReapJudge) (int, error) {
	ctx, span := d.start(ctx, "db Reap", "Reap")
	d.mu.Lock()
	if !now.Equal(d.passNow) || d.passStart.IsZero() {
		d.passNow, d.passStart, d.passRows = now, time.Now(), 0
	}
	d.mu.Unlock()
	n, err := d.next.Reap(ctx, now, limit, judge)
	if span != nil {
		span.SetAttributes(attribute.Int("hybridsession.examined", n))
	}
	end(span, err)
	d.mu.Lock()
	d.passRows += n
	if err != nil || n < limit {
		t := time.Now()
		d.last = ReapPass{End: t, Duration: t.Sub(d.passStart), Examined: d.passRows, Err: err}
		d.passStart = time.Time{}
	}
	d.mu.Unlock()
	return n, err
}
