package metrics

import (
	"context"
	"errors"
	"slices"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RegisterOTel creates an OpenTelemetry observable instrument for every
// metric of the Collector — counters as Int64ObservableCounter, levels as
// Float64ObservableGauge — on meter, with one callback that reads the
// Store's Stats once per collection. Names are dotted
// (hybridsession.cache.reads with an "outcome" attribute,
// hybridsession.memcached.breaker_open with a "node" attribute).
// Unregister the returned Registration to stop observing. It returns an
// error when cfg is invalid or meter refuses an instrument.
func RegisterOTel(cfg Config, meter metric.Meter) (metric.Registration, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(cfg.Labels))
	for k := range cfg.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var base []attribute.KeyValue
	for _, k := range keys {
		base = append(base, attribute.String(k, cfg.Labels[k]))
	}
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
