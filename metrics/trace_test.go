package metrics_test

import (
	"context"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The wrapper is a durable tier like any other: it passes the conformance suite.
func TestDurableConformance(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	durabletest.Run(t, func(t *testing.T) core.Durable {
		return metrics.NewDurable(durabletest.NewMemory(), tp)
	})
}

func TestTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, Tracer: metrics.NewTracer(tp)},
		Durable:   metrics.NewDurable(durabletest.NewMemory(), tp),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// A new session: memcached add and a database Save. A read of a token
	// nobody has: a memcached get (a miss, not an error) and a database Load.
	s, _ := m.Load(ctx, "")
	s.Put("k", "v")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(ctx, core.NewToken()); err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, sp := range exp.GetSpans() {
		names[sp.Name]++
		if sp.Name == "memcached get" {
			if sp.Status.Code == codes.Error {
				t.Errorf("a miss set the span status to %v", sp.Status)
			}
			if !hasAttr(sp.Attributes, "server.address", mc.Addr) {
				t.Errorf("memcached get attributes %v lack server.address=%s", sp.Attributes, mc.Addr)
			}
		}
	}
	for _, want := range []string{"memcached add", "memcached get", "db Save", "db Load"} {
		if names[want] == 0 {
			t.Errorf("no %q span; got %v", want, names)
		}
	}

	// A dead node: the failure is an error span.
	exp.Reset()
	mc.Kill()
	_, _ = m.Load(ctx, core.NewToken())
	failed := false
	for _, sp := range exp.GetSpans() {
		failed = failed || (sp.Name == "memcached get" && sp.Status.Code == codes.Error)
	}
	if !failed {
		t.Errorf("no failed memcached get span after the node died: %v", exp.GetSpans())
	}
}

func hasAttr(kvs []attribute.KeyValue, k, v string) bool {
	for _, kv := range kvs {
		if string(kv.Key) == k && kv.Value.AsString() == v {
			return true
		}
	}
	return false
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
				cfg.Memcached.Tracer = metrics.NewTracer(bc.tp)
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
// operation, without the round trip: unsampled and recorded.
func BenchmarkStartCacheOp(b *testing.B) {
	for _, bc := range []struct {
		name string
		tp   *sdktrace.TracerProvider
	}{
		{"unsampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))},
		{"recorded", sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(discard{})))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := metrics.NewTracer(bc.tp)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				tr.StartCacheOp(ctx, "get", "127.0.0.1:11211")(nil)
			}
		})
	}
}
