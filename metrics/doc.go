// Package metrics exports a hybridsession Store's statistics to Prometheus
// and OpenTelemetry, times the Store's memcached operations and database
// calls in latency histograms, and traces them with OpenTelemetry spans
// that follow the semantic conventions for database clients. It is its
// own module, so the core depends on neither.
//
// Prometheus:
//
//	tracer := metrics.NewTracer(nil)              // nil: no spans
//	durable := metrics.NewDurable(gormStore, nil) // nil: no spans
//	store, err := core.NewStore(core.StoreConfig{
//		Memcached: core.MemcachedConfig{Servers: servers, Tracer: tracer.StartCacheOp},
//		Durable:   durable,
//	})
//	if err != nil { ... }
//	c, err := metrics.NewCollector(metrics.Config{Store: store, Tracer: tracer, Durable: durable})
//	if err != nil { ... }
//	prometheus.MustRegister(c)
//	http.Handle("/metrics", promhttp.Handler())
//
// OpenTelemetry metrics (observable instruments that read Store.Stats on
// each collection, and the histogram db.client.operation.duration):
//
//	reg, err := metrics.RegisterOTel(metrics.Config{Store: store, Tracer: tracer, Durable: durable}, otel.Meter("hybridsession"))
//	defer reg.Unregister()
//
// Config.Tracer and Config.Durable are optional: without them there are no
// latency histograms, and without Config.Durable no reaper_last_pass
// metrics (Stats carries neither). Tracing is off unless a TracerProvider
// is given: NewTracer(tp) and NewDurable(d, tp).
//
// Every metric is listed once, in stats.go; the Prometheus collector and
// the OpenTelemetry instruments are both built from it. No ratio is
// exported: compute the hit ratio in the query, from rates of
// cache_reads_total by outcome.
package metrics
