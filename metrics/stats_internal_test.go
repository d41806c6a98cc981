package metrics

import (
	"reflect"
	"slices"
	"strings"
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
		for _, se := range st.series {
			got, id := se.read(&s), st.name+"{"+se.value+"}"
			if name, ok := fields[got]; ok {
				if prev, dup := seen[got]; dup {
					t.Errorf("%s and %s both export Stats.%s", prev, id, name)
				}
				seen[got] = id
			}
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
		"cache_reads_total":                  "hybridsession.cache.reads",
		"reaper_rows_total":                  "hybridsession.reaper.rows",
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

// TestStatsTable: every name has its type's suffix, every labelled stat has
// distinct values, and no unlabelled stat has more than one series.
func TestStatsTable(t *testing.T) {
	for _, st := range append(slices.Clip(stats), reapStats...) {
		if total := strings.HasSuffix(st.name, "_total"); total != (st.kind == counter) {
			t.Errorf("%s: a counter's name, and only a counter's, ends in _total", st.name)
		}
		if st.label == "" && len(st.series) != 1 {
			t.Errorf("%s: %d series without a label", st.name, len(st.series))
		}
		values := map[string]bool{}
		for _, se := range st.series {
			if st.label != "" && (se.value == "" || values[se.value]) {
				t.Errorf("%s: %s=%q empty or repeated", st.name, st.label, se.value)
			}
			values[se.value] = true
		}
	}
}
