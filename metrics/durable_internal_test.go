package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
)

// fullBatchTier claims limit rows at every Reap: a pass through it never ends.
type fullBatchTier struct{ durable.Tier }

func (fullBatchTier) Reap(_ context.Context, _ time.Time, limit int, _ durable.Judge) (int, error) {
	return limit, nil
}

// TestAbandonedPassesForgotten: passes whose reaper stopped between two
// batches are forgotten, oldest first, past maxPasses.
func TestAbandonedPassesForgotten(t *testing.T) {
	d := NewDurable(fullBatchTier{}, nil)
	start := time.Now()
	for i := range maxPasses + 10 {
		d.Reap(context.Background(), start.Add(time.Duration(i)), 1, nil)
	}
	if len(d.passes) != maxPasses {
		t.Errorf("%d passes in progress kept, want %d", len(d.passes), maxPasses)
	}
	if _, ok := d.passes[start.UnixNano()]; ok {
		t.Error("the oldest pass is still kept")
	}
	if _, ok := d.passes[start.Add(maxPasses+9).UnixNano()]; !ok {
		t.Error("the newest pass is not kept")
	}
}
