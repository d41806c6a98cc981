package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// opsPanel serves the operator panel's data (/ops/stats), its demo-only
// buttons (/ops/nodes/..., /ops/db/cut) and /metrics, for all the app
// servers of the cluster together. The buttons change the cluster for
// everyone: never expose them outside a demo.
type opsPanel struct {
	env   *setup.Env
	nodes *nodes // nil: no memcached processes of our own
	log   *slog.Logger
	names map[*core.Store]string
	reg   *prometheus.Registry

	btn     sync.Mutex // serialises the buttons
	mu      sync.Mutex // guards history
	history []sample

	stop chan struct{}
	done chan struct{}
}

// totals are the counters of every Store of the cluster, summed, and of
// the database and the demo application they share.
type totals struct {
	hits, misses, dbReads, dbWrites, cacheErrors uint64
	// calls counts the calls that reached the database: row loads, batched
	// row writes, listings and reaper batches (setup.Outage.Calls).
	calls uint64
	// changes counts the requests that changed a session (demo.Changes).
	changes uint64
}

// writeThrough is what a write-through store (Django's cached_db) would
// have sent the database: the same row loads, and a row write for every
// request that changed a session.
func (t totals) writeThrough() uint64 { return t.dbReads + t.changes }

// sample is the cluster's totals at one time.
type sample struct {
	at time.Time
	totals
}

const (
	sampleEvery = 5 * time.Second
	keepSamples = 120 // ten minutes
)

// newOpsPanel registers a metrics.Collector per Store of env, labelled
// server=<name> (names maps the app servers' Stores; others are
// "reaper"), and starts sampling the totals for the chart.
func newOpsPanel(env *setup.Env, n *nodes, names map[*core.Store]string) (*opsPanel, error) {
	p := &opsPanel{env: env, nodes: n, log: env.Logger(), names: names, reg: prometheus.NewRegistry(),
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, s := range env.Stores() {
		cfg := metrics.Config{Store: s, Labels: map[string]string{"server": p.name(s)}}
		if cfg.Labels["server"] == "reaper" {
			// The Stores share one wrapped tier: its reaper passes, and the
			// database calls of every Store, are exported once, here.
			cfg.Durable = env.Observed
		}
		c, err := metrics.NewCollector(cfg)
		if err != nil {
			return nil, err
		}
		if err := p.reg.Register(c); err != nil {
			return nil, err
		}
	}
	p.history = []sample{{time.Now(), p.totals()}}
	go p.sample()
	return p, nil
}

func (p *opsPanel) name(s *core.Store) string {
	if n, ok := p.names[s]; ok {
		return n
	}
	return "reaper"
}

func (p *opsPanel) totals() totals {
	var t totals
	for _, s := range p.env.Stores() {
		st := s.Stats()
		t.hits += st.CacheHits
		t.misses += st.CacheMisses
		t.dbReads += st.DBReads
		t.dbWrites += st.DBWrites
		t.cacheErrors += st.CacheErrors
	}
	t.calls, t.changes = p.env.Outage.Calls(), demo.Changes()
	return t
}

func (p *opsPanel) sample() {
	defer close(p.done)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-tick.C:
			t := p.totals()
			p.mu.Lock()
			p.history = append(p.history, sample{now, t})
			if len(p.history) > keepSamples+1 {
				p.history = slices.Delete(p.history, 0, len(p.history)-keepSamples-1)
			}
			p.mu.Unlock()
		}
	}
}

func (p *opsPanel) close() {
	close(p.stop)
	<-p.done
}

// routes adds the panel's endpoints to mux.
func (p *opsPanel) routes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /ops/stats", p.serveStats)
	mux.HandleFunc("POST /ops/nodes/{action}", p.serveNode)
	mux.HandleFunc("POST /ops/db/cut", p.serveCut)
}

// nodeView is one memcached node on the panel.
type nodeView struct {
	Addr    string `json:"addr"`
	State   string `json:"state"`
	Managed bool   `json:"managed"`
	Running bool   `json:"running"`
}

type reaperView struct {
	End        *time.Time `json:"end,omitempty"`
	Examined   int        `json:"examined"`
	DurationMS int64      `json:"duration_ms"`
	Error      string     `json:"error,omitempty"`
}

type point struct {
	At           time.Time `json:"at"`
	HitRatio     float64   `json:"hit_ratio"`
	DBPerMin     float64   `json:"db_per_min"`
	WriteThrough float64   `json:"write_through_per_min"`
}

// stats is the panel's data, GET /ops/stats.
type stats struct {
	Nodes              []nodeView `json:"nodes"`
	CanAdd             bool       `json:"can_add"`
	DBCutUntil         *time.Time `json:"db_cut_until,omitempty"`
	HitRatio           float64    `json:"hit_ratio"`
	HitRatioTotal      float64    `json:"hit_ratio_total"`
	DBPerMin           float64    `json:"db_per_min"`
	WriteThroughPerMin float64    `json:"write_through_per_min"`
	DBReads            uint64     `json:"db_reads"`
	DBWrites           uint64     `json:"db_writes"`
	CacheErrors        uint64     `json:"cache_errors"`
	Reaper             reaperView `json:"reaper"`
	History            []point    `json:"history"`
}

func ratio(hits, misses uint64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+misses)
}

// rates returns the hit ratio and database calls per minute between a and b.
func rates(a, b sample) point {
	p := point{At: b.at, HitRatio: ratio(b.hits-a.hits, b.misses-a.misses)}
	if d := b.at.Sub(a.at).Minutes(); d > 0 {
		p.DBPerMin = float64(b.calls-a.calls) / d
		p.WriteThrough = float64(b.writeThrough()-a.writeThrough()) / d
	}
	return p
}

func (p *opsPanel) snapshot() stats {
	now := sample{time.Now(), p.totals()}
	var out stats
	p.mu.Lock()
	hist := slices.Clone(p.history)
	p.mu.Unlock()
	// The last minute: from the oldest sample at most a minute old.
	from := hist[len(hist)-1]
	for _, s := range hist {
		if now.at.Sub(s.at) <= time.Minute {
			from = s
			break
		}
	}
	last := rates(from, now)
	out.HitRatio, out.DBPerMin, out.WriteThroughPerMin = last.HitRatio, last.DBPerMin, last.WriteThrough
	out.HitRatioTotal = ratio(now.hits, now.misses)
	out.DBReads, out.DBWrites, out.CacheErrors = now.dbReads, now.dbWrites, now.cacheErrors
	// The chart starts at the first sample, from zero.
	out.History = append(out.History, point{At: hist[0].at, HitRatio: last.HitRatio})
	for i := 1; i < len(hist); i++ {
		pt := rates(hist[i-1], hist[i])
		if hist[i].hits+hist[i].misses == hist[i-1].hits+hist[i-1].misses {
			pt.HitRatio = out.History[len(out.History)-1].HitRatio // no reads: keep the line level
		}
		out.History = append(out.History, pt)
	}
	out.History = append(out.History, rates(hist[len(hist)-1], now))

	open := map[string]bool{}
	var addrs []string
	for i, s := range p.env.Stores() {
		for addr, o := range s.Stats().Nodes {
			if i == 0 {
				addrs = append(addrs, addr)
			}
			open[addr] = open[addr] || o
		}
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		v := nodeView{Addr: a, State: "up"}
		if p.nodes != nil {
			v.Managed, v.Running = p.nodes.state(a)
		}
		switch {
		case v.Managed && !v.Running:
			v.State = "down — not running"
		case open[a]:
			v.State = "open — breaker open: its sessions are served from the database"
		}
		out.Nodes = append(out.Nodes, v)
	}
	out.CanAdd = p.nodes != nil
	if until := p.env.Outage.Until(); !until.IsZero() {
		u := until.UTC()
		out.DBCutUntil = &u
	}
	if r := p.env.Observed.LastReapPass(); !r.End.IsZero() {
		end := r.End.UTC()
		out.Reaper = reaperView{End: &end, Examined: r.Examined, DurationMS: r.Duration.Milliseconds()}
		if r.Err != nil {
			out.Reaper.Error = r.Err.Error()
		}
	}
	return out
}

func (p *opsPanel) serveStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(p.snapshot())
}

// serveNode handles the node buttons: add, and kill, start, restart or
// remove ?addr=.
func (p *opsPanel) serveNode(w http.ResponseWriter, r *http.Request) {
	p.btn.Lock()
	defer p.btn.Unlock()
	action, addr := r.PathValue("action"), r.URL.Query().Get("addr")
	err := p.node(action, addr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if action != "add" {
		p.log.Info("operator panel", "action", action, "node", addr)
	}
	w.WriteHeader(http.StatusNoContent)
}

var errNotOurs = errors.New("this demo does not run memcached processes (start it with -spawn)")

func (p *opsPanel) node(action, addr string) error {
	if action != "add" && !slices.ContainsFunc(p.snapshot().Nodes, func(n nodeView) bool { return n.Addr == addr }) {
		return fmt.Errorf("no memcached node %q in the ring", addr)
	}
	switch action {
	case "add":
		if p.nodes == nil {
			return errNotOurs
		}
		addr, err := p.nodes.spawn()
		if err != nil {
			return err
		}
		for _, s := range p.env.Stores() {
			if err := s.AddServer(addr, 0); err != nil {
				return err
			}
		}
		p.log.Info("operator panel", "action", action, "node", addr)
		return nil
	case "remove":
		if len(p.snapshot().Nodes) < 2 {
			return errors.New("the last memcached node stays: a Store cannot drop its memcached tier at run time")
		}
		for _, s := range p.env.Stores() {
			if err := s.RemoveServer(addr); err != nil {
				return err
			}
		}
		if p.nodes != nil {
			p.nodes.forget(addr)
		}
		return nil
	}
	if p.nodes == nil {
		return errNotOurs
	}
	switch action {
	case "kill":
		return p.nodes.kill(addr)
	case "start":
		return p.nodes.start(addr)
	case "restart":
		if err := p.nodes.kill(addr); err != nil {
			return err
		}
		return p.nodes.start(addr)
	}
	return fmt.Errorf("unknown action %q", action)
}

// serveCut cuts the database for ?seconds= (1 to 300, default 30).
func (p *opsPanel) serveCut(w http.ResponseWriter, r *http.Request) {
	secs := 30
	if v := r.URL.Query().Get("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 300 {
			http.Error(w, "seconds: 0 to 300", http.StatusBadRequest)
			return
		}
		secs = n
	}
	p.env.Outage.Cut(time.Duration(secs) * time.Second)
	p.log.Warn("operator panel: database cut", "seconds", secs)
	w.WriteHeader(http.StatusNoContent)
}
