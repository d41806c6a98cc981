package metrics_test

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// fixture is a Store on a real memcached timed by a metrics.Tracer, and an
// in-memory durable tier wrapped by metrics.Durable, with a Manager on it.
// It records no spans and runs no reaper of its own.
type fixture struct {
	mc      *memcachedtest.Server
	tracer  *metrics.Tracer
	durable *metrics.Durable
	store   *core.Store
	m       *core.Manager
}

func newFixture(t *testing.T, mcfg core.MemcachedConfig) *fixture {
	t.Helper()
	f := &fixture{mc: memcachedtest.Start(t, memcachedtest.Options{}), tracer: metrics.NewTracer(nil)}
	f.durable = metrics.NewDurable(durabletest.NewMemory(), nil)
	mcfg.Servers, mcfg.Tracer = []string{f.mc.Addr}, f.tracer.StartCacheOp
	store, err := core.NewStore(core.StoreConfig{Memcached: mcfg, Durable: f.durable, Reaper: core.ReaperConfig{Interval: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	f.store = store
	if f.m, err = core.New(core.Config{Store: store}); err != nil {
		t.Fatal(err)
	}
	return f
}

// traffic creates a session and reads it back twice (two memcached hits),
// then reads a token nobody has (a miss and a database read).
func (f *fixture) traffic(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	s, err := f.m.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Put("cart", []string{"tea"})
	if err := f.m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := f.m.Load(ctx, s.Token())
		if err != nil || got.IsNew() {
			t.Fatalf("Load = %v, %v; want the stored session", got, err)
		}
	}
	if _, err := f.m.Load(ctx, core.NewToken()); err != nil {
		t.Fatal(err)
	}
	return s.Token()
}

func TestCollector(t *testing.T) {
	f := newFixture(t, core.MemcachedConfig{})
	f.traffic(t)
	reaper, err := f.store.NewReaper(core.ReaperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reaper.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}

	c, err := metrics.NewCollector(metrics.Config{Store: f.store, Tracer: f.tracer, Durable: f.durable, Labels: map[string]string{"app": "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}

	want := `
# HELP hybridsession_cache_reads_total memcached reads of a session: outcome=hit found a live or destroyed session, outcome=miss none (corrupt, unreadable and expired entries included).
# TYPE hybridsession_cache_reads_total counter
hybridsession_cache_reads_total{app="shop",outcome="hit"} 2
hybridsession_cache_reads_total{app="shop",outcome="miss"} 1
# HELP hybridsession_db_reads_total Rows loaded from the durable tier (memcached misses and fallbacks).
# TYPE hybridsession_db_reads_total counter
hybridsession_db_reads_total{app="shop"} 1
# HELP hybridsession_db_writes_total Rows written to the durable tier, on the request path or by the background writer, batched or not.
# TYPE hybridsession_db_writes_total counter
hybridsession_db_writes_total{app="shop"} 1
# HELP hybridsession_memcached_breaker_open 1 while the node's circuit breaker is open (its sessions are served from the database), else 0.
# TYPE hybridsession_memcached_breaker_open gauge
hybridsession_memcached_breaker_open{app="shop",node="` + f.mc.Addr + `"} 0
# HELP hybridsession_reaper_rows_total Expired rows the reaper acted on: outcome=extended rewrote from a live memcached copy (activity that had not reached the row), outcome=deleted deleted (dead sessions, tombstones past their deadline).
# TYPE hybridsession_reaper_rows_total counter
hybridsession_reaper_rows_total{app="shop",outcome="deleted"} 0
hybridsession_reaper_rows_total{app="shop",outcome="extended"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"hybridsession_cache_reads_total", "hybridsession_db_reads_total", "hybridsession_db_writes_total",
		"hybridsession_memcached_breaker_open", "hybridsession_reaper_rows_total"); err != nil {
		t.Error(err)
	}
	// 15 series from Stats, 3 of the reaper's last pass, 1 for the one
	// node, 5 memcached and 3 database operations' histograms.
	if n := testutil.CollectAndCount(c); n != 27 {
		t.Errorf("collector exports %d series, want 27", n)
	}
	// Removed: ratios are computed in queries; sibling counters are one
	// metric with a label.
	for _, gone := range []string{"hybridsession_cache_hit_ratio", "hybridsession_cache_hits_total", "hybridsession_cache_misses_total",
		"hybridsession_reaper_extended_total", "hybridsession_reaper_deleted_total"} {
		if n, err := testutil.GatherAndCount(reg, gone); err != nil || n != 0 {
			t.Errorf("%s: %d series, %v; want none", gone, n, err)
		}
	}
	if v := gauge(t, reg, "hybridsession_reaper_last_pass_timestamp_seconds"); v == 0 {
		t.Error("reaper_last_pass_timestamp_seconds = 0 after a pass")
	}

	// Kill the node: the next requests open its breaker and the gauge says so.
	f.mc.Kill()
	for range 5 {
		_, _ = f.m.Load(context.Background(), core.NewToken())
	}
	if v := gauge(t, reg, "hybridsession_memcached_breaker_open"); v != 1 {
		t.Errorf("breaker_open = %v after the node died, want 1", v)
	}
	if v := gauge(t, reg, "hybridsession_cache_errors_total"); v == 0 {
		t.Error("cache_errors_total = 0 after the node died")
	}
}

// gauge returns the value of the single series called name.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestConfigErrors(t *testing.T) {
	if _, err := metrics.NewCollector(metrics.Config{}); err == nil {
		t.Error("NewCollector without a Store: no error")
	}
	f := newFixture(t, core.MemcachedConfig{})
	for _, l := range []string{"node", "outcome", "operation"} {
		if _, err := metrics.NewCollector(metrics.Config{Store: f.store, Labels: map[string]string{l: "x"}}); err == nil {
			t.Errorf("NewCollector with label %q: no error", l)
		}
	}
	if _, err := metrics.NewCollector(metrics.Config{Store: f.store, Labels: map[string]string{"app": "x"}}); err != nil {
		t.Errorf(`NewCollector with label "app": %v`, err)
	}
}

func TestTwoCollectorsOneRegistry(t *testing.T) {
	f := newFixture(t, core.MemcachedConfig{})
	reg := prometheus.NewRegistry()
	for _, app := range []string{"gin", "echo"} {
		c, err := metrics.NewCollector(metrics.Config{Store: f.store, Labels: map[string]string{"server": app}})
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.Register(c); err != nil {
			t.Fatalf("register %s: %v", app, err)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "hybridsession_cache_reads_total"); err != nil || n != 4 {
		t.Errorf("cache_reads_total series = %d, %v; want 4 (hit and miss of each)", n, err)
	}
	// Without Config.Tracer and Config.Durable, no histograms.
	if n, err := testutil.GatherAndCount(reg, "hybridsession_cache_operation_duration_seconds", "hybridsession_db_operation_duration_seconds"); err != nil || n != 0 {
		t.Errorf("latency histograms: %d series, %v; want none", n, err)
	}
}

// TestLatencyHistograms: the Tracer and the Durable of a Config time every
// memcached operation and database call but the reaper's batches into
// histograms labelled operation=, with Config.Labels.
func TestLatencyHistograms(t *testing.T) {
	f := newFixture(t, core.MemcachedConfig{})
	c, err := metrics.NewCollector(metrics.Config{Store: f.store, Tracer: f.tracer, Durable: f.durable, Labels: map[string]string{"app": "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	f.traffic(t)
	reaper, err := f.store.NewReaper(core.ReaperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reaper.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}

	cache := histograms(t, reg, "hybridsession_cache_operation_duration_seconds")
	if got := slices.Sorted(maps.Keys(cache)); !slices.Equal(got, []string{"add", "cas", "get", "get_multi", "set"}) {
		t.Errorf("memcached operations %v, want every one the core makes", got)
	}
	// Two hits and a miss; the reaper's GetMulti found no row to ask about.
	if h := cache["get"]; h.GetSampleCount() != 3 || h.GetSampleSum() <= 0 {
		t.Errorf("get: %d operations in %vs, want 3 in more than 0s", h.GetSampleCount(), h.GetSampleSum())
	}
	if n := cache["add"].GetSampleCount() + cache["set"].GetSampleCount(); n == 0 {
		t.Error("the new session's copy was not timed (no add, no set)")
	}
	db := histograms(t, reg, "hybridsession_db_operation_duration_seconds")
	if got := slices.Sorted(maps.Keys(db)); !slices.Equal(got, []string{"list", "load", "write"}) {
		t.Errorf("database operations %v, want load, write and list (not the reaper's batches)", got)
	}
	if n := db["load"].GetSampleCount(); n != 1 {
		t.Errorf("load: %d calls, want the one of the token nobody has", n)
	}
	if n := db["write"].GetSampleCount(); n != 1 {
		t.Errorf("write: %d calls, want the new session's", n)
	}
	var bounds []float64
	for _, b := range db["load"].GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if len(bounds) != 16 || bounds[0] != 100e-6 || bounds[15] < 3 || bounds[15] > 3.3 {
		t.Errorf("buckets %v, want 16 from 100µs doubling", bounds)
	}
}

// histograms returns the histograms of the metric called name by their
// operation label, checking that each has the label app="shop".
func histograms(t *testing.T, reg *prometheus.Registry, name string) map[string]*dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["app"] != "shop" || m.GetHistogram() == nil {
				t.Errorf("%s: series %v, want a histogram with app=shop", name, labels)
			}
			out[labels["operation"]] = m.GetHistogram()
		}
	}
	return out
}

func TestOTel(t *testing.T) {
	f := newFixture(t, core.MemcachedConfig{})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	reg, err := metrics.RegisterOTel(metrics.Config{Store: f.store, Tracer: f.tracer, Durable: f.durable, Labels: map[string]string{"app": "shop"}}, mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	f.traffic(t)
	got := collect(t, reader)
	reads, ok := got["hybridsession.cache.reads"].(metricdata.Sum[int64])
	byOutcome := map[string]int64{}
	for _, dp := range reads.DataPoints {
		outcome, _ := dp.Attributes.Value("outcome")
		byOutcome[outcome.AsString()] = dp.Value
		if v, _ := dp.Attributes.Value("app"); v.AsString() != "shop" {
			t.Errorf("app attribute = %q", v.AsString())
		}
	}
	if !ok || !reads.IsMonotonic || len(reads.DataPoints) != 2 || byOutcome["hit"] != 2 || byOutcome["miss"] != 1 {
		t.Errorf("hybridsession.cache.reads = %+v, want monotonic sums of 2 hits and 1 miss", got["hybridsession.cache.reads"])
	}
	for _, gone := range []string{"hybridsession.cache.hit_ratio", "hybridsession.cache.hits", "hybridsession.reaper.extended"} {
		if _, ok := got[gone]; ok {
			t.Errorf("%s is still exported", gone)
		}
	}
	if rows, ok := got["hybridsession.reaper.rows"].(metricdata.Sum[int64]); !ok || len(rows.DataPoints) != 2 {
		t.Errorf("hybridsession.reaper.rows = %+v, want an extended and a deleted sum", got["hybridsession.reaper.rows"])
	}
	open, ok := got["hybridsession.memcached.breaker_open"].(metricdata.Gauge[float64])
	if !ok || len(open.DataPoints) != 1 || !open.DataPoints[0].Attributes.HasValue(attribute.Key("node")) {
		t.Errorf("hybridsession.memcached.breaker_open = %+v, want one point with a node", got["hybridsession.memcached.breaker_open"])
	}
	if _, ok := got["hybridsession.reaper.last_pass_timestamp"]; !ok {
		t.Error("no hybridsession.reaper.last_pass_timestamp")
	}

	checkOTelLatency(t, f, reader, got)

	// Unregistered: the next collection observes nothing of ours, and no
	// call is recorded.
	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	loads := otelCount(collect(t, reader), "other_sql", "load")
	if _, err := f.m.Load(context.Background(), core.NewToken()); err != nil {
		t.Fatal(err)
	}
	if n := otelCount(collect(t, reader), "other_sql", "load"); n != loads {
		t.Errorf("%d loads recorded after Unregister, want %d as before", n, loads)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "hybridsession.cache.reads" {
				if s := m.Data.(metricdata.Sum[int64]); len(s.DataPoints) > 0 {
					t.Errorf("after Unregister: %+v", s)
				}
			}
		}
	}
}

// collect returns the metrics reader collects, by name.
func collect(t *testing.T, reader sdkmetric.Reader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data
		}
	}
	return got
}

// otelCount returns how many calls db.client.operation.duration recorded
// of the database system and operation, failed or not.
func otelCount(got map[string]metricdata.Aggregation, system, op string) uint64 {
	h, _ := got["db.client.operation.duration"].(metricdata.Histogram[float64])
	var n uint64
	for _, dp := range h.DataPoints {
		if dp.Attributes.HasValue("db.system.name") {
			s, _ := dp.Attributes.Value("db.system.name")
			o, _ := dp.Attributes.Value("db.operation.name")
			if s.AsString() == system && o.AsString() == op {
				n += dp.Count
			}
		}
	}
	return n
}

// checkOTelLatency checks the db.client.operation.duration histogram after
// fixture.traffic, then that a dead node's failures carry error.type.
func checkOTelLatency(t *testing.T, f *fixture, reader sdkmetric.Reader, got map[string]metricdata.Aggregation) {
	t.Helper()
	h, ok := got["db.client.operation.duration"].(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("db.client.operation.duration = %+v, want a histogram", got["db.client.operation.duration"])
	}
	host, port, _ := net.SplitHostPort(f.mc.Addr)
	portNum, _ := strconv.Atoi(port)
	for _, dp := range h.DataPoints {
		want := []attribute.KeyValue{attribute.String("app", "shop")}
		if s, _ := dp.Attributes.Value("db.system.name"); s.AsString() == "memcached" {
			want = append(want, attribute.String("server.address", host), attribute.Int("server.port", portNum))
		}
		for _, kv := range want {
			if v, _ := dp.Attributes.Value(kv.Key); v != kv.Value {
				t.Errorf("point %v lacks %v", dp.Attributes.ToSlice(), kv)
			}
		}
		if len(dp.Bounds) != 16 || dp.Bounds[0] != 100e-6 {
			t.Errorf("bounds %v, want 16 from 100µs", dp.Bounds)
		}
	}
	if n := otelCount(got, "memcached", "get"); n != 3 {
		t.Errorf("%d memcached gets recorded, want 3", n)
	}
	if n := otelCount(got, "other_sql", "load"); n != 1 {
		t.Errorf("%d database loads recorded, want 1", n)
	}

	f.mc.Kill()
	_, _ = f.m.Load(context.Background(), core.NewToken())
	h, _ = collect(t, reader)["db.client.operation.duration"].(metricdata.Histogram[float64])
	failed := false
	for _, dp := range h.DataPoints {
		o, _ := dp.Attributes.Value("db.operation.name")
		e, _ := dp.Attributes.Value("error.type")
		failed = failed || o.AsString() == "get" && e.AsString() != ""
	}
	if !failed {
		t.Errorf("no get with an error.type after the node died: %+v", h.DataPoints)
	}
}

// TestCorruptAndUnreadable: bytes that are no envelope count as corrupt; a
// session sealed with a key the Store does not hold counts as unreadable.
func TestCorruptAndUnreadable(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	open := func(key []byte) *core.Manager {
		t.Helper()
		store, err := core.NewStore(core.StoreConfig{
			Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
			Durable:   durabletest.NewMemory(),
			Seal:      core.SealConfig{Keys: [][]byte{key}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close(context.Background()) })
		m, err := core.New(core.Config{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ours, theirs := open(core.NewSealKey()), open(core.NewSealKey())
	c, err := metrics.NewCollector(metrics.Config{Store: ours.Store()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	ctx := context.Background()

	garbage := core.NewToken()
	if err := memcache.New(mc.Addr).Set(&memcache.Item{Key: "hs:" + core.StorageKey(garbage), Value: []byte("not an envelope")}); err != nil {
		t.Fatal(err)
	}
	if s, err := ours.Load(ctx, garbage); err != nil || !s.IsNew() {
		t.Fatalf("Load of a corrupt entry = %v, %v; want a new session", s, err)
	}
	s, _ := theirs.Load(ctx, "")
	s.Put("user", "ada")
	if err := theirs.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, err := ours.Load(ctx, s.Token()); err != nil || !got.IsNew() {
		t.Fatalf("Load of a session sealed with another key = %v, %v; want a new session", got, err)
	}
	if v := gauge(t, reg, "hybridsession_corrupt_total"); v != 1 {
		t.Errorf("corrupt_total = %v, want 1", v)
	}
	if v := gauge(t, reg, "hybridsession_unreadable_total"); v != 1 {
		t.Errorf("unreadable_total = %v, want 1", v)
	}
}
