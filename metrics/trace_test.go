package metrics_test

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, Tracer: metrics.NewTracer(tp).StartCacheOp},
		Durable:   metrics.NewDurable(durabletest.NewMemory(), tp),
		Reaper:    core.ReaperConfig{Interval: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(mc.Addr)
	portNum, _ := strconv.Atoi(port)

	// The request's span: every span of the Store's calls is its child.
	ctx, request := tp.Tracer("test").Start(context.Background(), "request")
	// A new session: a database write, then a memcached set. A read of a
	// token nobody has: a memcached get (a miss, not an error) and a
	// database load.
	s, _ := m.Load(ctx, "")
	s.Put("k", "v")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(ctx, core.NewToken()); err != nil {
		t.Fatal(err)
	}
	request.End()

	spans := map[string]tracetest.SpanStub{}
	for _, sp := range exp.GetSpans() {
		if sp.Name == "request" {
			continue
		}
		spans[sp.Name] = sp
		if sp.Parent.SpanID() != request.SpanContext().SpanID() {
			t.Errorf("span %q has parent %v, want the request's span", sp.Name, sp.Parent.SpanID())
		}
		if sp.SpanKind != trace.SpanKindClient {
			t.Errorf("span %q is of kind %v, want client", sp.Name, sp.SpanKind)
		}
		if sp.Status.Code == codes.Error {
			t.Errorf("span %q failed: %v", sp.Name, sp.Status)
		}
	}
	for _, want := range []string{"set", "get", "write", "load"} {
		if _, ok := spans[want]; !ok {
			t.Errorf("no %q span; got %v", want, slices.Collect(maps.Keys(spans)))
		}
	}
	get := spans["get"].Attributes
	for _, kv := range []attribute.KeyValue{
		attribute.String("db.system.name", "memcached"), attribute.String("db.operation.name", "get"),
		attribute.String("server.address", host), attribute.Int("server.port", portNum),
		attribute.String("db.response.status_code", "NOT_FOUND"),
	} {
		if !slices.Contains(get, kv) {
			t.Errorf("the get span's attributes %v lack %v", get, kv)
		}
	}
	load := spans["load"].Attributes
	for _, kv := range []attribute.KeyValue{
		attribute.String("db.system.name", "other_sql"), attribute.String("db.operation.name", "load"),
		attribute.Bool("hybridsession.found", false),
	} {
		if !slices.Contains(load, kv) {
			t.Errorf("the load span's attributes %v lack %v", load, kv)
		}
	}
	for _, sp := range spans {
		for _, kv := range sp.Attributes {
			if kv.Key == "memcached.result" || kv.Key == "error.type" {
				t.Errorf("span %q has %v", sp.Name, kv)
			}
		}
	}

	// A dead node: the failure is an error span with an error.type.
	exp.Reset()
	mc.Kill()
	_, _ = m.Load(context.Background(), core.NewToken())
	failed := false
	for _, sp := range exp.GetSpans() {
		if sp.Name == "get" && sp.Status.Code == codes.Error {
			failed = true
			if !slices.ContainsFunc(sp.Attributes, func(kv attribute.KeyValue) bool { return kv.Key == "error.type" && kv.Value.AsString() != "" }) {
				t.Errorf("the failed get span's attributes %v lack error.type", sp.Attributes)
			}
		}
	}
	if !failed {
		t.Errorf("no failed get span after the node died: %v", exp.GetSpans())
	}
}

// BenchmarkLoadHit is a cache-hit Load with tracing off (nil Tracer, the
// plain durable tier), with the tracer of a provider that samples nothing,
// and with every span recorded by the SDK. Compare ns/op within one run.
func BenchmarkLoadHit(b *testing.B) {
	mc := memcachedtest.Start(b, memcachedtest.Options{})
	for _, bc := range []struct {
		name string
		tp   *sdktrace.TracerProvider
	}{
		{"tracing=off", nil},
		{"tracing=unsampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))},
		{"tracing=on", sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(discard{})))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, KeyPrefix: "bench:" + bc.name}}
			if bc.tp != nil {
				cfg.Memcached.Tracer = metrics.NewTracer(bc.tp).StartCacheOp
				cfg.Durable = metrics.NewDurable(durabletest.NewMemory(), bc.tp)
			} else {
				cfg.Durable = durabletest.NewMemory()
			}
			store, err := core.NewStore(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close(context.Background())
			m, _ := core.New(core.Config{Store: store})
			ctx := context.Background()
			s, _ := m.Load(ctx, "")
			s.Put("user", "ada")
			if err := m.Save(ctx, s); err != nil {
				b.Fatal(err)
			}
			tok := s.Token()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				got, err := m.Load(ctx, tok)
				if err != nil || got.IsNew() {
					b.Fatal(err)
				}
			}
		})
	}
}

// discard is a span exporter that drops everything.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkStartCacheOp is the CPU a Tracer adds to one memcached
// operation, without the round trip: no span and no histogram, unsampled,
// timed for a Collector's histogram alone, and recorded.
func BenchmarkStartCacheOp(b *testing.B) {
	for _, bc := range []struct {
		name  string
		tp    trace.TracerProvider
		timed bool
	}{
		{"off", nil, false},
		{"unsampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())), false},
		{"histogram", nil, true},
		{"recorded", sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(discard{}))), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := metrics.NewTracer(bc.tp)
			if bc.timed {
				store, err := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory(), Reaper: core.ReaperConfig{Interval: -1},
					Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				defer store.Close(context.Background())
				if _, err := metrics.NewCollector(metrics.Config{Store: store, Tracer: tr}); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				tr.StartCacheOp(ctx, "get", "127.0.0.1:11211")(nil)
			}
		})
	}
}
