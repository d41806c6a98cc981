package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const statsAbout = `Scrapes a Prometheus endpoint serving the metrics module's collector (the
cluster demo's /metrics), once or every -watch, and prints per app server
the hit ratio, hits, misses, database reads, writes and errors, memcached
errors and the background writer's sessions pending and dropped; then each
memcached node's breaker and the reaper's last pass. It uses no database.
`

// statsFlags defines "hsctl stats"'s flags and returns the command: it
// scrapes -url once, or every -watch, and prints the cluster's figures.
func statsFlags(fs *flag.FlagSet) runFunc {
	url := fs.String("url", "http://127.0.0.1:8080/metrics", "a Prometheus endpoint serving hybridsession's metrics (the cluster demo's /metrics)")
	watch := fs.Duration("watch", 0, "scrape again this often until interrupted (0: once)")
	return func(ctx context.Context, stdout, _ io.Writer) error {
		client := &http.Client{Timeout: 10 * time.Second}
		for {
			mfs, err := scrape(ctx, client, *url)
			if err != nil {
				return err
			}
			printStats(stdout, mfs, time.Now())
			if *watch <= 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(*watch):
			}
			fmt.Fprintln(stdout)
		}
	}
}

func scrape(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: not Prometheus text format: %w", url, err)
	}
	if _, ok := mfs["hybridsession_cache_reads_total"]; !ok {
		return nil, fmt.Errorf("%s: no hybridsession metrics (is the metrics module's Collector registered?)", url)
	}
	return mfs, nil
}

// series is one sample: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

func samples(mfs map[string]*dto.MetricFamily, name string) []series {
	var out []series
	for _, m := range mfs[name].GetMetric() {
		s := series{labels: map[string]string{}}
		for _, l := range m.GetLabel() {
			s.labels[l.GetName()] = l.GetValue()
		}
		switch {
		case m.GetCounter() != nil:
			s.value = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			s.value = m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			s.value = m.GetUntyped().GetValue()
		}
		out = append(out, s)
	}
	return out
}

// serverLabel tells the Stores of one endpoint apart; "" when there is one.
const serverLabel = "server"

// columns are the per-server figures hsctl stats prints: a metric's
// series, those with the outcome label's value when outcome is set.
var columns = []struct{ head, metric, outcome string }{
	{"hits", "hybridsession_cache_reads_total", "hit"},
	{"misses", "hybridsession_cache_reads_total", "miss"},
	{"db reads", "hybridsession_db_reads_total", ""},
	{"db writes", "hybridsession_db_writes_total", ""},
	{"db errors", "hybridsession_db_errors_total", ""},
	{"cache errors", "hybridsession_cache_errors_total", ""},
	{"sync pending", "hybridsession_sync_pending", ""},
	{"sync dropped", "hybridsession_sync_dropped_total", ""},
}

// printStats writes a table per app server, a total, the memcached nodes
// and the reaper's last pass.
func printStats(w io.Writer, mfs map[string]*dto.MetricFamily, now time.Time) {
	values := map[string]map[string]float64{} // server → column head → value
	var servers []string
	for _, c := range columns {
		for _, s := range samples(mfs, c.metric) {
			if s.labels["outcome"] != c.outcome {
				continue
			}
			srv := s.labels[serverLabel]
			if values[srv] == nil {
				values[srv] = map[string]float64{}
				servers = append(servers, srv)
			}
			values[srv][c.head] = s.value
		}
	}
	slices.Sort(servers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "server\thit ratio\t"
	for _, c := range columns {
		head += c.head + "\t"
	}
	fmt.Fprintln(tw, head)
	total := map[string]float64{}
	row := func(name string, v map[string]float64) {
		line := name + "\t" + percent(v["hits"], v["misses"]) + "\t"
		for _, c := range columns {
			line += fmt.Sprintf("%.0f\t", v[c.head])
		}
		fmt.Fprintln(tw, line)
	}
	for _, srv := range servers {
		name := srv
		if name == "" {
			name = "(store)"
		}
		row(name, values[srv])
		for k, v := range values[srv] {
			total[k] += v
		}
	}
	if len(servers) > 1 {
		row("total", total)
	}
	_ = tw.Flush()

	// A node is open when any app server's breaker for it is.
	open := map[string][]string{}
	var nodes []string
	for _, s := range samples(mfs, "hybridsession_memcached_breaker_open") {
		n := s.labels["node"]
		if _, ok := open[n]; !ok {
			open[n] = nil
			nodes = append(nodes, n)
		}
		if s.value != 0 {
			open[n] = append(open[n], s.labels[serverLabel])
		}
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		if len(open[n]) == 0 {
			fmt.Fprintf(w, "memcached %s: breaker closed\n", n)
		} else {
			slices.Sort(open[n])
			fmt.Fprintf(w, "memcached %s: BREAKER OPEN on %s — its sessions are served from the database\n", n, strings.Join(open[n], ", "))
		}
	}
	if len(nodes) == 0 {
		fmt.Fprintln(w, "memcached: none (database-only)")
	}

	last := samples(mfs, "hybridsession_reaper_last_pass_timestamp_seconds")
	switch {
	case len(last) == 0:
		fmt.Fprintln(w, "reaper: not reported by this endpoint")
	case last[0].value == 0:
		fmt.Fprintln(w, "reaper: no pass yet")
	default:
		at := time.Unix(0, int64(last[0].value*1e9))
		rows := samples(mfs, "hybridsession_reaper_last_pass_rows")
		dur := samples(mfs, "hybridsession_reaper_last_pass_duration_seconds")
		line := fmt.Sprintf("reaper: last pass ended %s ago", now.Sub(at).Round(time.Second))
		if len(rows) > 0 && len(dur) > 0 {
			line += fmt.Sprintf(", %.0f rows", rows[0].value)
			if d, ok := passDuration(dur[0].value); ok {
				line += " in " + d.Round(time.Millisecond).String()
			} else {
				line += fmt.Sprintf(" (duration unknown: the endpoint reported %gs)", dur[0].value)
			}
		}
		fmt.Fprintln(w, line)
	}
}

// passDuration converts a pass's reported duration in seconds, false when
// it is no duration a pass can have taken: negative, not a number, or
// beyond a time.Duration — as the largest one is, which is what a
// duration measured from a zero start time saturates to.
func passDuration(seconds float64) (time.Duration, bool) {
	ns := seconds * float64(time.Second)
	if !(ns >= 0 && ns < math.MaxInt64) { // float64(math.MaxInt64) is 2⁶³: ns converts without overflow
		return 0, false
	}
	return time.Duration(ns), true
}

func percent(hits, misses float64) string {
	if hits+misses == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*hits/(hits+misses))
}
