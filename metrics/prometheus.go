package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector is a prometheus.Collector over a Store's Stats: every scrape
// reads Stats once. With Config.Tracer and Config.Durable it also exports
// latency histograms of the memcached operations and the database calls,
// recorded as they end. Register it with a prometheus.Registerer; several
// Collectors (one per Store) may share a registry when their Config.Labels
// differ.
type Collector struct {
	cfg       Config
	descs     []*prometheus.Desc // of table()
	nodes     []*prometheus.Desc // nodeStats
	latencies []*promLatency     // of timed()
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector for cfg. It returns an error when
// cfg.Store is nil or cfg.Labels uses a reserved label (see Config.Labels).
func NewCollector(cfg Config) (*Collector, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg}
	labels := prometheus.Labels(cfg.Labels)
	for _, st := range c.cfg.table() {
		var variable []string
		if st.label != "" {
			variable = []string{st.label}
		}
		c.descs = append(c.descs, prometheus.NewDesc(Namespace+"_"+st.name, st.help, variable, labels))
	}
	for _, st := range nodeStats {
		c.nodes = append(c.nodes, prometheus.NewDesc(Namespace+"_"+st.name, st.help, []string{nodeLabel}, labels))
	}
	for _, t := range cfg.timed() {
		l := newPromLatency(t.l, cfg.Labels)
		t.calls.attach(l)
		c.latencies = append(c.latencies, l)
	}
	return c, nil
}

// Describe sends the descriptions of every metric the Collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, d := range c.nodes {
		ch <- d
	}
	for _, l := range c.latencies {
		l.vec.Describe(ch)
	}
}

// Collect reads the Store's Stats once and sends every metric, the latency
// histograms too.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.cfg.read()
	for i, st := range c.cfg.table() {
		for _, se := range st.series {
			var lv []string
			if st.label != "" {
				lv = []string{se.value}
			}
			ch <- prometheus.MustNewConstMetric(c.descs[i], valueType(st.kind), se.read(s), lv...)
		}
	}
	for addr, open := range s.Nodes {
		for j, st := range nodeStats {
			ch <- prometheus.MustNewConstMetric(c.nodes[j], prometheus.GaugeValue, st.value(open), addr)
		}
	}
	for _, l := range c.latencies {
		l.vec.Collect(ch)
	}
}

func valueType(k kind) prometheus.ValueType {
	if k == counter {
		return prometheus.CounterValue
	}
	return prometheus.GaugeValue
}
