package metrics

import (
	"strings"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
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

// stat is one metric read from a Store's Stats: one series, or one per
// value of its label. Adding a counter to core.Stats takes one line in the
// stats table below.
type stat struct {
	// name is the Prometheus name without the namespace, with its unit
	// suffix (_total for counters, _seconds). The OpenTelemetry name is
	// derived from it (otelName).
	name string
	kind kind
	// unit is the OpenTelemetry unit (UCUM, annotations in braces).
	unit string
	help string
	// label tells the series apart (a Prometheus label, an OpenTelemetry
	// attribute); "" when there is one series.
	label  string
	series []series
}

// series is one series of a stat: its label's value ("" without a label)
// and how to read it.
type series struct {
	value string
	read  func(s *snapshot) float64
}

// one returns a stat of one series.
func one(name string, k kind, unit, help string, read func(s *snapshot) float64) stat {
	return stat{name: name, kind: k, unit: unit, help: help, series: []series{{"", read}}}
}

// split returns a stat of one series per value of label.
func split(name string, k kind, unit, help, label string, ss ...series) stat {
	return stat{name: name, kind: k, unit: unit, help: help, label: label, series: ss}
}

// snapshot is what one collection reads: the Store's Stats and, when a
// wrapped durable tier is configured, the reaper's last pass.
type snapshot struct {
	core.Stats
	reap     ReapPass
	hasReaps bool
}

func u(v uint64) float64 { return float64(v) }

// Labels (attributes) of the metrics; Config.Labels may use none of them.
const (
	nodeLabel      = "node"      // a memcached node, "host:port"
	outcomeLabel   = "outcome"   // what became of a read or a row
	operationLabel = "operation" // a latency histogram's operation
)

var reservedLabels = []string{nodeLabel, outcomeLabel, operationLabel}

// stats lists every metric of the Store. Per-node metrics are in nodeStats,
// the reaper's pass in reapStats. A ratio (the hit ratio) is computed in
// queries, from rates of the counters.
var stats = []stat{
	split("cache_reads_total", counter, "{read}", "memcached reads of a session: outcome=hit found a live or destroyed session, outcome=miss none (corrupt, unreadable and expired entries included).", outcomeLabel,
		series{"hit", func(s *snapshot) float64 { return u(s.CacheHits) }},
		series{"miss", func(s *snapshot) float64 { return u(s.CacheMisses) }}),
	one("cache_errors_total", counter, "{operation}", "memcached operations that failed: network errors, timeouts, and operations refused by an open circuit breaker.", func(s *snapshot) float64 { return u(s.CacheErrors) }),
	one("corrupt_total", counter, "{envelope}", "Envelopes from memcached or the database that failed to decode or to authenticate (tampering, or a broken writer), treated as misses.", func(s *snapshot) float64 { return u(s.Corrupt) }),
	one("unreadable_total", counter, "{envelope}", "Envelopes this Store could not read and left in place: sealed with a key not in its ring, plain text where sealing is required, a newer format, or a codec it is not configured with.", func(s *snapshot) float64 { return u(s.Unreadable) }),
	one("db_reads_total", counter, "{row}", "Rows loaded from the durable tier (memcached misses and fallbacks).", func(s *snapshot) float64 { return u(s.DBReads) }),
	one("db_writes_total", counter, "{row}", "Rows written to the durable tier, on the request path or by the background writer, batched or not.", func(s *snapshot) float64 { return u(s.DBWrites) }),
	one("db_errors_total", counter, "{call}", "Calls to the durable tier that failed.", func(s *snapshot) float64 { return u(s.DBErrors) }),
	one("conflicts_total", counter, "{write}", "Writes that found the session changed by another writer since it was read; the request's changes were applied again.", func(s *snapshot) float64 { return u(s.Conflicts) }),
	one("merges_total", counter, "{write}", "memcached copies merged key by key with a row that had moved on (a change written around a memcached node, or by an app server that could not read the copy).", func(s *snapshot) float64 { return u(s.Merges) }),
	one("sync_pending", gauge, "{session}", "Sessions the background writer tracks: changes and activity not yet written to the database.", func(s *snapshot) float64 { return float64(s.SyncPending) }),
	one("sync_dropped_total", counter, "{session}", "Sessions the background writer could not track (SyncQueueSize); their changes stay in memcached until their next write or the reaper.", func(s *snapshot) float64 { return u(s.SyncDropped) }),
	split("reaper_rows_total", counter, "{row}", "Expired rows the reaper acted on: outcome=extended rewrote from a live memcached copy (activity that had not reached the row), outcome=deleted deleted (dead sessions, tombstones past their deadline).", outcomeLabel,
		series{"extended", func(s *snapshot) float64 { return u(s.ReapExtended) }},
		series{"deleted", func(s *snapshot) float64 { return u(s.ReapDeleted) }}),
	one("reaper_errors_total", counter, "{error}", "Archive hook failures and failed reaper batches.", func(s *snapshot) float64 { return u(s.ReapErrors) }),
}

// nodeStat is one metric per memcached node, labelled node="host:port".
type nodeStat struct {
	name, unit, help string
	value            func(open bool) float64 // open: the node's circuit breaker is open (core.Stats.Nodes)
}

var nodeStats = []nodeStat{
	{"memcached_breaker_open", "1", "1 while the node's circuit breaker is open (its sessions are served from the database), else 0.", b2f},
}

// reapStats are gauges about the reaper's last complete pass, present only
// when Config.Durable is set.
var reapStats = []stat{
	one("reaper_last_pass_timestamp_seconds", gauge, "s", "Unix time the reaper's last complete pass ended (0 before the first).", func(s *snapshot) float64 { return unixSeconds(s.reap.End) }),
	one("reaper_last_pass_duration_seconds", gauge, "s", "Wall time of the reaper's last complete pass.", func(s *snapshot) float64 { return s.reap.Duration.Seconds() }),
	one("reaper_last_pass_rows", gauge, "{row}", "Rows the reaper's last complete pass examined.", func(s *snapshot) float64 { return float64(s.reap.Examined) }),
}

// latency is a histogram of call durations in seconds, recorded as the
// calls end (Stats does not carry them), labelled operation=.
// OpenTelemetry has one instrument for both, db.client.operation.duration
// of the semantic conventions, with the latency's db.system.name.
type latency struct {
	name, help string
	ops        []string // the operations the core makes, whose series exist from the start
	system     attribute.KeyValue
}

var (
	// cacheLatency is fed by Config.Tracer.
	cacheLatency = latency{"cache_operation_duration_seconds",
		"Duration of memcached operations, from the request to the answer or failure (timeouts included), whether on the request path, of the background writer or of the reaper.",
		[]string{"get", "get_multi", "add", "set", "cas"}, semconv.DBSystemNameMemcached}
	// dbLatency is fed by Config.Durable. A reaper batch is left out: it
	// holds the judging of its rows (memcached reads, the archive hook).
	dbLatency = latency{"db_operation_duration_seconds",
		"Duration of durable tier calls (load, write, list; not the reaper's batches), failures included.",
		[]string{"load", "write", "list"}, semconv.DBSystemNameOtherSQL}
)

// latencyBuckets are the histograms' upper bounds in seconds: 100µs,
// doubling up to 3.3s.
var latencyBuckets = prometheus.ExponentialBuckets(100e-6, 2, 16)

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
