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
	{"cache_hits_total", counter, "{read}", "memcached reads that found a live session.", func(s *snapshot) float64 { return u(s.CacheHits) }},
	{"cache_misses_total", counter, "{read}", "memcached reads that found no live session (corrupt entries included).", func(s *snapshot) float64 { return u(s.CacheMisses) }},
	{"cache_corrupt_total", counter, "{entry}", "memcached entries that could not be decoded, treated as misses.", func(s *snapshot) float64 { return u(s.CacheCorrupt) }},
	{"cache_errors_total", counter, "{operation}", "memcached operations that failed (network errors, timeouts).", func(s *snapshot) float64 { return u(s.CacheErrors) }},
	{"cache_short_circuits_total", counter, "{operation}", "memcached operations skipped because the node's circuit breaker was open.", func(s *snapshot) float64 { return u(s.CacheShortCircuits) }},
	{"cache_hit_ratio", gauge, "1", "Cache hits / (hits + misses) since the Store started; alert on rate() of the counters instead.", func(s *snapshot) float64 { return s.CacheHitRatio() }},
	{"breaker_opens_total", counter, "{transition}", "Circuit breaker openings over all memcached nodes.", func(s *snapshot) float64 { return u(s.BreakerOpens) }},
	{"breaker_closes_total", counter, "{transition}", "Circuit breaker closings over all memcached nodes.", func(s *snapshot) float64 { return u(s.BreakerCloses) }},
	{"fallbacks_total", counter, "{operation}", "Reads and writes served by the database because memcached was unavailable for the key.", func(s *snapshot) float64 { return u(s.Fallbacks) }},
	{"db_reads_total", counter, "{read}", "Durable-tier loads (memcached misses and fallbacks).", func(s *snapshot) float64 { return u(s.DBReads) }},
	{"db_read_errors_total", counter, "{read}", "Durable-tier loads that failed.", func(s *snapshot) float64 { return u(s.DBReadErrors) }},
	{"db_corrupt_total", counter, "{row}", "Database rows that could not be decoded, treated as absent.", func(s *snapshot) float64 { return u(s.DBCorrupt) }},
	{"db_writes_total", counter, "{write}", "Rows written to the durable tier, on the request path or in the background.", func(s *snapshot) float64 { return u(s.DBWrites) }},
	{"db_write_errors_total", counter, "{write}", "Durable-tier writes that failed.", func(s *snapshot) float64 { return u(s.DBWriteErrors) }},
	{"db_writes_skipped_total", counter, "{write}", "Session writes that went to memcached only, the session being synced less than SyncInterval ago.", func(s *snapshot) float64 { return u(s.DBWritesSkipped) }},
	{"sync_queued_total", counter, "{sync}", "Syncs handed to the background writer.", func(s *snapshot) float64 { return u(s.SyncQueued) }},
	{"sync_coalesced_total", counter, "{sync}", "Syncs that replaced a pending sync of the same session.", func(s *snapshot) float64 { return u(s.SyncCoalesced) }},
	{"sync_dropped_total", counter, "{sync}", "Periodic syncs given up (retried too long, room for a durable write, or Close); the session stays in memcached.", func(s *snapshot) float64 { return u(s.SyncDropped) }},
	{"seal_failures_total", counter, "{envelope}", "Envelopes from memcached or the database that failed to open (forged, tampered, or sealed with a key not in the ring), treated as misses.", func(s *snapshot) float64 { return u(s.SealFailures) }},
	{"durable_lost_total", counter, "{write}", "Durable writes acknowledged while the database failed and never saved (Close ended first, or the row had forked from the copy they were built on). Should stay 0.", func(s *snapshot) float64 { return u(s.DurableLost) }},
	{"sync_pending", gauge, "{sync}", "Syncs waiting in the background writer.", func(s *snapshot) float64 { return float64(s.SyncPending) }},
	{"touches_total", counter, "{write}", "Writes that only refreshed a session's activity.", func(s *snapshot) float64 { return u(s.Touches) }},
	{"cas_conflicts_total", counter, "{write}", "Writes that found the session changed by another request.", func(s *snapshot) float64 { return u(s.CASConflicts) }},
	{"merges_total", counter, "{write}", "Re-applications of a request's changes after a conflict.", func(s *snapshot) float64 { return u(s.Merges) }},
	{"row_conflicts_total", counter, "{write}", "Database writes refused because the row held a change the writer's memcached copy never saw (written around its node); the row replaced the copy.", func(s *snapshot) float64 { return u(s.RowConflicts) }},
	{"reaper_examined_total", counter, "{row}", "Rows the reaper looked at: expired, or within its look-ahead.", func(s *snapshot) float64 { return u(s.ReapExamined) }},
	{"reaper_extended_total", counter, "{row}", "Rows of live sessions the reaper extended ahead of their expiry, with memcached's copy when newer.", func(s *snapshot) float64 { return u(s.ReapExtended) }},
	{"reaper_archived_total", counter, "{row}", "Dead sessions handed to the archive hook.", func(s *snapshot) float64 { return u(s.ReapArchived) }},
	{"reaper_deleted_total", counter, "{row}", "Rows the reaper deleted.", func(s *snapshot) float64 { return u(s.ReapDeleted) }},
	{"reaper_skipped_total", counter, "{row}", "Rows the reaper left alone because memcached could not be asked.", func(s *snapshot) float64 { return u(s.ReapSkipped) }},
	{"reaper_errors_total", counter, "{error}", "Archive hook failures and failed reaper batches.", func(s *snapshot) float64 { return u(s.ReapErrors) }},
}

// nodeStat is one metric per memcached node, labelled node="host:port".
type nodeStat struct {
	name, unit, help string
	value            func(n *core.NodeStats) float64
}

// nodeLabel is the label (attribute) naming a memcached node.
const nodeLabel = "node"

var nodeStats = []nodeStat{
	{"memcached_breaker_open", "1", "1 while the node's circuit breaker is open (its sessions are served from the database), else 0.", func(n *core.NodeStats) float64 { return b2f(n.Open) }},
	{"memcached_consecutive_failures", "{failure}", "Failures of the node since its last success.", func(n *core.NodeStats) float64 { return float64(n.ConsecutiveFailures) }},
}

// reapStats are gauges about the reaper's last complete pass, present only
// when Config.Reaper is set.
var reapStats = []stat{
	{"reaper_last_pass_timestamp_seconds", gauge, "s", "Unix time the reaper's last complete pass ended (0 before the first).", func(s *snapshot) float64 { return unixSeconds(s.reap.End) }},
	{"reaper_last_pass_duration_seconds", gauge, "s", "Wall time of the reaper's last complete pass.", func(s *snapshot) float64 { return s.reap.Duration.Seconds() }},
	{"reaper_last_pass_rows", gauge, "{row}", "Rows the reaper's last complete pass examined.", func(s *snapshot) float64 { return float64(s.reap.Examined) }},
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
