package core_test

// The examples and tests of docs/testing.md: testing an application's
// handlers on an in-memory Store, with nothing to start.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// newTestManager returns a Manager on a fresh in-memory Store: no memcached,
// no database, nothing to start or clean up but the Store itself.
func newTestManager(t testing.TB) *core.Manager {
	t.Helper()
	store, err := core.NewStore(core.StoreConfig{
		Durable: durabletest.NewMemory(),
		Seal:    core.SealConfig{Keys: [][]byte{core.NewSealKey()}}, // sealed as in production, and no warning
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cartApp is the application under test: POST /cart?item=x adds x to the
// session's cart, GET /cart lists it.
func cartApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		items, _ := core.Value[[]string](s, "cart")
		s.Put("cart", append(items, r.FormValue("item")))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
		items, _ := core.Value[[]string](core.FromContext(r.Context()), "cart")
		fmt.Fprint(w, strings.Join(items, ","))
	})
	return mux
}

// Testing handlers without memcached or a database: a Store on
// durabletest.NewMemory, requests through httptest carrying the cookie of
// the first response, and the session read back with Manager.Load.
func Example_testingHandlers() {
	store, err := core.NewStore(core.StoreConfig{
		Durable: durabletest.NewMemory(),
		Seal:    core.SealConfig{Keys: [][]byte{core.NewSealKey()}}, // sealed as in production, and no warning
	})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())
	// Insecure: httptest requests are plain HTTP.
	m, err := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}})
	if err != nil {
		panic(err)
	}
	h := m.Handler(cartApp())

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/cart?item=book", nil))
	cookie := rec.Result().Cookies()[0] // the new session's

	req := httptest.NewRequest(http.MethodGet, "/cart", nil)
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())

	s, err := m.Load(context.Background(), cookie.Value)
	if err != nil {
		panic(err)
	}
	items, _ := core.Value[[]string](s, "cart")
	fmt.Println(s.IsNew(), items)
	// Output:
	// 200 book
	// false [book]
}

// send serves one request to h with cookie, when not nil.
func send(h http.Handler, method, target string, cookie *http.Cookie) *http.Response {
	req := httptest.NewRequest(method, target, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

// Testing login and logout: a session seeded through the Manager, a login
// that renews its token (RenewToken), a logout that destroys it (Destroy).
func Example_testingLogout() {
	ctx := context.Background()
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory(), Seal: core.SealConfig{Keys: [][]byte{core.NewSealKey()}}})
	defer store.Close(ctx)
	m, _ := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}})

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.RenewToken()
		s.Put("user", r.FormValue("user"))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := core.FromContext(r.Context()).Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), core.StatusCode(err))
		}
	})
	h := m.Handler(mux)

	// A visitor who already has a cart: seed the session, send its token.
	s, _ := m.Load(ctx, "")
	s.Put("cart", "book")
	if err := m.Save(ctx, s); err != nil {
		panic(err)
	}
	visitor := &http.Cookie{Name: "session", Value: s.Token()}

	login := send(h, http.MethodPost, "/login?user=ada", visitor).Cookies()[0]
	old, _ := m.Load(ctx, visitor.Value)
	now, _ := m.Load(ctx, login.Value)
	user, _ := core.Value[string](now, "user")
	cart, _ := core.Value[string](now, "cart")
	fmt.Println("renewed:", login.Value != visitor.Value, "old token dead:", old.IsNew(), "kept:", user, cart)

	logout := send(h, http.MethodPost, "/logout", login).Cookies()[0]
	gone, _ := m.Load(ctx, login.Value)
	fmt.Println("cookie expired:", logout.MaxAge < 0, "session gone:", gone.IsNew())
	// Output:
	// renewed: true old token dead: true kept: ada book
	// cookie expired: true session gone: true
}

// TestCartWithCookieJar serves the application over a real (loopback)
// server and lets a cookie jar carry the session, as a browser would.
func TestCartWithCookieJar(t *testing.T) {
	m := newTestManager(t)
	srv := httptest.NewServer(m.Handler(cartApp()))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}

	for _, item := range []string{"book", "pen"} {
		resp, err := client.Post(srv.URL+"/cart?item="+item, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := client.Get(srv.URL + "/cart")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(body); got != "book,pen" {
		t.Errorf("GET /cart = %q, want %q", got, "book,pen")
	}

	u, _ := url.Parse(srv.URL)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("jar holds %d cookies, want 1", len(cookies))
	}
	s, err := m.Load(t.Context(), cookies[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if items, _ := core.Value[[]string](s, "cart"); len(items) != 2 || s.Source() != "database" {
		t.Errorf("stored cart = %q from %q, want 2 items from the in-memory durable tier", items, s.Source())
	}
}

// TestCartWithMemcached runs the same application on real tiers: a
// memcached process started for the test, in front of the in-memory
// durable tier.
func TestCartWithMemcached(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
		Durable:   durabletest.NewMemory(),
		Seal:      core.SealConfig{Keys: [][]byte{core.NewSealKey()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Handler(cartApp())

	cookie := send(h, http.MethodPost, "/cart?item=book", nil).Cookies()[0]
	s, err := m.Load(t.Context(), cookie.Value)
	if err != nil {
		t.Fatal(err)
	}
	if items, _ := core.Value[[]string](s, "cart"); len(items) != 1 || s.Source() != "memcached" {
		t.Errorf("cart = %q from %q, want [book] from memcached", items, s.Source())
	}
}
