package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestDispatch(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := dispatch(context.Background(), nil, &out, &errOut); !errors.Is(err, errUsage) || !strings.Contains(errOut.String(), "hsctl reap") {
		t.Errorf("no command: %v, %q; want the usage", err, errOut.String())
	}
	if err := dispatch(context.Background(), []string{"frobnicate"}, &out, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("unknown command: %v, want errUsage", err)
	}
	if err := dispatch(context.Background(), []string{"reap", "-interval", "0"}, &out, &errOut); err == nil {
		t.Error("reap -interval 0: no error")
	}
}

func TestMigrate(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "sessions.db")
	for i := range 2 { // creating, then finding it in place
		var out bytes.Buffer
		err := dispatch(context.Background(), []string{"migrate", "-dsn", dsn, "-table", "hsctl_sessions"}, &out, &out)
		if err != nil {
			t.Fatalf("run %d: %v (%s)", i+1, err, out.String())
		}
		if want := "table hsctl_sessions ready on sqlite: 0 rows\n"; out.String() != want {
			t.Errorf("run %d: %q, want %q", i+1, out.String(), want)
		}
	}
	var out bytes.Buffer
	if err := dispatch(context.Background(), []string{"migrate", "-dsn", dsn, "-table", "no such"}, &out, &out); err == nil {
		t.Error("migrate -table 'no such': no error")
	}
}

// TestStats serves two Stores' metrics as the cluster demo does and reads
// them back with hsctl stats, before and after their memcached node dies.
func TestStats(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	durable := metrics.NewDurable(durabletest.NewMemory(), nil)
	reg := prometheus.NewRegistry()
	managers := map[string]*core.Manager{}
	for _, name := range []string{"gin", "echo"} {
		// No in-process reaper, so "no pass yet" holds.
		store, err := core.NewStore(core.StoreConfig{
			Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}, Durable: durable,
			Reaper: core.ReaperConfig{Interval: -1},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close(context.Background()) })
		c, err := metrics.NewCollector(metrics.Config{Store: store, Durable: durable, Labels: map[string]string{"server": name}})
		if err != nil {
			t.Fatal(err)
		}
		reg.MustRegister(c)
		if managers[name], err = core.New(core.Config{Store: store}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	ctx := context.Background()
	s, _ := managers["gin"].Load(ctx, "")
	s.Put("user", "ada")
	if err := managers["gin"].Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := managers["echo"].Load(ctx, s.Token()); err != nil {
			t.Fatal(err)
		}
	}
	stats := func() string {
		t.Helper()
		var out bytes.Buffer
		if err := dispatch(ctx, []string{"stats", "-url", srv.URL}, &out, &out); err != nil {
			t.Fatalf("stats: %v (%s)", err, out.String())
		}
		return out.String()
	}
	out := stats()
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "hit ratio") || !strings.Contains(out, "memcached "+mc.Addr+": breaker closed") ||
		!strings.Contains(out, "reaper: no pass yet") {
		t.Errorf("stats output:\n%s", out)
	}
	for _, l := range lines {
		// echo: three hits of three reads.
		if f := strings.Fields(l); len(f) > 2 && f[0] == "echo" && (f[1] != "100.0%" || f[2] != "3") {
			t.Errorf("echo's row %q, want a 100.0%% hit ratio and 3 hits", l)
		}
	}

	mc.Kill()
	for range 3 {
		_, _ = managers["echo"].Load(ctx, core.NewToken())
	}
	if out := stats(); !strings.Contains(out, "memcached "+mc.Addr+": BREAKER OPEN on echo") {
		t.Errorf("after the node died, stats output:\n%s", out)
	}

	var bad bytes.Buffer
	empty := httptest.NewServer(promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}))
	defer empty.Close()
	if err := dispatch(ctx, []string{"stats", "-url", empty.URL}, &bad, &bad); err == nil || !strings.Contains(err.Error(), "no hybridsession metrics") {
		t.Errorf("stats of an endpoint without our metrics: %v", err)
	}
}

// TestReapProgress: a pass of many batches reports its progress.
func TestReapProgress(t *testing.T) {
	t.Setenv(setup.EnvSealKeys, core.FormatSealKey(core.NewSealKey())) // the app servers' and the reaper's
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	dir := t.TempDir()
	opts := setup.Options{Name: "hsctl", Memcached: mc.Addr, DSN: filepath.Join(dir, "sessions.db")}
	env, err := setup.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		newSession(t, env.Durable, time.Now().Add(-48*time.Hour), "old"+string(rune('a'+i)))
	}
	if err := env.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	cfg := config{once: true, interval: time.Minute, batch: 1, progress: time.Nanosecond, progressOut: &progress}
	if err := run(context.Background(), opts, cfg, &out); err != nil {
		t.Fatalf("run: %v (%s)", err, out.String())
	}
	if !strings.Contains(out.String(), "examined=5 ") || !strings.Contains(out.String(), "deleted=5 ") {
		t.Errorf("summary %q, want 5 rows examined and deleted", out.String())
	}
	if n := strings.Count(progress.String(), "pass in progress"); n < 4 || !strings.Contains(progress.String(), "5 rows examined") {
		t.Errorf("progress (%d lines):\n%s\nwant a line per full batch, up to 5 rows", n, progress.String())
	}
}
