package integration

// TLS to memcached, against Debian's memcached started with -Z and
// certificates generated when the test runs.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// tlsStack is a stack whose memcached speaks TLS only.
func tlsStack(t *testing.T, b backend, opts memcachedtest.Options) *stack {
	t.Helper()
	st := newStack(t, b)
	st.mc.Kill()
	st.mc = memcachedtest.Start(t, opts)
	return st
}

func withTLS(cfg *tls.Config, keys ...[]byte) func(*core.StoreConfig) {
	return func(c *core.StoreConfig) {
		c.Memcached.TLS = cfg
		c.Seal.Keys = keys
	}
}

func TestTLSPlainTextClientRefused(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{TLS: true})
	plain := memcache.New(mc.Addr)
	plain.Timeout = time.Second
	if err := plain.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err == nil {
		t.Fatal("a plain-text client could write to memcached -Z")
	}
	if _, err := plain.Get("k"); err == nil {
		t.Fatal("a plain-text client could read from memcached -Z")
	}
}

func TestTLSMutual(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := tlsStack(t, b, memcachedtest.Options{RequireClientCert: true})
		key := core.NewSealKey()
		m := st.manager(t, withTLS(st.mc.TLS.ClientConfig(true), key), nil)
		token := put(t, m, "", "user", "ada")
		if got := getString(load(t, m, token), "user"); got != "ada" {
			t.Fatalf("user = %q", got)
		}
		s := m.Store().Stats()
		if s.CacheHits == 0 || s.CacheErrors != 0 {
			t.Fatalf("stats over mutual TLS: hits=%d errors=%d", s.CacheHits, s.CacheErrors)
		}

		// Without a client certificate, or with one from another authority,
		// memcached refuses the connection: the breaker opens and the
		// database serves (nobody is logged out).
		for name, certs := range map[string][]tls.Certificate{
			"no client certificate": nil,
			"untrusted certificate": {st.mc.TLS.UntrustedClientCert(t)},
		} {
			cfg := st.mc.TLS.ClientConfig(false)
			cfg.Certificates = certs
			other := st.manager(t, withTLS(cfg, key), nil)
			if got := getString(load(t, other, token), "user"); got != "ada" {
				t.Fatalf("%s: the database did not serve the session: user=%q", name, got)
			}
			if s := other.Store().Stats(); s.CacheHits != 0 || s.CacheErrors == 0 {
				t.Fatalf("%s: hits=%d errors=%d, want the connection refused", name, s.CacheHits, s.CacheErrors)
			}
		}
	})
}

// TestTLSBreakerProbeAddServerReaper: the breaker opens when the TLS node
// goes down and its probe (a TLS "version") closes it when it is back; a
// TLS node added at run time takes keys; the reaper reads over TLS.
func TestTLSBreakerProbeAddServerReaper(t *testing.T) {
	b := backends(t)[0]
	st := tlsStack(t, b, memcachedtest.Options{TLS: true})
	second := memcachedtest.Start(t, memcachedtest.Options{TLS: true})
	roots := x509.NewCertPool()
	roots.AddCert(st.mc.TLS.CA)
	roots.AddCert(second.TLS.CA)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	key := core.NewSealKey()
	m := st.manager(t, withTLS(cfg, key), nil)
	store := m.Store()
	token := put(t, m, "", "n", 1)

	st.mc.Stop()
	for open, _ := nodeOpen(store, st.mc.Addr); !open; open, _ = nodeOpen(store, st.mc.Addr) {
		load(t, m, token) // served by the database
	}
	st.mc.Restart()
	awaitBreaker(t, store, st.mc.Addr, false) // the probe closes it over TLS
	if got := getInt(load(t, m, token), "n"); got != 1 {
		t.Fatalf("n = %d after the restart", got)
	}

	if err := store.AddServer(second.Addr, 1); err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for i := range 40 {
		tokens = append(tokens, put(t, m, "", "n", i))
	}
	// Look at the added node directly, over TLS: it holds some sessions.
	raw := memcache.New(second.Addr)
	raw.DialContext = (&tls.Dialer{Config: cfg}).DialContext
	onSecond := 0
	for _, tok := range tokens {
		if _, err := raw.Get(mkey(tok)); err == nil {
			onSecond++
		}
	}
	if onSecond == 0 || onSecond == len(tokens) {
		t.Fatalf("the added TLS node holds %d of %d sessions", onSecond, len(tokens))
	}
	for addr, open := range store.Stats().Nodes {
		if open {
			t.Fatalf("node %s has an open breaker", addr)
		}
	}
	for i, tok := range tokens {
		if got := getInt(load(t, m, tok), "n"); got != i {
			t.Fatalf("session %d reads n=%d", i, got)
		}
	}

	// The reaper asks memcached over TLS: a row that looks expired while
	// the session lives in memcached is extended, not deleted.
	behind := memcachedOnlyTLS(t, st, cfg, key, second.Addr)
	tok := put(t, m, "", "n", 0)
	for i := 1; i <= 8; i++ {
		st.clock.Advance(5 * time.Minute)
		put(t, behind, tok, "n", i)
	}
	before, _ := st.record(t, tok)
	if before.ExpiresAt.After(st.clock.Now()) {
		t.Fatal("the row did not expire: the test needs the reaper to ask memcached")
	}
	if rep := reapOnce(t, store, core.ReaperConfig{}); rep.Extended != 1 {
		t.Fatalf("reaper over TLS: %+v, want the row extended", rep)
	}
	if after, _ := st.record(t, tok); !after.ExpiresAt.After(st.clock.Now()) || after.Version != before.Version+1 {
		t.Fatalf("after the reaper the row (version %d, expires %v) was not extended", after.Version, after.ExpiresAt)
	}
}

// memcachedOnlyTLS is memcachedOnly over TLS, on the ring the main store
// has after its AddServer.
func memcachedOnlyTLS(t *testing.T, st *stack, cfg *tls.Config, key []byte, added string) *core.Manager {
	t.Helper()
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{st.mc.Addr, added}, TLS: cfg},
		Seal:      core.SealConfig{Keys: [][]byte{key}},
		Logger:    quiet,
		Clock:     st.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
