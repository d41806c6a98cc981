package scsstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/scsstore"
)

// app is an scs application on an scsstore.Store, served by httptest.
type app struct {
	sm  *scs.SessionManager
	srv *httptest.Server
}

func newApp(t *testing.T, s *scsstore.Store, hash bool) *app {
	t.Helper()
	sm := scs.New()
	sm.Store = s
	sm.HashTokenInStore = hash
	sm.IdleTimeout = 20 * time.Minute
	sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		t.Errorf("scs error on %s: %v", r.URL.Path, err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "v", r.URL.Query().Get("v"))
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sm.GetString(r.Context(), "v"))
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sm.Put(r.Context(), "user", r.URL.Query().Get("user"))
	})
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sm.GetString(r.Context(), "user"))
	})
	a := &app{sm: sm, srv: httptest.NewServer(sm.LoadAndSave(mux))}
	t.Cleanup(a.srv.Close)
	return a
}

// client is one browser: a cookie jar.
type client struct {
	t   *testing.T
	a   *app
	c   *http.Client
	jar http.CookieJar
}

func (a *app) client(t *testing.T) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, a: a, c: &http.Client{Jar: jar}, jar: jar}
}

// get requests path and returns the body; any status but 200 fails the
// test. Call it from the test's goroutine only; others use fetch.
func (c *client) get(path string) string {
	c.t.Helper()
	body, err := c.fetch(path)
	if err != nil {
		c.t.Fatal(err)
	}
	return body
}

// fetch requests path and returns the body, or an error for any status but 200.
func (c *client) fetch(path string) (string, error) {
	resp, err := c.c.Get(c.a.srv.URL + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body), nil
}

// cookie returns the session cookie's value, or "".
func (c *client) cookie() string {
	u, _ := url.Parse(c.a.srv.URL)
	for _, k := range c.jar.Cookies(u) {
		if k.Name == c.a.sm.Cookie.Name {
			return k.Value
		}
	}
	return ""
}

// storeToken is the token scs hands the store for cookie value v.
func storeToken(v string, hash bool) string {
	if !hash {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestSessionManager drives a real scs.SessionManager through an httptest
// server and a cookie jar, with HashTokenInStore off and on.
func TestSessionManager(t *testing.T) {
	for _, hash := range []bool{false, true} {
		t.Run(fmt.Sprint("HashTokenInStore=", hash), func(t *testing.T) {
			st := newStack(t, backends(t)[0], false)
			cs, s := st.server(t, 0, scsstore.Config{Iterable: hash})
			a := newApp(t, s, hash)
			c := a.client(t)
			ctx := context.Background()

			c.get("/put?v=hello")
			if got := c.get("/get"); got != "hello" {
				t.Fatalf("/get = %q; want hello", got)
			}
			cookie := c.cookie()
			if cookie == "" {
				t.Fatal("no session cookie")
			}
			e, err := core.NewKV(cs, scsstore.CodecID).Read(ctx, storeToken(cookie, hash))
			if err != nil || e == nil || e.Value == nil {
				t.Fatalf("core entry for the session: %+v, %v", e, err)
			}
			// The raw cookie value is stored nowhere: the core keys by a
			// hash, and with Iterable the kept token is scs's hash of it.
			recs, err := st.durable.List(ctx, "", "", 100)
			if err != nil || len(recs) != 1 {
				t.Fatalf("List = %d rows, %v; want 1", len(recs), err)
			}
			if bytes.Contains(recs[0].Payload, []byte(cookie)) || bytes.Contains(e.Value, []byte(cookie)) {
				t.Error("the raw cookie value is stored")
			}
			if recs[0].Key != core.StorageKey(storeToken(cookie, hash)) {
				t.Error("row key is not the core's hash of scs's token")
			}

			c.get("/login?user=alice")
			if c.cookie() == cookie {
				t.Fatal("RenewToken kept the token")
			}
			if _, found, err := s.Find(storeToken(cookie, hash)); found || err != nil {
				t.Fatalf("the pre-login token is still found (%v, %v)", found, err)
			}
			if got := c.get("/whoami"); got != "alice" {
				t.Fatalf("/whoami = %q; want alice", got)
			}
			if got := c.get("/get"); got != "hello" {
				t.Fatalf("/get after login = %q; want hello", got)
			}

			if hash {
				other := a.client(t)
				other.get("/login?user=bob")
				var users []string
				err := a.sm.Iterate(ctx, func(ctx context.Context) error {
					users = append(users, a.sm.GetString(ctx, "user"))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				sort.Strings(users)
				if fmt.Sprint(users) != "[alice bob]" {
					t.Errorf("Iterate saw users %v; want [alice bob]", users)
				}
			}

			loggedIn := c.cookie()
			c.get("/logout")
			if got := c.get("/whoami"); got != "" {
				t.Fatalf("/whoami after logout = %q; want empty", got)
			}
			if _, found, _ := s.Find(storeToken(loggedIn, hash)); found {
				t.Fatal("the destroyed session is still found")
			}
		})
	}
}

// TestSessionManagerMemcachedRestart: users stay logged in across
// memcached restarts, with HashTokenInStore off and on.
func TestSessionManagerMemcachedRestart(t *testing.T) {
	for _, hash := range []bool{false, true} {
		t.Run(fmt.Sprint("HashTokenInStore=", hash), func(t *testing.T) {
			st := newStack(t, backends(t)[0], false)
			cs, s := st.server(t, 0, scsstore.Config{})
			a := newApp(t, s, hash)
			users := make([]*client, 3)
			for i := range users {
				users[i] = a.client(t)
				users[i].get(fmt.Sprint("/login?user=u", i))
			}
			for round := range 2 {
				st.mc.Restart()
				for i, c := range users {
					if got, want := c.get("/whoami"), fmt.Sprint("u", i); got != want {
						t.Fatalf("restart %d: /whoami = %q; want %q (logged out)", round, got, want)
					}
				}
			}
			if st := cs.Stats(); st.DBReads == 0 {
				t.Error("no database reads: the restart was not exercised")
			}
		})
	}
}

// TestSessionManagerConcurrent runs many browsers, and parallel requests of
// one browser, at once (run with -race).
func TestSessionManagerConcurrent(t *testing.T) {
	st := newStack(t, backends(t)[0], false)
	_, s := st.server(t, 0, scsstore.Config{RememberSize: 8})
	a := newApp(t, s, true)
	var wg sync.WaitGroup
	check := func(c *client, path, want string) bool {
		got, err := c.fetch(path)
		if err != nil || (want != "" && got != want) {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
			return false
		}
		return true
	}
	for i := range 4 {
		c := a.client(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprint("u", i)
			if !check(c, "/login?user="+user, "") {
				return
			}
			for j := range 10 {
				if !check(c, fmt.Sprint("/put?v=", j), "") || !check(c, "/whoami", user) {
					return
				}
			}
		}()
	}
	// One browser, parallel requests (AJAX): whole-session last writer wins,
	// nobody errs or is logged out.
	shared := a.client(t)
	shared.get("/login?user=shared")
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if !check(shared, "/whoami", "shared") {
					return
				}
			}
		}()
	}
	wg.Wait()
}
