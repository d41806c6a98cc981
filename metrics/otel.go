package metrics

import (
	"context"
	"errors"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RegisterOTel creates an OpenTelemetry observable instrument for every
// metric of the Collector — counters as Int64ObservableCounter, levels as
// Float64ObservableGauge — on meter, with one callback that reads the
// Store's Stats once per collection. Names are dotted
// (hybridsession.cache.hits, hybridsession.memcached.breaker_open with a
// "node" attribute). Unregister the returned Registration to stop
// observing. It returns an error when cfg is invalid or meter refuses an
// instrument.
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

	table := stats
	if cfg.Reaper != nil {
		table = append(append([]stat(nil), stats...), reapStats...)
	}
	var (
		errs   []error
		insts  []metric.Observable
		counts = map[int]metric.Int64ObservableCounter{}
		levels = map[int]metric.Float64ObservableGauge{}
		nodes  []metric.Float64ObservableGauge
	)
	for i, st := range table {
		if st.kind == counter {
			in, err := meter.Int64ObservableCounter(otelName(st.name), metric.WithUnit(st.unit), metric.WithDescription(st.help))
			errs = append(errs, err)
			counts[i] = in
			insts = append(insts, in)
			continue
		}
		in, err := meter.Float64ObservableGauge(otelName(st.name), metric.WithUnit(st.unit), metric.WithDescription(st.help))
		errs = append(errs, err)
		levels[i] = in
		insts = append(insts, in)
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
		for i, st := range table {
			if in, ok := counts[i]; ok {
				o.ObserveInt64(in, int64(st.value(s)), common)
			} else {
				o.ObserveFloat64(levels[i], st.value(s), common)
			}
		}
		for addr, open := range s.Nodes {
			attrs := metric.WithAttributes(append(base[:len(base):len(base)], attribute.String(nodeLabel, addr))...)
			for j, st := range nodeStats {
				o.ObserveFloat64(nodes[j], st.value(open), attrs)
			}
		}
		return nil
	}, insts...)
}
