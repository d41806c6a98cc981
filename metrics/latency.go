package metrics

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// call is one timed memcached operation or durable-tier call.
type call struct {
	op        string        // the operation, as in db.operation.name
	addr      string        // the memcached node's address; "" for the durable tier
	took      time.Duration // from the call's start to its end
	errorType string        // error.type of a failure; "" when it succeeded
}

// recorder receives the calls of a Tracer or a Durable: a latency
// histogram of a Collector or of RegisterOTel.
type recorder interface {
	record(ctx context.Context, c call)
}

// recorders are the recorders attached to a Tracer or a Durable. Calls read
// them without a lock; attach and detach replace the slice.
type recorders struct {
	mu   sync.Mutex // serializes attach and detach
	list atomic.Pointer[[]recorder]
}

// load returns the recorders attached now; nil when none.
func (rs *recorders) load() []recorder {
	if p := rs.list.Load(); p != nil {
		return *p
	}
	return nil
}

func (rs *recorders) attach(r recorder) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	l := append(slices.Clip(rs.load()), r)
	rs.list.Store(&l)
}

func (rs *recorders) detach(r recorder) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	l := slices.DeleteFunc(slices.Clone(rs.load()), func(x recorder) bool { return x == r })
	rs.list.Store(&l)
}

// promLatency is a Prometheus histogram of a Collector, labelled
// operation=.
type promLatency struct {
	vec  *prometheus.HistogramVec
	byOp map[string]prometheus.Observer // the series of latency.ops, made in advance; read-only
}

func newPromLatency(l latency, labels map[string]string) *promLatency {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: l.name, Help: l.help, ConstLabels: labels, Buckets: latencyBuckets,
	}, []string{operationLabel})
	p := &promLatency{vec: vec, byOp: map[string]prometheus.Observer{}}
	for _, op := range l.ops {
		p.byOp[op] = vec.WithLabelValues(op)
	}
	return p
}

func (p *promLatency) record(_ context.Context, c call) {
	o, ok := p.byOp[c.op]
	if !ok {
		o = p.vec.WithLabelValues(c.op)
	}
	o.Observe(c.took.Seconds())
}

// otelLatency records calls in OpenTelemetry's db.client.operation.duration
// with the attributes of the semantic conventions and Config.Labels.
type otelLatency struct {
	hist metric.Float64Histogram
	base []attribute.KeyValue // Config.Labels and db.system.name
}

func (o *otelLatency) record(ctx context.Context, c call) {
	attrs := append(slices.Clip(o.base), semconv.DBOperationName(c.op))
	if c.addr != "" {
		attrs = append(attrs, serverAttributes(c.addr)...)
	}
	if c.errorType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(c.errorType))
	}
	o.hist.Record(ctx, c.took.Seconds(), metric.WithAttributes(attrs...))
}
