package main

import (
	"bytes"
	"context"
	"flag"
	"maps"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// hsctl runs the command line args as main does and returns its exit
// status and output.
func hsctl(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	status = execute(context.Background(), args, &out, &errOut)
	return status, out.String(), errOut.String()
}

// TestHelp: help asked for, in every form, is usage on stdout and exit
// status 0.
func TestHelp(t *testing.T) {
	t.Setenv(setup.EnvDSN, "postgres://app:s3cret@db/app") // help must not show it
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"hsctl reap", "hsctl migrate", "hsctl stats", "hsctl version", "exit status:"}},
		{[]string{"-h"}, []string{"hsctl reap", "exit status:"}},
		{[]string{"-help"}, []string{"hsctl reap", "exit status:"}},
		{[]string{"help"}, []string{"hsctl reap", "hsctl help", "exit status:"}},
		{[]string{"help", "help"}, []string{"hsctl reap"}},
		{[]string{"help", "reap"}, []string{"usage: hsctl reap", "-dsn", "-table", "-memcached", "-once", setup.EnvSealKeys, "exit status:"}},
		{[]string{"help", "migrate"}, []string{"usage: hsctl migrate", "-dsn", "-table", "exit status:"}},
		{[]string{"help", "stats"}, []string{"usage: hsctl stats", "-url", "-watch", "exit status:"}},
		{[]string{"reap", "-h"}, []string{"usage: hsctl reap", "-table"}},
		{[]string{"migrate", "--help"}, []string{"usage: hsctl migrate", "-table"}},
		{[]string{"-h", "stats"}, []string{"usage: hsctl stats"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			status, out, errOut := hsctl(t, tc.args...)
			if status != exitOK || errOut != "" {
				t.Errorf("status %d, stderr %q; want 0 and nothing", status, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("stdout shows %s:\n%s", setup.EnvDSN, out)
			}
		})
	}
}

// TestUsageErrors: a command line hsctl does not understand is explained
// on stderr, with exit status 2, and nothing on stdout.
func TestUsageErrors(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "sessions.db")
	t.Setenv(setup.EnvSealKeys, core.FormatSealKey(core.NewSealKey()))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "hsctl reap"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "reap", "migrate"}, "help takes one command"},
		{[]string{"version", "-v"}, "version takes no arguments"},
		{[]string{"reap", "-nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"stats", "extra"}, `unexpected argument "extra"`},
		{[]string{"reap", "-dsn", dsn, "-interval", "0"}, "-interval and -batch must be positive"},
		{[]string{"reap", "-dsn", dsn, "-batch", "-1"}, "-interval and -batch must be positive"},
		{[]string{"migrate", "-dsn", dsn, "-table", "no such"}, "-table: gormstore: invalid configuration"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			status, out, errOut := hsctl(t, tc.args...)
			if status != exitUsage || out != "" || !strings.Contains(errOut, tc.want) {
				t.Errorf("status %d, stdout %q, stderr:\n%s\nwant 2, nothing, and %q", status, out, errOut, tc.want)
			}
		})
	}
}

// unsetenv unsets the environment variable key for the rest of the test.
func unsetenv(t *testing.T, key string) {
	t.Setenv(key, "") // restored after the test
	os.Unsetenv(key)
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		status, out, errOut := hsctl(t, arg)
		if want := version() + "\n"; status != exitOK || out != want || errOut != "" {
			t.Errorf("%s: %d, %q, %q; want 0, %q", arg, status, out, errOut, want)
		}
	}
	_, out, _ := hsctl(t, "version")
	if !strings.Contains(out, runtime.Version()) {
		t.Errorf("version %q does not name %s", out, runtime.Version())
	}
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{nil, false, "hsctl (devel), built with " + runtime.Version()},
		{&debug.BuildInfo{}, true, "hsctl (devel), built with " + runtime.Version()},
		{&debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v1.2.3"}}, true, "hsctl v1.2.3, built with go1.99.1"},
	} {
		if got := versionLine(tc.bi, tc.ok); got != tc.want {
			t.Errorf("versionLine(%+v, %v) = %q, want %q", tc.bi, tc.ok, got, tc.want)
		}
	}
}

// TestDatabaseFlags: the database commands take the same database flags.
func TestDatabaseFlags(t *testing.T) {
	var want map[string]string // flag → usage
	for _, name := range []string{"reap", "migrate"} {
		cmd, _ := lookup(name)
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		cmd.flags(fs)
		got := map[string]string{}
		for _, f := range []string{"dsn", "table"} {
			if fl := fs.Lookup(f); fl != nil {
				got[f] = fl.Usage + " default " + fl.DefValue
			}
		}
		if len(got) != 2 || (want != nil && !maps.Equal(got, want)) {
			t.Errorf("%s's database flags: %v, want -dsn and -table as %v", name, got, want)
		}
		want = got
	}
}

// TestRefusesWithoutDatabase: with neither -dsn nor HYBRIDSESSION_DSN the
// database commands do nothing (no ./sessions.db) and exit with status 2.
func TestRefusesWithoutDatabase(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(setup.EnvSealKeys, core.FormatSealKey(core.NewSealKey()))
	for _, env := range []string{"unset", "", " "} {
		if t.Setenv(setup.EnvDSN, env); env == "unset" {
			unsetenv(t, setup.EnvDSN)
		}
		for _, args := range [][]string{{"reap", "-once", "-memcached", ""}, {"migrate"}, {"migrate", "-dsn", ""}} {
			status, out, errOut := hsctl(t, args...)
			if status != exitUsage || out != "" || !strings.Contains(errOut, "no database: give -dsn or set "+setup.EnvDSN) {
				t.Errorf("%s=%q, %q: status %d, stdout %q, stderr %q; want 2 and no database", setup.EnvDSN, env, args, status, out, errOut)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("files made: %v", entries)
	}
}

func TestMigrate(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "sessions.db")
	for i := range 2 { // creating, then finding it in place
		status, out, errOut := hsctl(t, "migrate", "-dsn", dsn, "-table", "hsctl_sessions")
		if status != exitOK {
			t.Fatalf("run %d: status %d (%s)", i+1, status, errOut)
		}
		if want := "table hsctl_sessions ready on sqlite: 0 rows\n"; out != want {
			t.Errorf("run %d: %q, want %q", i+1, out, want)
		}
	}
	// From the environment, and without seal keys: migrate needs none.
	unsetenv(t, setup.EnvSealKeys)
	t.Setenv(setup.EnvDSN, dsn)
	if status, out, errOut := hsctl(t, "migrate"); status != exitOK || out != "table hybrid_sessions ready on sqlite: 0 rows\n" {
		t.Errorf("migrate with %s: %d, %q, %q", setup.EnvDSN, status, out, errOut)
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

func TestPassDuration(t *testing.T) {
	for _, tc := range []struct {
		seconds float64
		want    time.Duration
		ok      bool
	}{
		{0, 0, true},
		{0.031, 31 * time.Millisecond, true},
		{3600, time.Hour, true},
		{-1, 0, false},
		{math.NaN(), 0, false},
		{math.Inf(1), 0, false},
		{time.Duration(math.MaxInt64).Seconds(), 0, false}, // a duration measured from a zero time
		{1e10, 0, false},
	} {
		if got, ok := passDuration(tc.seconds); ok != tc.ok || got.Round(time.Millisecond) != tc.want {
			t.Errorf("passDuration(%g) = %v, %v; want %v, %v", tc.seconds, got, ok, tc.want, tc.ok)
		}
	}
}

// heldReaps is a durable tier whose Reap calls each wait until the test
// closes the channel they send on entered, then claim no row.
type heldReaps struct {
	durable.Tier
	entered chan chan struct{}
}

func (h *heldReaps) Reap(context.Context, time.Time, int, durable.Judge) (int, error) {
	release := make(chan struct{})
	h.entered <- release
	<-release
	return 0, nil
}

// TestStatsReaperPassOfLostStart: two reapers share a metrics.Durable and
// their passes overlap, the second starting before the first ends; the
// first's end clears the pass's start time, so the second's duration is
// measured from a zero time and saturates. hsctl stats once printed it as
// "0 rows in -2562047h47m16s"; it prints no negative duration.
func TestStatsReaperPassOfLostStart(t *testing.T) {
	tier := &heldReaps{Tier: durabletest.NewMemory(), entered: make(chan chan struct{})}
	observed := metrics.NewDurable(tier, nil)
	judge := func(context.Context, []durable.Record) ([]durable.Verdict, error) { return nil, nil }
	now := time.Now()
	done := make(chan error, 2)
	var release [2]chan struct{}
	for i := range release {
		go func() {
			_, err := observed.Reap(context.Background(), now.Add(time.Duration(i)*time.Second), 10, judge)
			done <- err
		}()
		release[i] = <-tier.entered
	}
	for _, r := range release {
		close(r)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("LastReapPass: %+v", observed.LastReapPass())

	store, err := core.NewStore(core.StoreConfig{
		Durable: observed, Seal: core.SealConfig{Keys: [][]byte{core.NewSealKey()}}, Reaper: core.ReaperConfig{Interval: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	c, err := metrics.NewCollector(metrics.Config{Store: store, Durable: observed})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	status, out, errOut := hsctl(t, "stats", "-url", srv.URL)
	if status != exitOK {
		t.Fatalf("stats: %d, %s", status, errOut)
	}
	var line string
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "reaper: ") {
			line = l
		}
	}
	if !strings.HasPrefix(line, "reaper: last pass ended ") || !strings.Contains(line, " 0 rows") || strings.Contains(line, " in -") {
		t.Errorf("reaper line %q, want its 0 rows and no negative duration", line)
	}
	if d := observed.LastReapPass().Duration; d == time.Duration(math.MaxInt64) && !strings.Contains(line, "duration unknown") {
		t.Errorf("reaper line %q, want the saturated duration shown as unknown", line)
	}
}

// TestReapProgress: a pass of many batches reports its progress.
func TestReapProgress(t *testing.T) {
	keys := sealKeysForTest(t)
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	dsn := filepath.Join(t.TempDir(), "sessions.db")
	env, err := setup.Open(setup.Options{Name: "hsctl", Memcached: mc.Addr, DSN: dsn})
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
	cfg := reapConfig(dsn, mc.Addr, keys)
	cfg.batch, cfg.progress, cfg.progressOut = 1, time.Nanosecond, &progress
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("run: %v (%s)", err, out.String())
	}
	if !strings.Contains(out.String(), "examined=5 ") || !strings.Contains(out.String(), "deleted=5 ") {
		t.Errorf("summary %q, want 5 rows examined and deleted", out.String())
	}
	if n := strings.Count(progress.String(), "pass in progress"); n < 4 || !strings.Contains(progress.String(), "5 rows examined") {
		t.Errorf("progress (%d lines):\n%s\nwant a line per full batch, up to 5 rows", n, progress.String())
	}
}
