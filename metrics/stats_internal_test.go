package metrics

import (
	"reflect"
	"testing"
)

// TestEveryStatsCounterExported gives every number in core.Stats a distinct
// value and checks that the stats table exports each of them exactly once:
// a counter added to core.Stats without a line in the table, or a line
// reading the wrong field, fails here.
func TestEveryStatsCounterExported(t *testing.T) {
	var s snapshot
	v := reflect.ValueOf(&s.Stats).Elem()
	fields := map[float64]string{}
	for i := range v.NumField() {
		f := v.Field(i)
		want := float64(1000 + i)
		switch {
		case f.CanUint():
			f.SetUint(uint64(want))
		case f.CanInt():
			f.SetInt(int64(want))
		default:
			continue // Nodes: nodeStats
		}
		fields[want] = v.Type().Field(i).Name
	}
	seen := map[float64]string{}
	for _, st := range stats {
		got := st.value(&s)
		if name, ok := fields[got]; ok {
			if prev, dup := seen[got]; dup {
				t.Errorf("%s and %s both export Stats.%s", prev, st.name, name)
			}
			seen[got] = st.name
		}
	}
	for val, name := range fields {
		if _, ok := seen[val]; !ok {
			t.Errorf("Stats.%s is not exported by any metric", name)
		}
	}
}

func TestOTelNames(t *testing.T) {
	for in, want := range map[string]string{
		"cache_hits_total":                   "hybridsession.cache.hits",
		"sync_pending":                       "hybridsession.sync.pending",
		"reaper_last_pass_duration_seconds":  "hybridsession.reaper.last_pass_duration",
		"memcached_breaker_open":             "hybridsession.memcached.breaker_open",
		"reaper_last_pass_timestamp_seconds": "hybridsession.reaper.last_pass_timestamp",
	} {
		if got := otelName(in); got != want {
			t.Errorf("otelName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHitRatio(t *testing.T) {
	for _, tc := range []struct {
		hits, misses uint64
		want         float64
	}{{0, 0, 0}, {3, 1, 0.75}, {0, 5, 0}, {2, 0, 1}} {
		if got := hitRatio(tc.hits, tc.misses); got != tc.want {
			t.Errorf("hitRatio(%d, %d) = %v, want %v", tc.hits, tc.misses, got, tc.want)
		}
	}
}
