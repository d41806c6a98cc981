package core_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing/fstest"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// The net/http middleware: load the session, hand it to the handler through
// the request context, save it before the response goes out.
func ExampleManager_Handler() {
	// A real application configures memcached servers and a database tier
	// (gormstore); this example keeps sessions in memory so that it runs
	// anywhere.
	store, err := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		n, _ := core.Value[int](s, "visits")
		n++
		s.Put("visits", n)
		fmt.Fprintf(w, "visit %d", n)
	})
	static := http.FileServerFS(fstest.MapFS{"static/app.css": {Data: []byte("body{}")}})
	root := http.NewServeMux()
	root.Handle("/static/", static) // routed around the middleware: no session
	root.Handle("/", m.Handler(mux))

	var cookie *http.Cookie
	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		root.ServeHTTP(rec, req)
		if cs := rec.Result().Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		fmt.Println(rec.Code, rec.Body.String())
	}
	fmt.Println(cookie.Name, cookie.HttpOnly, cookie.Secure)

	rec := httptest.NewRecorder()
	root.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://example.com/static/app.css", nil))
	fmt.Println(rec.Code, "cookies:", len(rec.Result().Cookies()))
	// Output:
	// 200 visit 1
	// 200 visit 2
	// 200 visit 3
	// session true true
	// 200 cookies: 0
}

// Log in: a new token for the new privilege level, the user id as the
// session's subject, and a durable write.
func ExampleSession_RenewToken() {
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{Store: store})
	ctx := context.Background()

	s, _ := m.Load(ctx, "") // an anonymous visitor
	s.Put("cart", "book")
	_ = m.Save(ctx, s)
	before := s.Token()

	s, _ = m.Load(ctx, before) // the login request
	s.RenewToken()
	s.SetSubject("user-42")
	s.Put("user", "ada")
	_ = m.Save(ctx, s)

	old, _ := m.Load(ctx, before)
	now, _ := m.Load(ctx, s.Token())
	cart, _ := core.Value[string](now, "cart")
	user, _ := core.Value[string](now, "user")
	fmt.Println(old.IsNew(), cart, user, now.Subject())
	// Output: true book ada user-42
}

// Seal every session with a key ring read from the environment: the first
// key seals, every key opens. What the tiers hold is unreadable without the
// keys, and an entry copied under another session's key does not open.
func ExampleSealConfig() {
	// In production: keys, err := core.ParseSealKeys(os.Getenv("HYBRIDSESSION_SEAL_KEYS"))
	env := core.FormatSealKey(core.NewSealKey()) + "," + core.FormatSealKey(core.NewSealKey())
	keys, err := core.ParseSealKeys(env)
	if err != nil {
		panic(err)
	}
	durable := durabletest.NewMemory()
	store, err := core.NewStore(core.StoreConfig{Durable: durable, Seal: core.SealConfig{Keys: keys}})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{Store: store})
	ctx := context.Background()

	s, _ := m.Load(ctx, "")
	s.Put("cart", "book")
	_ = m.Save(ctx, s)

	rec, _, _ := durable.Load(ctx, core.StorageKey(s.Token()))
	fmt.Println(len(keys), bytes.Contains(rec.Payload, []byte("book")))
	s, _ = m.Load(ctx, s.Token())
	fmt.Println(s.Get("cart"))
	// Output:
	// 2 false
	// book
}
