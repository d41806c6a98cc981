package core_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/adaptertest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newManager returns a Manager on a memcached-only Store (the middleware
// does not care which tiers there are).
func newManager(t *testing.T, mc *memcachedtest.Server, mod func(*core.Config)) *core.Manager {
	t.Helper()
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, BreakerCooldown: 20 * time.Millisecond},
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	cfg := core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}}
	if mod != nil {
		mod(&cfg)
	}
	m, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func jarClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 5 * time.Second}
}

func do(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, r *http.Response) string {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerErrorsGoToErrorHandlerNotAfterBody(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	m := newManager(t, mc, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/inc", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Put("n", getInt(s, "n")+1)
		fmt.Fprint(w, "handler body")
	})
	srv := httptest.NewServer(m.Handler(mux))
	defer srv.Close()
	c := jarClient(t)
	if r := do(t, c, srv.URL+"/inc"); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	mc.Stop()                // no durable tier: the store is unavailable
	for i := 0; i < 5; i++ { // through the breaker opening and after
		r := do(t, c, srv.URL+"/inc")
		b := body(t, r)
		if r.StatusCode != http.StatusServiceUnavailable || strings.Contains(b, "handler body") {
			t.Fatalf("request %d: status %d body %q, want a bare 503", i, r.StatusCode, b)
		}
	}
	mc.Restart()
	// After the breaker's probe closes it, requests succeed again (a new session).
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := do(t, c, srv.URL+"/inc")
		if r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after memcached came back", r.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	bad := []core.Config{
		{},
		{Store: store, IdleTimeout: time.Minute, TouchInterval: time.Minute},
		{Store: store, IdleTimeout: -1},
		{Store: store, Cookie: core.CookieConfig{Name: "bad name"}},
		{Store: store, TokenHeader: "X-Token:"},
		{Store: store, TokenHeader: "Authorization", TokenResponseHeader: "Session Token"},
		// Cookies browsers would drop (RFC 6265bis prefixes, matched without regard to case).
		{Store: store, Cookie: core.CookieConfig{Name: "__Host-s", Insecure: true}},
		{Store: store, Cookie: core.CookieConfig{Name: "__host-s", Path: "/app"}},
		{Store: store, Cookie: core.CookieConfig{Name: "__HOST-s", Domain: "example.com"}},
		{Store: store, Cookie: core.CookieConfig{Name: "__Secure-s", Insecure: true}},
	}
	for i, cfg := range bad {
		if _, err := core.New(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	for _, cc := range []core.CookieConfig{{Name: "__Host-session"}, {Name: "__Secure-s", Path: "/app", Domain: "example.com"}} {
		if _, err := core.New(core.Config{Store: store, Cookie: cc}); err != nil {
			t.Errorf("%+v refused: %v", cc, err)
		}
	}
	if _, err := core.NewStore(core.StoreConfig{}); err == nil {
		t.Errorf("NewStore without tiers: %v", err)
	}
	if _, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, KeyPrefix: "a b"}}); err == nil {
		t.Error("key prefix with a space accepted")
	}
}

// harness serves the conformance suite's routes through Manager.Handler.
var harness = adaptertest.Harness{
	Stream: true, EarlyHints: true, Hijack: true,
	Serve: func(t testing.TB, ms []*core.Manager, skip string, routes []adaptertest.Route) string {
		mux := http.NewServeMux()
		for _, rt := range routes {
			mux.HandleFunc(rt.Path, func(w http.ResponseWriter, r *http.Request) {
				s := core.FromContext(r.Context())
				if rt.Manager != nil {
					s = rt.Manager.FromContext(r.Context())
				}
				a := r.URL.Query().Get("a")
				switch rt.Mode {
				case adaptertest.ModeString:
					io.WriteString(w, rt.Do(s, a))
				case adaptertest.ModeNothing:
					rt.Do(s, a)
				case adaptertest.ModeError:
					rt.Do(s, a)
					http.Error(w, "Forbidden", http.StatusForbidden)
				case adaptertest.ModeLate:
					io.WriteString(w, "late")
					http.NewResponseController(w).Flush()
					rt.Do(s, a)
				case adaptertest.ModePanic:
					rt.Do(s, a)
					panic("boom")
				case adaptertest.ModeStream:
					body := rt.Do(s, a)
					w.WriteHeader(http.StatusOK)
					http.NewResponseController(w).Flush()
					io.WriteString(w, body)
				case adaptertest.ModeEarlyHints:
					w.Header().Set("Link", "</app.css>; rel=preload; as=style")
					w.WriteHeader(http.StatusEarlyHints)
					io.WriteString(w, rt.Do(s, a))
				case adaptertest.ModeHijack:
					body := rt.Do(s, a)
					conn, bw, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Errorf("hijack: %v", err)
						return
					}
					defer conn.Close()
					fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
					bw.Flush()
				}
			})
		}
		var h http.Handler = mux
		for i := len(ms) - 1; i >= 0; i-- {
			h = ms[i].Handler(h)
		}
		if skip != "" { // skipped paths are routed around the middleware
			root := http.NewServeMux()
			root.Handle(skip, mux)
			root.Handle("/", h)
			h = root
		}
		srv := httptest.NewServer(recoverer(h))
		t.Cleanup(srv.Close)
		return srv.URL
	},
}

// recoverer answers 500 when next panics, as recovery middleware does.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if recover() != nil {
				http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, harness, adaptertest.Options{})
}

// TestHeaderToken reads the token from the configured header (the
// credentials of "Bearer <token>" for Authorization, the bare value
// otherwise) and returns new tokens in the response header, not a cookie.
func TestHeaderToken(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	bearer := newManager(t, mc, func(c *core.Config) { c.TokenHeader = "authorization" })
	named := newManager(t, mc, func(c *core.Config) { c.TokenHeader = "X-Session-Token" })
	ctx := context.Background()
	s, _ := bearer.Load(ctx, "")
	s.Put("k", 1)
	got := http.Header{}
	if err := bearer.SaveTo(ctx, s, true, got.Add); err != nil {
		t.Fatal(err)
	}
	tok := s.Token()
	s2, _ := named.Load(ctx, "")
	s2.Put("k", 2)
	if err := named.Save(ctx, s2); err != nil {
		t.Fatal(err)
	}
	if got.Get("Session-Token") != tok || got.Get("Set-Cookie") != "" || got.Get("Cache-Control") != "no-store" {
		t.Errorf("SaveTo added %v, want the token in Session-Token and no cookie", got)
	}
	tests := []struct {
		m     *core.Manager
		v     string
		found bool
	}{
		{bearer, "Bearer " + tok, true},
		{bearer, "bearer  " + tok + " ", true},
		{bearer, "Basic " + tok, false},
		{bearer, tok, false},
		{bearer, "", false},
		{named, " " + s2.Token() + " ", true},
		{named, "Bearer " + s2.Token(), false},
		{named, tok, false}, // another Manager's token (issue 23, finding 3)
		{bearer, "Bearer " + s2.Token(), false},
	}
	for _, tt := range tests {
		s, _, err := tt.m.LoadFrom(ctx, func(name string) string {
			if http.CanonicalHeaderKey(name) == "Authorization" && tt.m == bearer || name == "X-Session-Token" && tt.m == named {
				return tt.v
			}
			return ""
		})
		if err != nil || s.IsNew() == tt.found {
			t.Errorf("%q: found %t (%v), want %t", tt.v, !s.IsNew(), err, tt.found)
		}
	}
}
