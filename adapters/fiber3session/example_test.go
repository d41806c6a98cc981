package fiber3session_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/session"
	"github.com/hybridsession/hybridsession/adapters/fiber3session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
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

	app := fiber.New()
	app.Use(fiber3session.New(m, fiber3session.Config{
		// Static assets never load a session.
		Next: func(c fiber.Ctx) bool { return strings.HasPrefix(c.Path(), "/static/") },
	}))
	app.Get("/", func(c fiber.Ctx) error {
		s := fiber3session.Get(c)
		n, _ := core.Value[int](s, "visits")
		n++
		s.Put("visits", n)
		return c.SendString(fmt.Sprintf("visit %d", n))
	})

	var cookie *http.Cookie
	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := app.Test(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if cs := resp.Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		fmt.Println(resp.StatusCode, string(body))
	}
	fmt.Println(cookie.Name, cookie.HttpOnly, cookie.Secure, cookie.SameSite == http.SameSiteLaxMode)
	// Output:
	// 200 visit 1
	// 200 visit 2
	// 200 visit 3
	// session true true true
}

// ExampleNewStorage keeps fiber v3's own session middleware's data in the
// hybrid store (the same works for its CSRF and limiter middleware).
func ExampleNewStorage() {
	store, err := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())

	app := fiber.New()
	app.Use(session.New(session.Config{Storage: fiber3session.NewStorage(store, fiber3session.StorageConfig{})}))
	app.Get("/", func(c fiber.Ctx) error {
		sess := session.FromContext(c)
		n, _ := sess.Get("visits").(int)
		sess.Set("visits", n+1)
		return c.SendString(fmt.Sprintf("visit %d", n+1))
	})

	var cookie *http.Cookie
	for range 2 {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := app.Test(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if cs := resp.Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		fmt.Println(string(body))
	}
	// Output:
	// visit 1
	// visit 2
}
