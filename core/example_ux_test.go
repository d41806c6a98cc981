package core_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// "Remember me" at login: that session gets a persistent cookie and a
// longer life; the others keep browser-session cookies (SessionOnly).
func ExampleSession_RememberMe() {
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{Store: store, Cookie: core.CookieConfig{SessionOnly: true}})

	login := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.RenewToken()
		s.SetSubject("ada")
		if r.FormValue("remember") == "on" {
			s.RememberMe(30 * 24 * time.Hour)
			s.SetIdleTimeout(7 * 24 * time.Hour)
		}
		fmt.Println("idle timeout:", time.Until(s.IdleExpiry()).Round(time.Minute), "lifetime:", time.Until(s.Deadline()).Round(time.Hour))
	}))
	for _, target := range []string{"https://example.com/login", "https://example.com/login?remember=on"} {
		rec := httptest.NewRecorder()
		login.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, target, nil))
		c := rec.Result().Cookies()[0]
		fmt.Println("persistent cookie:", c.MaxAge > 0, "days:", c.MaxAge/86400)
	}
	// Output:
	// idle timeout: 30m0s lifetime: 24h0m0s
	// persistent cookie: false days: 0
	// idle timeout: 168h0m0s lifetime: 720h0m0s
	// persistent cookie: true days: 30
}

// A one-time (flash) message set before a redirect is read once, with Pop,
// on the next page.
func ExampleSession_Pop() {
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{Store: store})

	mux := http.NewServeMux()
	mux.HandleFunc("POST /profile", func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("flash", "Profile saved.")
		http.Redirect(w, r, "/profile", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /profile", func(w http.ResponseWriter, r *http.Request) {
		if msg, ok := core.FromContext(r.Context()).Pop("flash").(string); ok {
			fmt.Fprint(w, msg)
		}
	})
	h := m.Handler(mux)

	var cookie *http.Cookie
	for _, step := range []string{"POST", "GET", "GET"} {
		req := httptest.NewRequest(step, "https://example.com/profile", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if cs := rec.Result().Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		fmt.Printf("%s %d %q\n", step, rec.Code, rec.Body.String())
	}
	// Output:
	// POST 303 ""
	// GET 200 "Profile saved."
	// GET 200 ""
}

// A devices page: list the user's sessions, mark the current one, revoke
// another by its id, or log out everywhere else.
func ExampleManager_Sessions() {
	now := time.Now()
	clock := func() time.Time { return now } // the logins happen a minute apart
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory(), Clock: clock, Reaper: core.ReaperConfig{Interval: -1}})
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{Store: store})
	ctx := context.Background()

	var sessions []*core.Session
	for _, ua := range []string{"Firefox on Linux", "Safari on iPhone", "Chrome on Windows"} {
		s, _ := m.Load(ctx, "") // a login on each device
		s.SetSubject("ada")
		s.SetDeviceInfo(map[string]string{"user-agent": ua})
		_ = m.Save(ctx, s)
		sessions = append(sessions, s)
		now = now.Add(time.Minute)
	}
	current := sessions[0]

	list, _ := m.Sessions(ctx, "ada")
	for _, info := range list {
		fmt.Println(info.Info["user-agent"], info.ID == current.ID())
	}
	ok, _ := m.RevokeSession(ctx, "ada", list[1].ID)
	n, _ := m.DestroyOtherSessions(ctx, current)
	list, _ = m.Sessions(ctx, "ada")
	fmt.Println(ok, n, len(list))
	// Output:
	// Firefox on Linux true
	// Safari on iPhone false
	// Chrome on Windows false
	// true 1 1
}

// The net/http middleware's error hook, Config.ErrorHandler: here a
// handler stores more than the item size limit (1 MiB by default).
func ExampleConfig_errorHandler() {
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{
		Store: store,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := core.StatusCode(err) // 503, 413 or 500
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":%q}`, http.StatusText(code))
		},
	})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("upload", strings.Repeat("x", 2<<20))
		fmt.Fprint(w, "stored")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://example.com/", nil))
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 413 {"error":"Request Entity Too Large"}
}
