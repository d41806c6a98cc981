// Command benchtables reads the output of the bench module's
// `go test -bench` runs (from files named as arguments, or standard input)
// and prints the Markdown tables of BENCHMARKS.md: absolute figures for
// context, the ratios ours ÷ each peer and ours ÷ floor, and the targets of
// issue 6 as met or not met with the figure. When a benchmark ran several
// times (-count), every figure is the median of its runs.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// results maps a benchmark name (GOMAXPROCS suffix removed) to its metrics,
// each with the values of every run.
type results map[string]map[string][]float64

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

func parse(r io.Reader, res results) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		if len(fields)%2 != 0 {
			continue
		}
		metrics := res[m[1]]
		if metrics == nil {
			metrics = map[string][]float64{}
			res[m[1]] = metrics
		}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			metrics[fields[i+1]] = append(metrics[fields[i+1]], v)
		}
	}
	return sc.Err()
}

// get returns the median of a metric, and whether it was reported.
func (res results) get(name, unit string) (float64, bool) {
	vs := res[name][unit]
	if len(vs) == 0 {
		return 0, false
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

func (res results) runs(name string) int { return len(res[name]["ns/op"]) }

// ---------------------------------------------------------------------------

type targetInfo struct{ name, label string }

var ours = []targetInfo{
	{"hybrid-gin", "hybridsession + gin (ginsession)"},
	{"hybrid-echo", "hybridsession + echo (echosession)"},
	{"hybrid-fiber", "hybridsession + fiber (fibersession)"},
	{"hybrid-scs", "scs v2 + scsstore"},
	{"hybrid-gin-wt", "hybridsession + gin, write-through"},
	{"hybrid-echo-wt", "hybridsession + echo, write-through"},
	{"hybrid-fiber-wt", "hybridsession + fiber, write-through"},
}

var peers = []targetInfo{
	{"gincontrib-memcached", "gin-contrib/sessions + memcached store"},
	{"fiber-session-gomemcache", "fiber session + a bare gomemcache Storage (gofiber/storage/memcache unavailable)"},
	{"gincontrib-gorm-pg", "gin-contrib/sessions + gorm store (PostgreSQL)"},
}

// frameworkOf names the BenchmarkBaseline of each of our targets.
var frameworkOf = map[string]string{
	"hybrid-gin": "gin", "hybrid-echo": "echo", "hybrid-fiber": "fiber", "hybrid-scs": "nethttp",
	"hybrid-gin-wt": "gin", "hybrid-echo-wt": "echo", "hybrid-fiber-wt": "fiber",
}

// memcachedPeers are the peers backed by memcached (the parallel target
// compares with the best of them).
var memcachedPeers = []string{"gincontrib-memcached", "fiber-session-gomemcache"}

var workloads = []struct{ bench, label string }{
	{"BenchmarkRead", "Read-only request on an existing session"},
	{"BenchmarkModify", "Modifying request"},
	{"BenchmarkNew", "New session"},
}

const unavailable = `Not measured — the module proxy refuses them (403 "module version not available"):
github.com/alexedwards/scs/postgresstore and github.com/alexedwards/scs/gormstore (so scs + postgresstore
and scs + gormstore), and github.com/gofiber/storage/memcache (fiber's session is measured on a bare
gomemcache Storage written in the benchmark instead, labelled as such).`

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: benchtables [go test -bench output files...]  (default: standard input)")
	}
	flag.Parse()
	res := results{}
	if flag.NArg() == 0 {
		if err := parse(os.Stdin, res); err != nil {
			fatal(err)
		}
	}
	for _, f := range flag.Args() {
		fh, err := os.Open(f)
		if err != nil {
			fatal(err)
		}
		err = parse(fh, res)
		fh.Close()
		if err != nil {
			fatal(err)
		}
	}
	if len(res) == 0 {
		fatal(fmt.Errorf("no benchmark results in the input"))
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	p := &printer{w: w, res: res}
	p.all()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchtables:", err)
	os.Exit(1)
}

type printer struct {
	w   io.Writer
	res results
}

func (p *printer) f(format string, args ...any) { fmt.Fprintf(p.w, format, args...) }

func (p *printer) all() {
	p.targets()
	for _, wl := range workloads {
		p.ratios(wl.bench, wl.label)
	}
	p.parallel()
	p.oneSession()
	p.clickStream()
	p.reaper()
	for _, wl := range workloads {
		p.absolute(wl.bench, wl.label)
	}
	p.floors()
	p.baseline()
	p.f("\n%s\n", unavailable)
}

// ---------------------------------------------------------------------------
// formatting

func fmtTime(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v == math.Trunc(v) && math.Abs(v) < 1e7:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func ratio(a, b float64) string {
	if b == 0 {
		if a == 0 {
			return "="
		}
		return "∞"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func (p *printer) metric(name, unit string) string {
	v, ok := p.res.get(name, unit)
	if !ok {
		return "–"
	}
	if unit == "ns/op" {
		return fmtTime(v)
	}
	return fmtNum(v)
}

// cpu formats a benchmark's CPU time per iteration.
func (p *printer) cpu(name string) string {
	v, ok := p.res.get(name, "cpu-ns/op")
	if !ok {
		return "–"
	}
	return fmtTime(v)
}

func yes(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// ---------------------------------------------------------------------------
// floors

// floorFor is what target's work costs in bare operations, from the same
// run: every memcached round trip priced as a bare gomemcache Get, every
// SQL statement on the request path as a bare pgx SELECT (reads) or upsert
// (writes).
func (p *printer) floorFor(bench, target string) (float64, bool) {
	return p.floorIn(bench, target, "ns/op")
}

// floorIn is floorFor in unit: "ns/op" (wall time) or "cpu-ns/op".
func (p *printer) floorIn(bench, target, unit string) (float64, bool) {
	name := bench + "/" + target
	get, ok := p.res.get("BenchmarkFloor/memcached-get", unit)
	if !ok {
		return 0, false
	}
	rt, _ := p.res.get(name, "mc-rt/op")
	f := rt * get
	path, _ := p.res.get(name, "sql-path/op")
	pathWrites, _ := p.res.get(name, "sql-path-writes/op")
	if path > 0 {
		sel, ok1 := p.res.get("BenchmarkFloor/postgres-select", unit)
		ups, ok2 := p.res.get("BenchmarkFloor/postgres-upsert", unit)
		if !ok1 || !ok2 {
			return 0, false
		}
		f += (path-pathWrites)*sel + pathWrites*ups
	}
	return f, f > 0
}

// ---------------------------------------------------------------------------
// tables

func (p *printer) ratios(bench, label string) {
	p.f("\n### %s: ours ÷ each peer, ours ÷ floor\n\n", label)
	p.f("Each cell: wall time · CPU time · allocs · bytes per request, ours divided by the peer's (below 1: ours is cheaper).\n")
	p.f("Floor: our round trips × a bare gomemcache Get, plus our on-path SQL statements × a bare pgx SELECT or upsert; wall time and CPU time.\n\n")
	p.f("| ours |")
	var cols []targetInfo
	for _, pe := range peers {
		if _, ok := p.res.get(bench+"/"+pe.name, "ns/op"); ok {
			cols = append(cols, pe)
			p.f(" ÷ %s |", pe.label)
		}
	}
	p.f(" ÷ floor (wall · CPU) |\n|---|")
	for range cols {
		p.f("---|")
	}
	p.f("---|\n")
	for _, o := range ours {
		on := bench + "/" + o.name
		ot, ok := p.res.get(on, "ns/op")
		if !ok {
			continue
		}
		oc, _ := p.res.get(on, "cpu-ns/op")
		oa, _ := p.res.get(on, "allocs/op")
		ob, _ := p.res.get(on, "B/op")
		p.f("| %s |", o.label)
		for _, pe := range cols {
			pn := bench + "/" + pe.name
			pt, _ := p.res.get(pn, "ns/op")
			pc, _ := p.res.get(pn, "cpu-ns/op")
			pa, _ := p.res.get(pn, "allocs/op")
			pb, _ := p.res.get(pn, "B/op")
			p.f(" %s · %s · %s · %s |", ratio(ot, pt), ratio(oc, pc), ratio(oa, pa), ratio(ob, pb))
		}
		fl, ok1 := p.floorIn(bench, o.name, "ns/op")
		fc, ok2 := p.floorIn(bench, o.name, "cpu-ns/op")
		if ok1 && ok2 {
			p.f(" %s · %s (floor %s · %s CPU) |\n", ratio(ot, fl), ratio(oc, fc), fmtTime(fl), fmtTime(fc))
		} else {
			p.f(" – |\n")
		}
	}
}

func (p *printer) absolute(bench, label string) {
	p.f("\n### %s: absolute figures (context only)\n\n", label)
	p.f("| library | wall time | CPU time | allocs | bytes | memcached round trips | SQL statements (on request path / writes) | runs |\n")
	p.f("|---|---|---|---|---|---|---|---|\n")
	for _, t := range append(append([]targetInfo{}, ours...), peers...) {
		n := bench + "/" + t.name
		if _, ok := p.res.get(n, "ns/op"); !ok {
			continue
		}
		sql := p.metric(n, "sql/op")
		if sql != "–" {
			path := p.metric(n, "sql-path/op")
			if path == "–" {
				path = "all"
			}
			sql = fmt.Sprintf("%s (%s / %s)", sql, path, p.metric(n, "sql-writes/op"))
		}
		p.f("| %s | %s | %s | %s | %s | %s | %s | %d |\n", t.label, p.metric(n, "ns/op"), p.cpu(n), p.metric(n, "allocs/op"),
			p.metric(n, "B/op"), p.metric(n, "mc-rt/op"), sql, p.res.runs(n))
	}
}

func (p *printer) floors() {
	p.f("\n### Floors: bare operations on the same servers (context only)\n\n")
	p.f("| operation | wall time | CPU time | allocs | bytes | round trips / statements | req/s |\n|---|---|---|---|---|---|---|\n")
	for _, f := range []string{"memcached-get", "memcached-set", "memcached-get+cas", "memcached-parallel16", "postgres-select", "postgres-upsert"} {
		n := "BenchmarkFloor/" + f
		if _, ok := p.res.get(n, "ns/op"); !ok {
			continue
		}
		trips := p.metric(n, "mc-rt/op")
		if trips == "–" {
			trips = p.metric(n, "sql/op")
		}
		p.f("| %s | %s | %s | %s | %s | %s | %s |\n", f, p.metric(n, "ns/op"), p.cpu(n), p.metric(n, "allocs/op"), p.metric(n, "B/op"), trips, p.metric(n, "req/s"))
	}
}

func (p *printer) baseline() {
	p.f("\n### Framework and harness alone, no session (context: included in every figure above)\n\n")
	p.f("| framework | time | allocs | bytes |\n|---|---|---|---|\n")
	for _, f := range []string{"nethttp", "gin", "echo", "fiber"} {
		n := "BenchmarkBaseline/" + f
		if _, ok := p.res.get(n, "ns/op"); !ok {
			continue
		}
		p.f("| %s | %s | %s | %s |\n", f, p.metric(n, "ns/op"), p.metric(n, "allocs/op"), p.metric(n, "B/op"))
	}
}

func (p *printer) bestMemcachedPeer() (string, float64) {
	best, bestName := 0.0, ""
	for _, pe := range memcachedPeers {
		if v, ok := p.res.get("BenchmarkParallel16/"+pe, "req/s"); ok && v > best {
			best, bestName = v, pe
		}
	}
	return bestName, best
}

func labelOf(name string) string {
	for _, t := range append(append([]targetInfo{}, ours...), peers...) {
		if t.name == name {
			return t.label
		}
	}
	return name
}

func (p *printer) parallel() {
	p.f("\n### 16 parallel clients on distinct sessions (9 reads : 1 modify)\n\n")
	bestName, best := p.bestMemcachedPeer()
	floor, hasFloor := p.res.get("BenchmarkFloor/memcached-parallel16", "req/s")
	p.f("| library | req/s | ÷ best memcached peer (%s) | ÷ floor (bare gomemcache, same mix) | CPU per request | allocs | round trips |\n|---|---|---|---|---|---|---|\n", labelOf(bestName))
	for _, t := range append(append([]targetInfo{}, ours...), peers...) {
		n := "BenchmarkParallel16/" + t.name
		v, ok := p.res.get(n, "req/s")
		if !ok {
			continue
		}
		fl := "–"
		if hasFloor {
			fl = ratio(v, floor)
		}
		p.f("| %s | %s | %s | %s | %s | %s | %s |\n", t.label, fmtNum(v), ratio(v, best), fl, p.cpu(n), p.metric(n, "allocs/op"), p.metric(n, "mc-rt/op"))
	}
}

func (p *printer) oneSession() {
	p.f("\n### 16 concurrent requests on one session, each adding a different key\n\n")
	p.f("| library | keys kept, minimum over all iterations | keys kept, mean | time per 16 requests |\n|---|---|---|---|\n")
	for _, t := range append(append([]targetInfo{}, ours...), peers...) {
		n := "BenchmarkOneSession16/" + t.name
		mins := p.res[n]["keys-kept-min"]
		if len(mins) == 0 {
			continue
		}
		lowest := mins[0]
		for _, v := range mins {
			lowest = math.Min(lowest, v)
		}
		p.f("| %s | %s of 16 | %s | %s |\n", t.label, fmtNum(lowest), p.metric(n, "keys-kept-mean"), p.metric(n, "ns/op"))
	}
}

func (p *printer) clickStream() {
	modes := []string{"hybrid", "write-through", "database-only"}
	if _, ok := p.res.get("BenchmarkClickStream/hybrid", "db-writes"); !ok {
		return
	}
	users, _ := p.res.get("BenchmarkClickStream/hybrid", "users-simulated")
	p.f("\n### Click stream: 10,000 users, a click every 5 s for 30 simulated minutes, 10%% of clicks modify\n\n")
	p.f("Simulated users: %s (a uniform sample; users are independent), counts scaled to 10,000. SQLite, Manager.Load/Save, virtual clock.\n\n", fmtNum(users))
	p.f("| store | DB reads | DB row writes | DB write calls | DB row writes per click | memcached round trips per click | logouts | wall time |\n|---|---|---|---|---|---|---|---|\n")
	for _, m := range modes {
		n := "BenchmarkClickStream/" + m
		if _, ok := p.res.get(n, "db-writes"); !ok {
			continue
		}
		p.f("| %s | %s | %s | %s | %s | %s | %s | %s s |\n", m, p.metric(n, "db-reads"), p.metric(n, "db-writes"),
			p.metric(n, "db-write-calls"), p.metric(n, "db-writes/click"), p.metric(n, "mc-rt/click"), p.metric(n, "logouts"), p.metric(n, "wall-s"))
	}
	hw, _ := p.res.get("BenchmarkClickStream/hybrid", "db-writes")
	hr, _ := p.res.get("BenchmarkClickStream/hybrid", "db-reads")
	p.f("\n| hybrid vs | writes | reads |\n|---|---|---|\n")
	for _, m := range modes[1:] {
		n := "BenchmarkClickStream/" + m
		w, ok := p.res.get(n, "db-writes")
		if !ok {
			continue
		}
		r, _ := p.res.get(n, "db-reads")
		p.f("| %s | %s | %s |\n", m, fewer(hw, w), fewer(hr, r))
	}
}

// fewer describes ours against theirs as "N% fewer".
func fewer(ours, theirs float64) string {
	if theirs == 0 {
		if ours == 0 {
			return "0 vs 0 (neither reads)"
		}
		return fmt.Sprintf("%s vs 0", fmtNum(ours))
	}
	return fmt.Sprintf("%.1f%% fewer (%s vs %s)", 100*(1-ours/theirs), fmtNum(ours), fmtNum(theirs))
}

func (p *printer) reaper() {
	n := "BenchmarkReaper"
	if _, ok := p.res.get(n, "rows/s"); !ok {
		return
	}
	p.f("\n### Reaper: one pass over 100,000 expired rows on PostgreSQL, default batch (500)\n\n")
	p.f("| rows/s | pass time | client CPU per pass | SQL statements per batch (writes) | memcached round trips per batch | rows extended / deleted per pass | allocs per pass |\n|---|---|---|---|---|---|---|\n")
	p.f("| %s | %s | %s | %s (%s) | %s | %s / %s | %s |\n", p.metric(n, "rows/s"), p.metric(n, "ns/op"), p.cpu(n), p.metric(n, "sql/batch"),
		p.metric(n, "sql-writes/batch"), p.metric(n, "mc-rt/batch"), p.metric(n, "extended/pass"), p.metric(n, "deleted/pass"), p.metric(n, "allocs/op"))
}

// ---------------------------------------------------------------------------
// targets

type check struct {
	what string
	eval func(target string) (figure string, met bool, ok bool)
}

func (p *printer) targets() {
	get := func(bench, target, unit string) (float64, bool) { return p.res.get(bench+"/"+target, unit) }
	atMost := func(bench, unit string, limit float64, format func(float64) string) func(string) (string, bool, bool) {
		return func(t string) (string, bool, bool) {
			v, ok := get(bench, t, unit)
			if !ok {
				return "", false, false
			}
			return format(v), v <= limit, true
		}
	}
	vsFloor := func(bench string) func(string) (string, bool, bool) {
		return func(t string) (string, bool, bool) {
			v, ok := get(bench, t, "ns/op")
			fl, ok2 := p.floorFor(bench, t)
			if !ok || !ok2 {
				return "", false, false
			}
			fig := fmt.Sprintf("%s = %s floor %s", fmtTime(v), ratio(v, fl), fmtTime(fl))
			c, ok3 := get(bench, t, "cpu-ns/op")
			fc, ok4 := p.floorIn(bench, t, "cpu-ns/op")
			if ok3 && ok4 {
				fig += fmt.Sprintf(" (CPU %s = %s floor %s)", fmtTime(c), ratio(c, fc), fmtTime(fc))
			}
			return fig, v <= 1.05*fl, true
		}
	}
	plain := func(v float64) string { return fmtNum(v) }
	// aboveBaseline reports a per-request figure with what it is above the
	// framework and harness alone (BenchmarkBaseline).
	aboveBaseline := func(bench, unit string, limit float64, suffix string) func(string) (string, bool, bool) {
		return func(t string) (string, bool, bool) {
			v, ok := get(bench, t, unit)
			if !ok {
				return "", false, false
			}
			fig := fmtNum(v) + suffix
			if base, ok := p.res.get("BenchmarkBaseline/"+frameworkOf[t], unit); ok {
				fig += fmt.Sprintf(" (%s%s above %s alone)", fmtNum(v-base), suffix, frameworkOf[t])
			}
			return fig, v <= limit, true
		}
	}
	checks := []check{
		{"read: ≤ 1.1 memcached round trips", atMost("BenchmarkRead", "mc-rt/op", 1.1, plain)},
		{"read: 0 SQL statements (on the request path and off it)", func(t string) (string, bool, bool) {
			v, ok := get("BenchmarkRead", t, "sql/op")
			if !ok {
				return "", false, false
			}
			path, _ := get("BenchmarkRead", t, "sql-path/op")
			return fmt.Sprintf("%s per request, %s on the path", fmtNum(v), fmtNum(path)), v == 0, true
		}},
		{"read: time ≤ 1.05 × floor", vsFloor("BenchmarkRead")},
		{"read: ≤ 25 allocs", aboveBaseline("BenchmarkRead", "allocs/op", 25, "")},
		{"read: ≤ 3 KB", aboveBaseline("BenchmarkRead", "B/op", 3072, " B")},
		{"modify: ≤ 2.05 memcached round trips", atMost("BenchmarkModify", "mc-rt/op", 2.05, plain)},
		{"modify: ≤ 1/24 SQL writes, none on the request path", func(t string) (string, bool, bool) {
			w, ok := get("BenchmarkModify", t, "sql-writes/op")
			if !ok {
				return "", false, false
			}
			path, _ := get("BenchmarkModify", t, "sql-path-writes/op")
			return fmt.Sprintf("%s per request, %s on the path", fmtNum(w), fmtNum(path)), w <= 1.001/24 && path == 0, true
		}},
		{"modify: time ≤ 1.05 × floor", vsFloor("BenchmarkModify")},
		{"modify: ≤ 35 allocs", aboveBaseline("BenchmarkModify", "allocs/op", 35, "")},
		{"16 parallel clients: ≥ 1.25 × best memcached peer's req/s", func(t string) (string, bool, bool) {
			v, ok := get("BenchmarkParallel16", t, "req/s")
			_, best := p.bestMemcachedPeer()
			if !ok || best == 0 {
				return "", false, false
			}
			return fmt.Sprintf("%s req/s = %s", fmtNum(v), ratio(v, best)), v >= 1.25*best, true
		}},
		{"16 requests on one session: 16 of 16 keys kept, every time", func(t string) (string, bool, bool) {
			v, ok := get("BenchmarkOneSession16", t, "keys-kept-min")
			if !ok {
				return "", false, false
			}
			// The minimum over every run, not the median.
			for _, x := range p.res["BenchmarkOneSession16/"+t]["keys-kept-min"] {
				v = math.Min(v, x)
			}
			return fmt.Sprintf("minimum %s of 16", fmtNum(v)), v == 16, true
		}},
	}
	cols := []string{"hybrid-gin", "hybrid-echo", "hybrid-fiber", "hybrid-scs"}
	p.f("\n### Targets (issue 6), per adapter in default mode\n\n| target |")
	for _, c := range cols {
		p.f(" %s |", labelOf(c))
	}
	p.f("\n|---|")
	for range cols {
		p.f("---|")
	}
	p.f("\n")
	for _, c := range checks {
		p.f("| %s |", c.what)
		for _, t := range cols {
			fig, met, ok := c.eval(t)
			if !ok {
				p.f(" – |")
				continue
			}
			p.f(" %s: %s |", yes(met), fig)
		}
		p.f("\n")
	}
	// Store-wide targets.
	p.f("\n| target | result |\n|---|---|\n")
	if hw, ok := p.res.get("BenchmarkClickStream/hybrid", "db-writes"); ok {
		ww, _ := p.res.get("BenchmarkClickStream/write-through", "db-writes")
		hr, _ := p.res.get("BenchmarkClickStream/hybrid", "db-reads")
		wr, _ := p.res.get("BenchmarkClickStream/write-through", "db-reads")
		dr, _ := p.res.get("BenchmarkClickStream/database-only", "db-reads")
		if ww > 0 {
			p.f("| click stream: ≥ 95%% fewer DB writes than write-through | %s: %s |\n", yes(1-hw/ww >= 0.95), fewer(hw, ww))
		}
		switch {
		case wr > 0:
			p.f("| click stream: ≥ 99%% fewer DB reads than write-through | %s: %s |\n", yes(1-hr/wr >= 0.99), fewer(hr, wr))
		default:
			extra := ""
			if dr > 0 {
				extra = "; against the database-only store: " + fewer(hr, dr)
			}
			p.f("| click stream: ≥ 99%% fewer DB reads than write-through | not applicable: write-through reads memcached first and made 0 DB reads, hybrid %s%s |\n", fmtNum(hr), extra)
		}
	}
	if v, ok := p.res.get("BenchmarkReaper", "rows/s"); ok {
		p.f("| reaper: ≥ 50,000 expired rows/s on PostgreSQL, default batch | %s: %s rows/s |\n", yes(v >= 50000), fmtNum(v))
	}
}
