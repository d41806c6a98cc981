package metrics_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A Collector per Store, registered with Prometheus, with the latency
// histograms of its memcached operations (Config.Tracer) and database calls
// (Config.Durable). A real application has memcached servers and a
// gormstore durable tier; this one keeps sessions in memory so that it runs
// anywhere.
func ExampleNewCollector() {
	tracer := metrics.NewTracer(nil)                            // nil: no spans, durations only
	durable := metrics.NewDurable(durabletest.NewMemory(), nil) // nil: no spans
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Tracer: tracer.StartCacheOp}, // with Servers in an application
		Durable:   durable,
	})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())

	c, err := metrics.NewCollector(metrics.Config{Store: store, Tracer: tracer, Durable: durable, Labels: map[string]string{"app": "shop"}})
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c) // in an application: prometheus.MustRegister(c) and promhttp.Handler()

	m, _ := core.New(core.Config{Store: store})
	s, _ := m.Load(context.Background(), "")
	s.Put("user", "ada")
	_ = m.Save(context.Background(), s) // a new session goes to the database at once

	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP hybridsession_db_writes_total Rows written to the durable tier, on the request path or by the background writer, batched or not.
# TYPE hybridsession_db_writes_total counter
hybridsession_db_writes_total{app="shop"} 1
`), "hybridsession_db_writes_total")
	fmt.Println(err)

	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "hybridsession_db_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					fmt.Printf("%s: %d timed\n", l.GetValue(), m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	// Output:
	// <nil>
	// list: 0 timed
	// load: 0 timed
	// write: 1 timed
}
