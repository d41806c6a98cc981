package metrics_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The wrapper is a durable tier like any other: it passes the conformance suite.
func TestDurableConformance(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	durabletest.Run(t, func(t *testing.T) durable.Tier {
		return metrics.NewDurable(durabletest.NewMemory(), tp)
	})
}

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

// TestLastReapPass drives the wrapper as the reaper does: a pass is the
// batches that share one now, and it ends with a short batch, a batch whose
// rows were all left for later, or an error.
func TestLastReapPass(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	d := metrics.NewDurable(durabletest.NewMemory(), sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	var batch []durable.Write
	for _, k := range []string{"a", "b", "c"} {
		batch = append(batch, durable.Write{Record: durable.Record{
			Key: strings.Repeat(k, 43), Payload: []byte("x"), Version: 1,
			ExpiresAt: now.Add(-time.Minute), Deadline: now.Add(time.Hour),
		}})
	}
	applied, err := d.Write(ctx, batch)
	if err != nil || len(applied) != 3 || !applied[0] || !applied[1] || !applied[2] {
		t.Fatalf("Write = %v, %v; want three inserts", applied, err)
	}
	if pass := d.LastReapPass(); !pass.End.IsZero() {
		t.Fatalf("LastReapPass before any pass = %+v", pass)
	}
	verdicts := func(a durable.Action) durable.Judge {
		return func(_ context.Context, rows []durable.Record) ([]durable.Verdict, error) {
			out := make([]durable.Verdict, len(rows))
			for i := range out {
				out[i].Action = a
			}
			return out, nil
		}
	}

	// A full batch whose rows are all left ends the pass.
	if n, err := d.Reap(ctx, now, 2, verdicts(durable.Leave)); n != 2 || err != nil {
		t.Fatalf("Reap = %d, %v; want 2 rows claimed", n, err)
	}
	if pass := d.LastReapPass(); pass.End.IsZero() || pass.Examined != 2 || pass.Err != nil {
		t.Errorf("after a batch that left every row: last pass %+v, want an ended pass of 2 rows", pass)
	}

	// Two batches of one pass (one now): a full one, then a short one.
	later := now.Add(time.Second)
	first := d.LastReapPass()
	if n, err := d.Reap(ctx, later, 2, verdicts(durable.Delete)); n != 2 || err != nil {
		t.Fatalf("Reap = %d, %v; want 2 rows claimed", n, err)
	}
	if pass := d.LastReapPass(); pass != first {
		t.Errorf("after the first, full batch of a pass: last pass %+v, want the previous one %+v", pass, first)
	}
	if n, err := d.Reap(ctx, later, 2, verdicts(durable.Delete)); n != 1 || err != nil {
		t.Fatalf("Reap = %d, %v; want the last row claimed", n, err)
	}
	if pass := d.LastReapPass(); pass.Examined != 3 || !pass.End.After(first.End) {
		t.Errorf("after the short batch: last pass %+v, want 3 rows, ended after %v", pass, first.End)
	}

	// A failed batch ends the pass with its error.
	if _, err := d.Write(ctx, batch[:1]); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	d.Reap(ctx, later.Add(time.Second), 2, func(context.Context, []durable.Record) ([]durable.Verdict, error) { return nil, boom })
	if pass := d.LastReapPass(); !errors.Is(pass.Err, boom) {
		t.Errorf("after a failed batch: last pass %+v, want its error", pass)
	}

	spans := map[string]int{}
	var sizes []int64 // of the write spans, in order; none for a single row
	for _, sp := range exp.GetSpans() {
		spans[sp.Name]++
		for _, kv := range sp.Attributes {
			if sp.Name == "write" && kv.Key == "db.operation.batch.size" {
				sizes = append(sizes, kv.Value.AsInt64())
			}
		}
	}
	if spans["write"] != 2 || spans["reap"] != 4 || !slices.Equal(sizes, []int64{3}) {
		t.Errorf("spans %v, write batch sizes %v; want two writes, of 3 rows and of 1, and four reaps", spans, sizes)
	}
	failed := 0
	for _, sp := range exp.GetSpans() {
		if sp.Status.Code == codes.Error {
			failed++
			if sp.Name != "reap" || !slices.Contains(sp.Attributes, attribute.String("error.type", "_OTHER")) || !strings.Contains(sp.Status.Description, "boom") {
				t.Errorf("failed span %q: attributes %v, status %v; want the reap of error.type _OTHER, boom", sp.Name, sp.Attributes, sp.Status)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d failed spans, want the one reap", failed)
	}
}

// oneRowTier is a durable tier whose every Reap claims one row and judges it;
// the rest of durable.Tier is not called.
type oneRowTier struct{ durable.Tier }

func (oneRowTier) Reap(ctx context.Context, _ time.Time, _ int, judge durable.Judge) (int, error) {
	if _, err := judge(ctx, make([]durable.Record, 1)); err != nil {
		return 0, err
	}
	return 1, nil
}

// TestLastReapPassOfInterleavedReapers: two reapers (two Stores) share one
// Durable, and their passes interleave. Each pass is timed and counted from
// its own first batch: neither resets the other's, and a pass ending after
// another ended has a duration, not time.Sub of a zero start.
func TestLastReapPassOfInterleavedReapers(t *testing.T) {
	ctx := context.Background()
	del := func(_ context.Context, rows []durable.Record) ([]durable.Verdict, error) {
		return make([]durable.Verdict, len(rows)), nil // durable.Delete
	}
	a, b := time.Now(), time.Now().Add(time.Millisecond)

	t.Run("concurrent batches", func(t *testing.T) {
		d := metrics.NewDurable(oneRowTier{}, nil)
		entered, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			// A short batch (1 row of 2): the whole of reaper A's pass, held in its judge.
			d.Reap(ctx, a, 2, func(ctx context.Context, rows []durable.Record) ([]durable.Verdict, error) {
				close(entered)
				<-release
				return del(ctx, rows)
			})
		}()
		<-entered
		d.Reap(ctx, b, 2, del) // reaper B's whole pass, while A's batch runs
		close(release)
		<-done
		if pass := d.LastReapPass(); pass.Duration < 0 || pass.Duration > time.Minute || pass.Examined != 1 {
			t.Errorf("last pass %+v, want reaper A's: 1 row, a duration under a minute", pass)
		}
	})

	t.Run("alternating batches", func(t *testing.T) {
		d := metrics.NewDurable(oneRowTier{}, nil)
		d.Reap(ctx, a, 1, del) // A: a full batch, the pass goes on
		d.Reap(ctx, b, 2, del) // B: a short batch, its pass ends
		if pass := d.LastReapPass(); pass.Examined != 1 {
			t.Errorf("after B's pass: last pass %+v, want 1 row", pass)
		}
		d.Reap(ctx, a, 2, del) // A: a short batch, its pass of two batches ends
		if pass := d.LastReapPass(); pass.Examined != 2 {
			t.Errorf("after A's pass: last pass %+v, want its 2 rows", pass)
		}
	})
}
