// Package metrics exports a hybridsession Store's statistics to Prometheus
// and OpenTelemetry, and traces the Store's memcached and database calls
// with OpenTelemetry spans. It is its own module, so the core depends on
// neither.
//
// Prometheus:
//
//	c, err := metrics.NewCollector(metrics.Config{Store: store})
//	if err != nil { ... }
//	prometheus.MustRegister(c)
//	http.Handle("/metrics", promhttp.Handler())
//
// OpenTelemetry metrics (observable instruments that read Store.Stats on
// each collection):
//
//	reg, err := metrics.RegisterOTel(metrics.Config{Store: store}, otel.Meter("hybridsession"))
//	defer reg.Unregister()
//
// Tracing, off unless configured: NewTracer(tp).StartCacheOp goes into
// core.MemcachedConfig.Tracer, NewDurable wraps the durable tier. Wrap the
// durable tier also to get the reaper's last pass (Config.Reaper), which
// Stats does not carry.
//
// Every metric is listed once, in the table in stats.go; the Prometheus
// collector and the OpenTelemetry instruments are both built from it.
package metrics
