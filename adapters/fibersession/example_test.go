package fibersession_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
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
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
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

// The error hook: answer store failures in the application's own shape.
// Here a handler stores more than the item size limit (1 MiB by default).
func Example_errorHandler() {
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{Store: store})
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(fibersession.New(m, fibersession.Config{
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			code := core.StatusCode(err)
			return c.Status(code).JSON(fiber.Map{"error": http.StatusText(code)})
		},
	}))
	app.Get("/", func(c *fiber.Ctx) error {
		fibersession.Get(c).Put("upload", strings.Repeat("x", 2<<20))
		return c.SendString("stored")
	})
	resp, _ := app.Test(httptest.NewRequest(http.MethodGet, "https://example.com/", nil))
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 413 {"error":"Request Entity Too Large"}
}
