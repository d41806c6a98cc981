// Package demotest is the samples' test kit: real tiers for a test
// (memcached started by memcachedtest, SQLite in a temporary directory), a
// cookie-jar client that reaches a handler without a listener, and the demo
// journey every sample must pass — log in, add to the cart, read it back,
// log out.
package demotest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// Open starts a memcached process and opens a setup.Env on it and on an
// SQLite database in t.TempDir(), closed when the test ends.
func Open(t testing.TB) (*setup.Env, *memcachedtest.Server) {
	t.Helper()
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	env, err := setup.Open(setup.Options{
		Name:      t.Name(),
		Memcached: mc.Addr,
		DSN:       filepath.Join(t.TempDir(), "sessions.db"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setup.ShutdownTimeout)
		defer cancel()
		if err := env.Close(ctx); err != nil {
			t.Errorf("closing the tiers: %v", err)
		}
	})
	return env, mc
}

// Manager returns a core.Manager configured like the samples' on real
// tiers (see Open).
func Manager(t testing.TB) *core.Manager {
	t.Helper()
	env, _ := Open(t)
	m, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// HandlerTransport is an http.RoundTripper that serves each request with
// Handler in-process, through an httptest.ResponseRecorder: no listener.
type HandlerTransport struct{ Handler http.Handler }

// RoundTrip serves req with t.Handler.
func (t HandlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RequestURI = r.URL.RequestURI()
	r.RemoteAddr = "192.0.2.1:1234"
	rec := httptest.NewRecorder()
	t.Handler.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// NewClient returns a client with a cookie jar that sends its requests
// through rt and does not follow redirects, so that each answer — with its
// status and X-Served-By — can be checked.
func NewClient(t testing.TB, rt http.RoundTripper) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Transport: rt,
		Jar:       jar,
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Response is an answer with its body read.
type Response struct {
	Status   int
	ServedBy string
	Location string
	Body     string
}

// Do sends a GET (form == nil) or a form POST to base+path.
func Do(t testing.TB, c *http.Client, base, path string, form url.Values) Response {
	t.Helper()
	var resp *http.Response
	var err error
	if form == nil {
		resp, err = c.Get(base + path)
	} else {
		resp, err = c.PostForm(base+path, form)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the body: %v", path, err)
	}
	return Response{
		Status:   resp.StatusCode,
		ServedBy: resp.Header.Get(demo.HeaderServedBy),
		Location: resp.Header.Get("Location"),
		Body:     string(b),
	}
}

// Post sends a form POST and expects the redirect back to the page.
func Post(t testing.TB, c *http.Client, base, path string, form url.Values) Response {
	t.Helper()
	r := Do(t, c, base, path, form)
	if r.Status != http.StatusSeeOther || r.Location != "/" {
		t.Fatalf("POST %s: got %d (Location %q) %q, want 303 to /", path, r.Status, r.Location, r.Body)
	}
	return r
}

// State reads /api/state.
func State(t testing.TB, c *http.Client, base string) (demo.State, Response) {
	t.Helper()
	r := Do(t, c, base, "/api/state", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /api/state: %d %q", r.Status, r.Body)
	}
	var st demo.State
	if err := json.Unmarshal([]byte(r.Body), &st); err != nil {
		t.Fatalf("GET /api/state: %v in %q", err, r.Body)
	}
	if st.ServedBy != r.ServedBy {
		t.Errorf("GET /api/state: served_by %q but %s %q", st.ServedBy, demo.HeaderServedBy, r.ServedBy)
	}
	return st, r
}

// CookieValue returns the value of the session cookie the client holds for
// base, "" when none.
func CookieValue(t testing.TB, c *http.Client, base, name string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// Journey walks one sample served by servedBy through the demo with a
// fresh client on rt: a first page view, a rejected and an accepted login
// (which must change the session cookie), two items in the cart, the state
// read back as JSON and on the page, and a logout that empties it all.
// cookie is the name of the session cookie.
func Journey(t *testing.T, rt http.RoundTripper, servedBy, cookie string) {
	t.Helper()
	const base = "http://demo.test"
	c := NewClient(t, rt)

	page := Do(t, c, base, "/", nil)
	if page.Status != http.StatusOK || page.ServedBy != servedBy {
		t.Fatalf("GET /: %d served by %q, want 200 by %q", page.Status, page.ServedBy, servedBy)
	}
	for _, want := range []string{"Served by " + servedBy, "Not logged in", "Cart is empty", "Visits: 1"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("first page lacks %q:\n%s", want, page.Body)
		}
	}
	before := CookieValue(t, c, base, cookie)
	if before == "" {
		t.Fatalf("no %q cookie after the first page view", cookie)
	}

	if r := Do(t, c, base, "/login", url.Values{"name": {"  "}}); r.Status != http.StatusBadRequest {
		t.Errorf("login with a blank name: %d, want 400", r.Status)
	}
	Post(t, c, base, "/login", url.Values{"name": {"ada"}})
	if after := CookieValue(t, c, base, cookie); after == "" || after == before {
		t.Errorf("login did not renew the session token")
	}
	Post(t, c, base, "/cart/add", url.Values{"item": {"apple"}})
	Post(t, c, base, "/cart/add", url.Values{"item": {"<pear>"}})

	st, _ := State(t, c, base)
	want := demo.State{ServedBy: servedBy, User: "ada", Cart: []string{"apple", "<pear>"}, Visits: 1}
	if !Equal(st, want) {
		t.Fatalf("state after login and two adds: %+v, want %+v", st, want)
	}
	page = Do(t, c, base, "/", nil)
	for _, want := range []string{"Logged in as ada", "<li>apple</li>", "<li>&lt;pear&gt;</li>", "Visits: 2"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("page after login lacks %q:\n%s", want, page.Body)
		}
	}

	Post(t, c, base, "/logout", url.Values{})
	if v := CookieValue(t, c, base, cookie); v != "" {
		t.Errorf("session cookie still set after logout")
	}
	st, _ = State(t, c, base)
	if want := (demo.State{ServedBy: servedBy}); !Equal(st, want) {
		t.Errorf("state after logout: %+v, want %+v", st, want)
	}
}

// Equal reports whether two states are the same; a nil and an empty cart
// are equal.
func Equal(a, b demo.State) bool {
	return a.ServedBy == b.ServedBy && a.User == b.User && a.Visits == b.Visits && slices.Equal(a.Cart, b.Cart)
}
