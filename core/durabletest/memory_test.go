package durabletest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// TestMemory runs the suite on Memory, which also checks that the suite
// accepts a correct implementation. Memory holds no lock while the judge
// runs, so the racing-Write tests take the path where the Write lands
// first and the verdict gives way.
func TestMemory(t *testing.T) {
	durabletest.Run(t, func(t *testing.T) durable.Tier { return durabletest.NewMemory() })
}

func ExampleMemory() {
	ctx := context.Background()
	d := durabletest.NewMemory()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	rec := durable.Record{
		Key:       durabletest.Key("a session token"),
		Payload:   []byte("sealed envelope"),
		Version:   1,
		ExpiresAt: now.Add(30 * time.Minute),
		Deadline:  now.Add(24 * time.Hour),
	}
	applied, err := d.Write(ctx, []durable.Write{{Record: rec}}) // Base 0: insert
	fmt.Println("inserted:", applied, err)

	// Two writers built on version 1: the first applies, the second finds
	// version 2 stored and is refused.
	next := rec
	next.Version = 2
	applied, err = d.Write(ctx, []durable.Write{{Record: next, Base: 1}})
	fmt.Println("first write on version 1:", applied, err)
	applied, err = d.Write(ctx, []durable.Write{{Record: next, Base: 1}})
	fmt.Println("second write on version 1:", applied, err)

	claimed, err := d.Reap(ctx, now.Add(time.Hour), 100, func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		return make([]durable.Verdict, len(batch)), nil // all durable.Delete
	})
	fmt.Println("reaped:", claimed, err)
	_, found, err := d.Load(ctx, rec.Key)
	fmt.Println("found:", found, err)
	// Output:
	// inserted: [true] <nil>
	// first write on version 1: [true] <nil>
	// second write on version 1: [false] <nil>
	// reaped: 1 <nil>
	// found: false <nil>
}
