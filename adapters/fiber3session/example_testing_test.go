package fiber3session_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/gofiber/fiber/v3"
	"github.com/hybridsession/hybridsession/adapters/fiber3session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// Testing fiber v3 handlers without memcached or a database (docs/testing.md):
// the Store keeps sessions in memory, app.Test serves the requests, the test
// copies the cookie of the login response to the next request and reads the
// stored session with Manager.Load.
func Example_testing() {
	store, err := core.NewStore(core.StoreConfig{
		Durable: durabletest.NewMemory(),
		Seal:    core.SealConfig{Keys: [][]byte{core.NewSealKey()}},
	})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())
	// Insecure: app.Test requests are plain HTTP.
	m, err := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Insecure: true}})
	if err != nil {
		panic(err)
	}

	app := fiber.New()
	app.Use(fiber3session.New(m, fiber3session.Config{}))
	app.Post("/login", func(c fiber.Ctx) error {
		s := fiber3session.Get(c)
		s.RenewToken()
		s.Put("user", c.Query("user"))
		return c.SendStatus(http.StatusNoContent)
	})
	app.Get("/me", func(c fiber.Ctx) error {
		user, _ := core.Value[string](fiber3session.Get(c), "user")
		return c.SendString(user)
	})

	resp, err := app.Test(httptest.NewRequest(http.MethodPost, "/login?user=ada", nil))
	if err != nil {
		panic(err)
	}
	cookie := resp.Cookies()[0]

	req := httptest.NewRequest(http.MethodGet, "/me", nil)
	req.AddCookie(cookie)
	resp, err = app.Test(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	s, err := m.Load(context.Background(), cookie.Value)
	if err != nil {
		panic(err)
	}
	user, _ := core.Value[string](s, "user")
	fmt.Println("stored:", user)
	// Output:
	// 200 ada
	// stored: ada
}
