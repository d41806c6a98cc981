package cache

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/memcachedtest"
)

func testConfig(servers ...string) Config {
	return Config{
		Servers:          servers,
		Timeout:          100 * time.Millisecond,
		MaxIdleConns:     4,
		BreakerThreshold: 2,
		BreakerCooldown:  20 * time.Millisecond,
	}
}

func newCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// keysOn returns n keys that c's ring places on the node at addr.
func keysOn(t *testing.T, c *Cache, addr string, n int) []string {
	t.Helper()
	var keys []string
	for i := 0; len(keys) < n; i++ {
		if i > 100*n {
			t.Fatalf("no keys land on %s", addr)
		}
		k := fmt.Sprint("key-", i)
		if n := c.pick(k); n != nil && n.str == addr {
			keys = append(keys, k)
		}
	}
	return keys
}

// nodeState is one entry of Nodes.
type nodeState struct {
	Addr string
	Open bool
}

func node0(t *testing.T, c *Cache) nodeState {
	t.Helper()
	nodes := c.Nodes()
	if len(nodes) != 1 {
		t.Fatalf("Nodes() = %+v, want one", nodes)
	}
	for addr, open := range nodes {
		return nodeState{addr, open}
	}
	panic("unreachable")
}

// failures returns the consecutive failures of the first node.
func failures(c *Cache) int32 { return c.ring.Load().servers[0].failures.Load() }

func TestProtocolAnswers(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	cfg := testConfig(mc.Addr)
	cfg.Timeout = 2 * time.Second // a 2 MiB write on a loaded machine: only protocol answers are tested here
	c := newCache(t, cfg)
	ctx := context.Background()

	if it, err := c.Get(ctx, "k"); it != nil || err != nil {
		t.Fatalf("Get(missing) = %v, %v; want nil, nil", it, err)
	}
	if err := c.Add(ctx, "k", []byte("v1"), 60); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := c.Add(ctx, "k", []byte("v2"), 60); !errors.Is(err, memcache.ErrNotStored) {
		t.Fatalf("Add(present) = %v, want ErrNotStored", err)
	}
	it, err := c.Get(ctx, "k")
	if err != nil || !bytes.Equal(it.Value, []byte("v1")) || it.CasID == 0 {
		t.Fatalf("Get = %+v, %v", it, err)
	}
	if err := c.CompareAndSwap(ctx, "k", []byte("v3"), 60, it.CasID); err != nil {
		t.Fatalf("CompareAndSwap: %v", err)
	}
	if err := c.CompareAndSwap(ctx, "k", []byte("v4"), 60, it.CasID); !errors.Is(err, memcache.ErrCASConflict) {
		t.Fatalf("CompareAndSwap(old cas) = %v, want ErrCASConflict", err)
	}
	if err := c.CompareAndSwap(ctx, "gone", []byte("v"), 60, it.CasID); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("CompareAndSwap(missing) = %v, want ErrCacheMiss", err)
	}
	if err := c.Set(ctx, "k", []byte("v5"), 60); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if it, err := c.Get(ctx, "k"); err != nil || string(it.Value) != "v5" {
		t.Fatalf("Get after Set = %+v, %v", it, err)
	}

	// Answers that are errors but come from a live node.
	if err := c.Set(ctx, "big", make([]byte, 2<<20), 60); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Set(2 MiB) = %v, want a SERVER_ERROR answer", err)
	}
	if err := c.Set(ctx, "bad key", []byte("v"), 60); !errors.Is(err, memcache.ErrMalformedKey) {
		t.Fatalf("Set(bad key) = %v, want ErrMalformedKey", err)
	}
	if got := c.Errors(); got != 0 {
		t.Errorf("Errors() = %d after protocol answers only, want 0", got)
	}
	if n := node0(t, c); n.Open || n.Addr != mc.Addr || failures(c) != 0 {
		t.Errorf("node = %+v, %d failures", n, failures(c))
	}
}

func TestGetMultiWithOneNodeDown(t *testing.T) {
	a := memcachedtest.Start(t, memcachedtest.Options{})
	b := memcachedtest.Start(t, memcachedtest.Options{})
	c := newCache(t, testConfig(a.Addr, b.Addr))
	ctx := context.Background()
	onA, onB := keysOn(t, c, a.Addr, 10), keysOn(t, c, b.Addr, 10)
	keys := append(slices.Clone(onA), onB...)
	for _, k := range keys {
		if err := c.Set(ctx, k, []byte(k), 60); err != nil {
			t.Fatal(err)
		}
	}
	if items, err := c.GetMulti(ctx, append(slices.Clone(keys), "missing")); err != nil || len(items) != len(keys) {
		t.Fatalf("GetMulti = %d items, %v; want %d, nil", len(items), err, len(keys))
	}
	if items, err := c.GetMulti(ctx, nil); err != nil || len(items) != 0 {
		t.Fatalf("GetMulti(nil) = %v, %v", items, err)
	}

	b.Kill()
	items, err := c.GetMulti(ctx, keys)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GetMulti with a node down: err = %v, want ErrUnavailable", err)
	}
	if len(items) != len(onA) {
		t.Errorf("GetMulti with a node down returned %d items, want the %d of the live node", len(items), len(onA))
	}
	for _, k := range onA {
		if it := items[k]; it == nil || string(it.Value) != k {
			t.Errorf("item %s = %+v", k, it)
		}
	}
}

func TestBreakerOpensShortCircuitsAndCloses(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newCache(t, testConfig(mc.Addr))
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 60); err != nil {
		t.Fatal(err)
	}

	mc.Kill()
	for i := range 2 { // BreakerThreshold
		if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get %d on a killed node = %v, want ErrUnavailable", i, err)
		}
	}
	if n := node0(t, c); !n.Open {
		t.Fatalf("after 2 failures node = %+v, want open", n)
	}
	for range 5 {
		if err := c.Set(ctx, "k", []byte("v"), 60); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Set with the breaker open = %v, want ErrUnavailable", err)
		}
	}
	if got := c.Errors(); got != 2+5 {
		t.Fatalf("Errors() = %d, want 2 failures and 5 short circuits", got)
	}

	mc.Restart()
	waitFor(t, "the probe to close the breaker", func() bool { return !node0(t, c).Open })
	if n := failures(c); n != 0 {
		t.Errorf("failures = %d after the probe, want 0", n)
	}
	if err := c.Set(ctx, "k", []byte("again"), 60); err != nil {
		t.Fatalf("Set after the breaker closed: %v", err)
	}
}

func TestPausedNodeCostsOneTimeoutPerOp(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	cfg := testConfig(mc.Addr)
	var dials atomic.Int32
	cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	c := newCache(t, cfg)
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 60); err != nil {
		t.Fatal(err)
	}

	mc.Pause()
	// SIGSTOP lands asynchronously: wait until the process stops answering.
	probe := memcache.New(mc.Addr)
	probe.Timeout = 50 * time.Millisecond
	waitFor(t, "memcached to stop", func() bool { return probe.Ping() != nil })
	dials.Store(0)
	for i := range cfg.BreakerThreshold {
		start := time.Now()
		_, err := c.Get(ctx, "k")
		elapsed := time.Since(start)
		var ne net.Error
		if !errors.Is(err, ErrUnavailable) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Get %d on a paused node = %v, want ErrUnavailable wrapping a timeout", i, err)
		}
		if elapsed > 3*cfg.Timeout {
			t.Errorf("Get %d took %v, want about Timeout (%v)", i, elapsed, cfg.Timeout)
		}
	}
	// No retry after a timeout: the first Get used the pooled connection,
	// the second one dialed once.
	if got := dials.Load(); got != 1 {
		t.Errorf("%d dials for %d timed-out Gets, want 1", got, cfg.BreakerThreshold)
	}
	if !node0(t, c).Open {
		t.Fatal("breaker not open after BreakerThreshold timeouts")
	}
	before := c.Errors()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with the breaker open = %v", err)
	}
	if after := c.Errors(); after != before+1 {
		t.Fatalf("Get with the breaker open: Errors %d -> %d, want one more (a short circuit)", before, after)
	}

	mc.Resume()
	waitFor(t, "the probe to close the breaker", func() bool { return !node0(t, c).Open })
	if it, err := c.Get(ctx, "k"); err != nil || it == nil || string(it.Value) != "v" {
		t.Fatalf("Get after resume = %+v, %v; want the item kept through the pause", it, err)
	}
}

func TestStaleConnectionRetried(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newCache(t, testConfig(mc.Addr))
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 60); err != nil {
		t.Fatal(err)
	}
	mc.Restart() // the pooled connection now leads to a dead process
	if err := c.Set(ctx, "k", []byte("v"), 60); err != nil {
		t.Fatalf("Set after a restart: %v, want a retry on a fresh connection", err)
	}
	if got := c.Errors(); got != 0 {
		t.Errorf("Errors = %d, want 0", got)
	}
}

// A CAS id read before a restart is never used after it: the new process
// numbers its items from 1 again, so the same id can name another item.
func TestCASIDFromBeforeRestartConflicts(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newCache(t, testConfig(mc.Addr))
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("old"), 60); err != nil {
		t.Fatal(err)
	}
	old, err := c.Get(ctx, "k")
	if err != nil || old == nil {
		t.Fatalf("Get = %v, %v", old, err)
	}
	mc.Restart()
	if err := c.Set(ctx, "k", []byte("newer"), 60); err != nil { // the same CAS id as old's, in the new process
		t.Fatal(err)
	}
	err = c.CompareAndSwap(ctx, "k", []byte("stale"), 60, old.CasID)
	if !errors.Is(err, memcache.ErrCASConflict) {
		t.Fatalf("CAS with an id from before the restart = %v, want a conflict", err)
	}
	if it, _ := c.Get(ctx, "k"); it == nil || string(it.Value) != "newer" {
		t.Fatalf("the item after the stale CAS = %v, want newer", it)
	}
	cur, _ := c.Get(ctx, "k")
	if err := c.CompareAndSwap(ctx, "k", []byte("fresh"), 60, cur.CasID); err != nil {
		t.Fatalf("CAS with a fresh id = %v", err)
	}
}

func TestTLS(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{TLS: true})
	cfg := testConfig(mc.Addr)
	cfg.TLS = mc.TLS.ClientConfig(false) // ServerName empty: set to 127.0.0.1
	c := newCache(t, cfg)
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 60); err != nil {
		t.Fatalf("Set over TLS: %v", err)
	}
	if it, err := c.Get(ctx, "k"); err != nil || it == nil || string(it.Value) != "v" {
		t.Fatalf("Get over TLS = %+v, %v", it, err)
	}

	plain := newCache(t, testConfig(mc.Addr))
	if err := plain.Set(ctx, "k", []byte("v"), 60); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("plain-text Set to memcached -Z = %v, want ErrUnavailable", err)
	}

	// The probe speaks TLS too.
	mc.Stop()
	waitFor(t, "the breaker to open", func() bool {
		_, _ = c.Get(ctx, "k")
		return node0(t, c).Open
	})
	mc.Restart()
	waitFor(t, "the probe to close the breaker over TLS", func() bool { return !node0(t, c).Open })
	if err := c.Set(ctx, "k", []byte("v"), 60); err != nil {
		t.Fatalf("Set over TLS after the restart: %v", err)
	}
}

// TestInsecureSkipVerifyWarned: a TLS config that verifies nothing (here it
// talks to memcached -Z's self-signed certificate without its CA) works,
// and New says so once, at Warn; a verifying config says nothing.
func TestInsecureSkipVerifyWarned(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{TLS: true})
	for _, insecure := range []bool{true, false} {
		var logged bytes.Buffer
		cfg := testConfig(mc.Addr)
		cfg.Logger = slog.New(slog.NewTextHandler(&logged, nil))
		if cfg.TLS = mc.TLS.ClientConfig(false); insecure {
			cfg.TLS = &tls.Config{InsecureSkipVerify: true}
		}
		c := newCache(t, cfg)
		if err := c.Set(context.Background(), "k", []byte("v"), 60); err != nil {
			t.Fatalf("insecure=%t: Set over TLS: %v", insecure, err)
		}
		if warned := strings.Count(logged.String(), "level=WARN msg=\"hybridsession: MemcachedConfig.TLS.InsecureSkipVerify"); warned != map[bool]int{true: 1}[insecure] {
			t.Errorf("insecure=%t: %d warnings in %q", insecure, warned, logged.String())
		}
	}
}

func TestAddRemoveServer(t *testing.T) {
	a := memcachedtest.Start(t, memcachedtest.Options{})
	b := memcachedtest.Start(t, memcachedtest.Options{})
	c := newCache(t, testConfig(a.Addr))
	ctx := context.Background()
	if err := c.AddServer(b.Addr, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Nodes(), map[string]bool{a.Addr: false, b.Addr: false}; !maps.Equal(got, want) {
		t.Fatalf("Nodes() = %+v, want %+v", got, want)
	}
	onB := keysOn(t, c, b.Addr, 5)
	for _, k := range onB {
		if err := c.Set(ctx, k, []byte("v"), 60); err != nil {
			t.Fatal(err)
		}
	}
	rawA, rawB := memcache.New(a.Addr), memcache.New(b.Addr)
	for _, k := range onB {
		if _, err := rawB.Get(k); err != nil {
			t.Errorf("key %s not on the added node: %v", k, err)
		}
	}

	for _, bad := range []string{b.Addr, "no-port", ""} {
		if err := c.AddServer(bad, 1); err == nil {
			t.Errorf("AddServer(%q) succeeded, want an error", bad)
		}
	}
	if err := c.RemoveServer(b.Addr); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveServer(b.Addr); err == nil {
		t.Error("RemoveServer of a removed node succeeded")
	}
	if n := node0(t, c); n.Addr != a.Addr {
		t.Fatalf("node after RemoveServer = %+v", n)
	}
	for _, k := range onB {
		if err := c.Set(ctx, k, []byte("v"), 60); err != nil {
			t.Fatal(err)
		}
		if _, err := rawA.Get(k); err != nil {
			t.Errorf("key %s not on the remaining node after RemoveServer: %v", k, err)
		}
	}
}

func TestNewAndClose(t *testing.T) {
	for name, cfg := range map[string]Config{
		"unresolvable server": testConfig("no-port"),
		"duplicate server":    testConfig("127.0.0.1:1", "127.0.0.1:1"),
		"zero timeout":        func() Config { c := testConfig(); c.Timeout = 0; return c }(),
		"zero threshold":      func() Config { c := testConfig(); c.BreakerThreshold = 0; return c }(),
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded, want an error", name)
		}
	}
	if _, err := newCache(t, testConfig()).Get(context.Background(), "k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get with no servers = %v, want ErrUnavailable", err)
	}

	// Close stops a probe that would otherwise wait an hour.
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	cfg := testConfig(mc.Addr)
	cfg.BreakerThreshold, cfg.BreakerCooldown = 1, time.Hour
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mc.Kill()
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrUnavailable) || !node0(t, c).Open {
		t.Fatalf("Get on a killed node = %v, want the breaker open", err)
	}
	done := make(chan struct{})
	go func() { c.Close(); c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the probe")
	}
}

func TestExpiration(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const days30 = 30 * 24 * 3600
	tests := []struct {
		name    string
		expires time.Time
		want    int32
	}{
		{"long past", now.Add(-time.Hour), 1},
		{"now", now, 1},
		{"1ns", now.Add(time.Nanosecond), 1},
		{"1s", now.Add(time.Second), 1},
		{"1.5s rounds up", now.Add(1500 * time.Millisecond), 2},
		{"30 days: relative", now.Add(days30 * time.Second), days30},
		{"30 days + 1ns: absolute", now.Add(days30*time.Second + time.Nanosecond), int32(now.Unix()) + days30 + 1},
		{"31 days: absolute", now.Add(31 * 24 * time.Hour), int32(now.Unix()) + 31*24*3600 + 1},
		{"after 2038: capped", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt32},
		{"beyond Duration's range", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt32},
	}
	for _, tt := range tests {
		if got := Expiration(now, tt.expires); got != tt.want {
			t.Errorf("%s: Expiration = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestExpirationOnServer shows why the boundary matters: memcached reads an
// exptime above 30 days as a Unix time.
func TestExpirationOnServer(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newCache(t, testConfig(mc.Addr))
	ctx := context.Background()
	now := time.Now()
	if err := c.Set(ctx, "k", []byte("v"), Expiration(now, now.Add(31*24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if it, err := c.Get(ctx, "k"); err != nil || it == nil {
		t.Fatalf("item expiring in 31 days: Get = %v, %v", it, err)
	}
	if err := c.Set(ctx, "k", []byte("v"), 31*24*3600); err != nil {
		t.Fatal(err)
	}
	if it, err := c.Get(ctx, "k"); err != nil || it != nil {
		t.Fatalf("31 days as relative seconds (a 1970 Unix time): Get = %v, %v; want a miss", it, err)
	}
}

type span struct {
	op, addr string
	ctxOK    bool
	err      error
}

type recorder struct {
	mu    sync.Mutex
	spans []span
}

type ctxKey struct{}

func (r *recorder) StartCacheOp(ctx context.Context, op, addr string) func(error) {
	return func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.spans = append(r.spans, span{op, addr, ctx.Value(ctxKey{}) == "request", err})
	}
}

func TestTracer(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	rec := &recorder{}
	cfg := testConfig(mc.Addr)
	cfg.Tracer = rec.StartCacheOp
	c := newCache(t, cfg)
	ctx := context.WithValue(context.Background(), ctxKey{}, "request")

	_, _ = c.Get(ctx, "k")
	_ = c.Add(ctx, "k", []byte("v"), 60)
	_ = c.Add(ctx, "k", []byte("v"), 60)
	_ = c.Set(ctx, "k", []byte("v"), 60)
	_ = c.CompareAndSwap(ctx, "k", []byte("v"), 60, 1<<60)
	_, _ = c.GetMulti(ctx, []string{"k", "l"})
	mc.Kill()
	for range 3 { // two failures, then a short circuit, which is not traced
		_ = c.Set(ctx, "k", []byte("v"), 60)
	}

	want := []struct {
		op  string
		err error
	}{
		{"get", memcache.ErrCacheMiss}, {"add", nil}, {"add", memcache.ErrNotStored}, {"set", nil},
		{"cas", memcache.ErrCASConflict}, {"get_multi", nil},
		{"set", ErrUnavailable}, {"set", ErrUnavailable},
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.spans) != len(want) {
		t.Fatalf("spans = %+v, want %d", rec.spans, len(want))
	}
	for i, s := range rec.spans {
		w := want[i]
		if s.op != w.op || s.addr != mc.Addr || !s.ctxOK || !errors.Is(s.err, w.err) || (w.err == nil) != (s.err == nil) {
			t.Errorf("span %d = %+v, want op %s, addr %s, the request's ctx, err %v", i, s, w.op, mc.Addr, w.err)
		}
	}
}
