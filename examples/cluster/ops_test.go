package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hybridsession/hybridsession/examples/internal/demotest"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the cluster's /metrics as Prometheus does.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return mfs
}

// value returns the value of name's series whose labels include want, and
// whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
series:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue series
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

// sum adds name's series over every app server.
func sum(mfs map[string]*dto.MetricFamily, name string) float64 {
	var total float64
	for _, f := range frameworks {
		v, _ := value(mfs, name, map[string]string{"server": f})
		total += v
	}
	return total
}

// TestMetricsEndpoint scrapes /metrics from the running cluster and checks
// the names and values a journey and a dead memcached node produce.
func TestMetricsEndpoint(t *testing.T) {
	c, mc := startCluster(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	client := demotest.NewClient(t, tr)
	demotest.Post(t, client, c.URL, "/login", url.Values{"name": {"ada"}})
	demotest.Post(t, client, c.URL, "/cart/add", url.Values{"item": {"apple"}})
	for range frameworks {
		if st, r := demotest.State(t, client, c.URL); st.Source != "memcached" {
			t.Errorf("%s: state %+v, want read from memcached", r.ServedBy, st)
		}
	}

	mfs := scrape(t, c.URL)
	for _, f := range frameworks {
		if v, ok := value(mfs, "hybridsession_memcached_breaker_open", map[string]string{"server": f, "node": mc.Addr}); !ok || v != 0 {
			t.Errorf("breaker_open{server=%q,node=%q} = %v (present %v), want 0", f, mc.Addr, v, ok)
		}
	}
	// Login and the cart are durable keys: written to the database at once.
	if v := sum(mfs, "hybridsession_db_writes_total"); v < 2 {
		t.Errorf("db_writes_total summed = %v, want at least 2 (login, cart)", v)
	}
	// The cart add and the four state reads at least, all from memcached.
	hits := 0.0
	for _, f := range frameworks {
		v, _ := value(mfs, "hybridsession_cache_reads_total", map[string]string{"server": f, "outcome": "hit"})
		hits += v
	}
	if hits < 5 {
		t.Errorf("cache_reads_total{outcome=\"hit\"} summed = %v, want at least 5", hits)
	}
	if v := sum(mfs, "hybridsession_db_reads_total"); v != 0 {
		t.Errorf("db_reads_total summed = %v, want 0: memcached had every session", v)
	}
	if v, ok := value(mfs, "hybridsession_cache_reads_total", map[string]string{"server": frameworks[0], "outcome": "miss"}); !ok || v != 0 {
		t.Errorf("cache_reads_total{server=%q,outcome=\"miss\"} = %v (present %v), want 0", frameworks[0], v, ok)
	}
	// The in-process reaper makes a pass at start.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := value(scrape(t, c.URL), "hybridsession_reaper_last_pass_timestamp_seconds", map[string]string{"server": "reaper"})
		if ok && v > float64(time.Now().Add(-time.Minute).Unix()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reaper_last_pass_timestamp_seconds = %v (present %v), want a time in the last minute", v, ok)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition the reaper sets
	}

	// The node dies: every app server that asks it opens its breaker, and
	// serves the session from the database.
	mc.Kill()
	for range 4 * len(frameworks) {
		if st, r := demotest.State(t, client, c.URL); st.User != "ada" || st.Source != "database" {
			t.Fatalf("with memcached dead, %s sees %+v, want ada's session from the database", r.ServedBy, st)
		}
	}
	mfs = scrape(t, c.URL)
	for _, f := range frameworks {
		if v, _ := value(mfs, "hybridsession_memcached_breaker_open", map[string]string{"server": f, "node": mc.Addr}); v != 1 {
			t.Errorf("breaker_open{server=%q} = %v after the node died, want 1", f, v)
		}
	}
	if v := sum(mfs, "hybridsession_cache_errors_total"); v < float64(len(frameworks)) {
		t.Errorf("cache_errors_total summed = %v, want at least %d", v, len(frameworks))
	}
}

// startSpawned starts the cluster with one memcached process of its own,
// as make demo does, so that the panel's buttons work.
func startSpawned(t *testing.T) *Cluster {
	t.Helper()
	c, err := start(setup.Options{Name: "cluster", DSN: filepath.Join(t.TempDir(), "sessions.db"), Listen: "127.0.0.1:0"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setup.ShutdownTimeout)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	return c
}

// TestBrowserOperatorPanel logs in with headless chromium, restarts the
// memcached node with the panel's button, and sees the user still logged
// in with the cart, the session restored from the database and the panel
// counting the database read. With HYBRIDSESSION_SCREENSHOT=path it saves
// a screenshot of the page there (docs/demo-cluster.png is one).
func TestBrowserOperatorPanel(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing: install chromium (apt-get install chromium); CI runs the browser test", chromium)
		}
		t.Skipf("%s missing: install chromium (apt-get install chromium) to run the browser test", chromium)
	}
	if _, err := memcachedBinary(); err != nil {
		t.Fatal(err)
	}
	c := startSpawned(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1200, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	type css = chromedp.CSS
	err := chromedp.Do(browser,
		chromedp.Navigate(c.URL+"/"),
		chromedp.WaitVisible(css(`#login`)),
		chromedp.SendKeys(css(`#login input[name=name]`), "ada"),
		chromedp.Click(css(`#login-button`)),
		chromedp.WaitVisible(css(`#logout`)),
		// The panel appears once /ops/stats answered.
		chromedp.WaitVisible(css(`#nodes tr.node .node-restart`)),
	)
	if err != nil {
		t.Fatalf("log in, see the panel: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(browser, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	// From the login on memcached has the session: adding to the cart
	// reads no row.
	atLogin := text(`#ops-db-reads`)
	err = chromedp.Do(browser,
		chromedp.SendKeys(css(`#add input[name=item]`), "apple"),
		chromedp.Click(css(`#add-to-cart`)),
		chromedp.WaitVisible(css(`#cart li`)),
		chromedp.WaitVisible(css(`#source.src-memcached`)),
	)
	if err != nil {
		t.Fatalf("add to the cart: %v", err)
	}
	if got := text(`#ops-db-reads`); got != atLogin {
		t.Errorf("database reads before the restart = %q, %q after the login: memcached had the session", got, atLogin)
	}

	// The panel's restart button: memcached comes back empty, and the page reloads.
	err = chromedp.Do(browser,
		chromedp.Click(css(`#nodes tr.node .node-restart`)),
		chromedp.WaitVisible(css(`#source.src-database`)),
		chromedp.WaitVisible(css(`#nodes tr.node .node-restart`)),
	)
	if err != nil {
		t.Fatalf("restart memcached from the panel: %v", err)
	}
	body := text(`body`)
	for _, want := range []string{"Logged in as ada", "apple", "restored: memcached did not have it"} {
		if !strings.Contains(body, want) {
			t.Errorf("after the restart the page lacks %q:\n%s", want, body)
		}
	}
	if n, err := strconv.Atoi(text(`#ops-db-reads`)); err != nil || n < 1 {
		t.Errorf("panel's database reads after the restart = %v (%v), want at least 1", n, err)
	}
	if state := text(`#nodes .node-state`); state != "up" {
		t.Errorf("node state after the restart = %q, want up", state)
	}

	if path := os.Getenv("HYBRIDSESSION_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
}

// opsStats reads the panel's data.
func opsStats(t *testing.T, base string) stats {
	t.Helper()
	resp, err := http.Get(base + "/ops/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// press posts to a button's endpoint and returns the status code.
func press(t *testing.T, base, path string) int {
	t.Helper()
	resp, err := http.Post(base+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOpsButtons presses the panel's buttons over HTTP: add a node, cut
// the database, kill a node, remove nodes — the visitor stays logged in.
func TestOpsButtons(t *testing.T) {
	if _, err := memcachedBinary(); err != nil {
		t.Fatal(err)
	}
	c := startSpawned(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	client := demotest.NewClient(t, tr)
	demotest.Post(t, client, c.URL, "/login", url.Values{"name": {"ada"}})
	loggedIn := func(when string) {
		t.Helper()
		for range frameworks {
			if st, r := demotest.State(t, client, c.URL); st.User != "ada" {
				t.Fatalf("%s: %s sees %+v", when, r.ServedBy, st)
			}
		}
	}

	if code := press(t, c.URL, "/ops/nodes/add"); code != http.StatusNoContent {
		t.Fatalf("add: %d", code)
	}
	s := opsStats(t, c.URL)
	// The login wrote the database: it counts in both rates.
	if s.DBPerMin <= 0 || s.WriteThroughPerMin <= 0 {
		t.Errorf("database calls/min %v, write-through %v; want both above 0 after a login", s.DBPerMin, s.WriteThroughPerMin)
	}
	if len(s.Nodes) != 2 || !s.Nodes[0].Managed || !s.Nodes[1].Running {
		t.Fatalf("after add: nodes %+v, want two running nodes of ours", s.Nodes)
	}
	loggedIn("after adding a node")

	if code := press(t, c.URL, "/ops/db/cut?seconds=60"); code != http.StatusNoContent {
		t.Fatalf("cut: %d", code)
	}
	if s := opsStats(t, c.URL); s.DBCutUntil == nil || time.Until(*s.DBCutUntil) < 30*time.Second {
		t.Errorf("after the cut: db_cut_until %v, want a minute from now", s.DBCutUntil)
	}
	loggedIn("with the database cut") // memcached has the session
	if code := press(t, c.URL, "/ops/db/cut?seconds=0"); code != http.StatusNoContent {
		t.Fatalf("uncut: %d", code)
	}
	if code := press(t, c.URL, "/ops/db/cut?seconds=-1"); code != http.StatusBadRequest {
		t.Errorf("cut -1 s: %d, want 400", code)
	}

	victim := s.Nodes[0].Addr
	if code := press(t, c.URL, "/ops/nodes/kill?addr="+url.QueryEscape(victim)); code != http.StatusNoContent {
		t.Fatalf("kill: %d", code)
	}
	loggedIn("with a node killed")
	for _, n := range opsStats(t, c.URL).Nodes {
		if n.Addr == victim && (n.Running || !strings.HasPrefix(n.State, "down")) {
			t.Errorf("killed node: %+v, want down", n)
		}
	}
	if code := press(t, c.URL, "/ops/nodes/remove?addr="+url.QueryEscape(victim)); code != http.StatusNoContent {
		t.Fatalf("remove: %d", code)
	}
	s = opsStats(t, c.URL)
	if len(s.Nodes) != 1 || s.Nodes[0].Addr == victim {
		t.Fatalf("after remove: nodes %+v", s.Nodes)
	}
	loggedIn("after removing the killed node")
	if code := press(t, c.URL, "/ops/nodes/remove?addr="+url.QueryEscape(s.Nodes[0].Addr)); code != http.StatusBadRequest {
		t.Errorf("removing the last node: %d, want 400", code)
	}
	if code := press(t, c.URL, "/ops/nodes/kill?addr=192.0.2.1:1"); code != http.StatusBadRequest {
		t.Errorf("killing a node not in the ring: %d, want 400", code)
	}
}
