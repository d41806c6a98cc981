package metrics

import (
	"context"
	"errors"
	"maps"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
)

// RegisterOTel creates an OpenTelemetry observable instrument for every
// metric of the Collector — counters as Int64ObservableCounter, levels as
// Float64ObservableGauge — on meter, with one callback that reads the
// Store's Stats once per collection. Names are dotted
// (hybridsession.cache.reads with an "outcome" attribute,
// hybridsession.memcached.breaker_open with a "node" attribute).
//
// With Config.Tracer or Config.Durable, the calls they time are recorded
// as they end in the semantic conventions' histogram
// db.client.operation.duration (seconds), with db.system.name (memcached,
// or other_sql for the durable tier), db.operation.name, server.address
// and server.port of a memcached node, and error.type of a failure.
//
// Unregister the returned Registration to stop observing and recording.
// It returns an error when cfg is invalid or meter refuses an instrument.
func RegisterOTel(cfg Config, meter metric.Meter) (metric.Registration, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, err
	}
	var base []attribute.KeyValue
	for _, k := range slices.Sorted(maps.Keys(cfg.Labels)) {
		base = append(base, attribute.String(k, cfg.Labels[k]))
	}
	r := &registration{timed: cfg.timed()}
	if len(r.timed) > 0 {
		hist, err := meter.Float64Histogram("db.client.operation.duration", metric.WithUnit("s"),
			metric.WithDescription("Duration of database client operations."),
			metric.WithExplicitBucketBoundaries(latencyBuckets...))
		if err != nil {
			return nil, err
		}
		for _, t := range r.timed {
			r.recs = append(r.recs, &otelLatency{hist: hist, base: append(slices.Clip(base), t.l.system)})
		}
	}
	if r.stats, err = observeStats(cfg, meter, base); err != nil {
		return nil, err
	}
	for i, t := range r.timed {
		t.calls.attach(r.recs[i])
	}
	return r, nil
}

// registration is what RegisterOTel registered: the callback observing
// the Stats, and the histogram's recorders attached to Config.Tracer and
// Config.Durable.
type registration struct {
	embedded.Registration
	stats metric.Registration
	timed []timedCalls
	recs  []*otelLatency // recs[i] is attached to timed[i]
}

// Unregister detaches the recorders and unregisters the callback.
func (r *registration) Unregister() error {
	for i, t := range r.timed {
		t.calls.detach(r.recs[i])
	}
	return r.stats.Unregister()
}

// observeStats registers a callback observing cfg's stats on meter, each
// series with the attributes base and its label's.
func observeStats(cfg Config, meter metric.Meter, base []attribute.KeyValue) (metric.Registration, error) {
	common := metric.WithAttributes(base...)
	table := cfg.table()
	var (
		errs  []error
		insts []metric.Observable
		obs   = make([]func(metric.Observer, *snapshot), 0, len(table))
		nodes []metric.Float64ObservableGauge
	)
	for _, st := range table {
		name, unit, help := otelName(st.name), metric.WithUnit(st.unit), metric.WithDescription(st.help)
		opts := make([]metric.ObserveOption, len(st.series)) // the attributes of each series
		for i, se := range st.series {
			opts[i] = common
			if st.label != "" {
				opts[i] = metric.WithAttributes(append(slices.Clip(base), attribute.String(st.label, se.value))...)
			}
		}
		if st.kind == counter {
			in, err := meter.Int64ObservableCounter(name, unit, help)
			errs, insts = append(errs, err), append(insts, in)
			obs = append(obs, func(o metric.Observer, s *snapshot) {
				for i, se := range st.series {
					o.ObserveInt64(in, int64(se.read(s)), opts[i])
				}
			})
			continue
		}
		in, err := meter.Float64ObservableGauge(name, unit, help)
		errs, insts = append(errs, err), append(insts, in)
		obs = append(obs, func(o metric.Observer, s *snapshot) {
			for i, se := range st.series {
				o.ObserveFloat64(in, se.read(s), opts[i])
			}
		})
	}
	for _, st := range nodeStats {
		in, err := meter.Float64ObservableGauge(otelName(st.name), metric.WithUnit(st.unit), metric.WithDescription(st.help))
		errs = append(errs, err)
		nodes = append(nodes, in)
		insts = append(insts, in)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := cfg.read()
		for _, f := range obs {
			f(o, s)
		}
		for addr, open := range s.Nodes {
			attrs := metric.WithAttributes(append(slices.Clip(base), attribute.String(nodeLabel, addr))...)
			for j, st := range nodeStats {
				o.ObserveFloat64(nodes[j], st.value(open), attrs)
			}
		}
		return nil
	}, insts...)
}
