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
	"github.com/hybridsession/hybridsession/gormstore"
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
	t.Setenv(setup.EnvSealKeys, "")
	if err := dispatch(context.Background(), []string{"reseal"}, &out, &errOut); !errors.Is(err, errNoKeys) {
		t.Errorf("reseal without keys: %v, want errNoKeys", err)
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
		// ReapExternal: no in-process reaper, so "no pass yet" holds.
		store, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}, Durable: durable, ReapMode: core.ReapExternal})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close(context.Background()) })
		c, err := metrics.NewCollector(metrics.Config{Store: store, Reaper: durable, Labels: map[string]string{"server": name}})
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

// TestReseal rotates the seal key: sessions written under the old key are
// resealed by hsctl reseal, after which a ring without the old key reads
// every one of them, from the database and from memcached.
func TestReseal(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	dsn := filepath.Join(t.TempDir(), "sessions.db")
	oldKey, newKey := core.NewSealKey(), core.NewSealKey()
	ring := func(keys ...[]byte) string {
		var parts []string
		for _, k := range keys {
			parts = append(parts, core.FormatSealKey(k))
		}
		return strings.Join(parts, ",")
	}
	open := func(keys ...[]byte) (*core.Manager, func()) {
		t.Helper()
		db, err := setup.OpenDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		durable, err := gormstore.New(db, gormstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		store, err := core.NewStore(core.StoreConfig{
			Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
			Durable:   durable, Seal: core.SealConfig{Keys: keys}, ReapMode: core.ReapExternal,
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := core.New(core.Config{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		return m, func() {
			_ = store.Close(context.Background())
			if sqlDB, err := db.DB(); err == nil {
				_ = sqlDB.Close()
			}
		}
	}
	ctx := context.Background()
	m, done := open(oldKey)
	var tokens []string
	for i := range 30 {
		s, _ := m.Load(ctx, "")
		s.Put("n", i)
		if err := m.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, s.Token())
	}
	done()

	t.Setenv(setup.EnvSealKeys, ring(newKey, oldKey))
	var out, errOut bytes.Buffer
	if err := dispatch(ctx, []string{"reseal", "-dsn", dsn, "-memcached", mc.Addr, "-page", "7"}, &out, &errOut); err != nil {
		t.Fatalf("reseal: %v (%s)", err, errOut.String())
	}
	if !strings.Contains(out.String(), "resealed 60 ") { // 30 rows and 30 memcached copies
		t.Errorf("reseal output %q, want 60 resealed", out.String())
	}

	m, done = open(newKey) // the old key has left the ring
	defer done()
	for i, tok := range tokens {
		if s, _ := m.Load(ctx, tok); s.IsNew() || s.GetInt("n") != i {
			t.Fatalf("session %d unreadable from memcached after the reseal", i)
		}
	}
	mc.Restart() // and from the database alone
	for i, tok := range tokens {
		if s, _ := m.Load(ctx, tok); s.IsNew() || s.GetInt("n") != i {
			t.Fatalf("session %d unreadable from the database after the reseal", i)
		}
	}
}
