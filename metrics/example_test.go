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

// A Collector per Store, registered with Prometheus. A real application
// has memcached servers and a gormstore durable tier; this one keeps
// sessions in memory so that it runs anywhere.
func ExampleNewCollector() {
	durable := metrics.NewDurable(durabletest.NewMemory(), nil) // nil: no tracing
	store, err := core.NewStore(core.StoreConfig{Durable: durable})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())

	c, err := metrics.NewCollector(metrics.Config{Store: store, Reaper: durable, Labels: map[string]string{"app": "shop"}})
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
	// Output:
	// <nil>
}
