package metrics

import (
	"strings"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// Namespace is the prefix of every metric name: hybridsession_ in
// Prometheus, hybridsession. in OpenTelemetry.
const Namespace = "hybridsession"

// kind tells a metric's type.
type kind uint8

const (
	counter kind = iota // monotonic since the Store was created
	gauge               // a level that goes up and down
)

// stat is one metric read from a Store's Stats. Adding a counter to
// core.Stats takes one line in the stats table below.
type stat struct {
	// name is the Prometheus name without the namespace, with its unit
	// suffix (_total for counters, _seconds, _ratio). The OpenTelemetry
	// name is derived from it (otelName).
	name string
	kind kind
	// unit is the OpenTelemetry unit (UCUM, annotations in braces).
	unit  string
	help  string
	value func(s *snapshot) float64
}

// snapshot is what one collection reads: the Store's Stats and, when a
// wrapped durable tier is configured, the reaper's last pass.
type snapshot struct {
	core.Stats
	reap     ReapPass
	hasReaps bool
}

func u(v uint64) float64 { return float64(v) }

// stats lists every metric of the Store. Per-node metrics are in nodeStats,
// the reaper's pass in reapStats.
var stats = []stat{
	{"cache_hits_total", counter, "{read}", "memcached reads that found a live or destroyed session.", func(s *snapshot) float64 { return u(s.CacheHits) }},
	{"cache_misses_total", counter, "{read}", "memcached reads that found no live or destroyed session (corrupt, unreadable and expired entries included).", func(s *snapshot) float64 { return u(s.CacheMisses) }},
	{"cache_errors_total", counter, "{operation}", "memcached operations that failed: network errors, timeouts, and operations refused by an open circuit breaker.", func(s *snapshot) float64 { return u(s.CacheErrors) }},
	{"cache_hit_ratio", gauge, "1", "Cache hits / (hits + misses) since the Store started; alert on rate() of the counters instead.", func(s *snapshot) float64 { return hitRatio(s.CacheHits, s.CacheMisses) }},
	{"corrupt_total", counter, "{envelope}", "Envelopes from memcached or the database that failed to decode or to authenticate (tampering, or a broken writer), treated as misses.", func(s *snapshot) float64 { return u(s.Corrupt) }},
	{"unreadable_total", counter, "{envelope}", "Envelopes this Store could not read and left in place: sealed with a key not in its ring, plain text where sealing is required, a newer format, or a codec it is not configured with.", func(s *snapshot) float64 { return u(s.Unreadable) }},
	{"db_reads_total", counter, "{row}", "Rows loaded from the durable tier (memcached misses and fallbacks).", func(s *snapshot) float64 { return u(s.DBReads) }},
	{"db_writes_total", counter, "{row}", "Rows written to the durable tier, on the request path or by the background writer, batched or not.", func(s *snapshot) float64 { return u(s.DBWrites) }},
	{"db_errors_total", counter, "{call}", "Calls to the durable tier that failed.", func(s *snapshot) float64 { return u(s.DBErrors) }},
	{"conflicts_total", counter, "{write}", "Writes that found the session changed by another writer since it was read; the request's changes were applied again.", func(s *snapshot) float64 { return u(s.Conflicts) }},
	{"merges_total", counter, "{write}", "memcached copies merged key by key with a row that had moved on (a change written around a memcached node, or by an app server that could not read the copy).", func(s *snapshot) float64 { return u(s.Merges) }},
	{"sync_pending", gauge, "{session}", "Sessions the background writer tracks: changes and activity not yet written to the database.", func(s *snapshot) float64 { return float64(s.SyncPending) }},
	{"sync_dropped_total", counter, "{session}", "Sessions the background writer could not track (SyncQueueSize); their changes stay in memcached until their next write or the reaper.", func(s *snapshot) float64 { return u(s.SyncDropped) }},
	{"reaper_extended_total", counter, "{row}", "Expired rows the reaper rewrote from a live memcached copy (activity that had not reached the row).", func(s *snapshot) float64 { return u(s.ReapExtended) }},
	{"reaper_deleted_total", counter, "{row}", "Rows the reaper deleted: dead sessions and tombstones past their deadline.", func(s *snapshot) float64 { return u(s.ReapDeleted) }},
	{"reaper_errors_total", counter, "{error}", "Archive hook failures and failed reaper batches.", func(s *snapshot) float64 { return u(s.ReapErrors) }},
}

// nodeStat is one metric per memcached node, labelled node="host:port".
type nodeStat struct {
	name, unit, help string
	value            func(open bool) float64 // open: the node's circuit breaker is open (core.Stats.Nodes)
}

// nodeLabel is the label (attribute) naming a memcached node.
const nodeLabel = "node"

var nodeStats = []nodeStat{
	{"memcached_breaker_open", "1", "1 while the node's circuit breaker is open (its sessions are served from the database), else 0.", b2f},
}

// reapStats are gauges about the reaper's last complete pass, present only
// when Config.Reaper is set.
var reapStats = []stat{
	{"reaper_last_pass_timestamp_seconds", gauge, "s", "Unix time the reaper's last complete pass ended (0 before the first).", func(s *snapshot) float64 { return unixSeconds(s.reap.End) }},
	{"reaper_last_pass_duration_seconds", gauge, "s", "Wall time of the reaper's last complete pass.", func(s *snapshot) float64 { return s.reap.Duration.Seconds() }},
	{"reaper_last_pass_rows", gauge, "{row}", "Rows the reaper's last complete pass examined.", func(s *snapshot) float64 { return float64(s.reap.Examined) }},
}

// hitRatio is hits / (hits + misses), 0 before the first read.
func hitRatio(hits, misses uint64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+misses)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// otelName turns a Prometheus name into the OpenTelemetry one:
// cache_hits_total becomes hybridsession.cache.hits, sync_pending
// hybridsession.sync.pending. OpenTelemetry's Prometheus exporter turns
// them back into names close to the collector's.
func otelName(name string) string {
	name = strings.TrimSuffix(name, "_total")
	name = strings.TrimSuffix(name, "_seconds")
	if i := strings.IndexByte(name, '_'); i > 0 {
		name = name[:i] + "." + name[i+1:]
	}
	return Namespace + "." + name
}
