package echo5session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/hybridsession/hybridsession/adapters/echo5session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/labstack/echo/v5"
)

func Example() {
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

	e := echo.New()
	e.Use(echo5session.New(m, echo5session.Config{
		// Static assets never load a session.
		Skipper: func(c *echo.Context) bool { return strings.HasPrefix(c.Request().URL.Path, "/static/") },
	}))
	e.GET("/", func(c *echo.Context) error {
		s := echo5session.Get(c)
		n, _ := core.Value[int](s, "visits")
		n++
		s.Put("visits", n)
		return c.String(http.StatusOK, fmt.Sprintf("visit %d", n))
	})

	var cookie *http.Cookie
	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if cs := rec.Result().Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		fmt.Println(rec.Code, rec.Body.String())
	}
	fmt.Println(cookie.Name, cookie.HttpOnly, cookie.Secure, cookie.SameSite == http.SameSiteLaxMode)
	// Output:
	// 200 visit 1
	// 200 visit 2
	// 200 visit 3
	// session true true true
}

// Example_bearer carries the token in "Authorization: Bearer", for API
// clients; a new or renewed token comes back in the Session-Token header.
func Example_bearer() {
	store, err := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store, TokenHeader: "Authorization"})
	if err != nil {
		panic(err)
	}

	e := echo.New()
	e.Use(echo5session.New(m, echo5session.Config{}))
	e.POST("/login", func(c *echo.Context) error {
		s := echo5session.Get(c)
		s.RenewToken()
		s.Put("user", "ada")
		return c.NoContent(http.StatusNoContent)
	})
	e.GET("/me", func(c *echo.Context) error {
		user, _ := core.Value[string](echo5session.Get(c), "user")
		return c.String(http.StatusOK, user)
	})

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/login", nil))
	token := rec.Header().Get("Session-Token")

	req := httptest.NewRequest(http.MethodGet, "/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	fmt.Println(len(token) == 43, rec.Body.String())
	// Output:
	// true ada
}

// ExampleGetFor serves an admin session and a user session, under
// different cookie names, in one request.
func ExampleGetFor() {
	store, err := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())
	users, _ := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Name: "user"}})
	admins, _ := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Name: "admin"}})

	e := echo.New()
	e.Use(echo5session.New(users, echo5session.Config{}), echo5session.New(admins, echo5session.Config{}))
	e.GET("/", func(c *echo.Context) error {
		echo5session.GetFor(c, users).Put("cart", 3)
		echo5session.GetFor(c, admins).Put("role", "auditor")
		return c.NoContent(http.StatusOK)
	})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	for _, c := range rec.Result().Cookies() {
		fmt.Println(c.Name, len(c.Value) == 43)
	}
	// Unordered output:
	// user true
	// admin true
}
