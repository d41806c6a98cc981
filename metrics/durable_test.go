package metrics_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The wrapper is a durable tier like any other: it passes the conformance suite.
func TestDurableConformance(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	durabletest.Run(t, func(t *testing.T) durable.Tier {
		return metrics.NewDurable(durabletest.NewMemory(), tp)
	})
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
