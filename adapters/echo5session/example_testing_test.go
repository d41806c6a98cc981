package echo5session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/hybridsession/hybridsession/adapters/echo5session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/labstack/echo/v5"
)

// Testing echo v5 handlers without memcached or a database (docs/testing.md):
// the Store keeps sessions in memory, the test copies the cookie of the
// login response to the next request and reads the stored session with
// Manager.Load.
func Example_testing() {
	store, err := core.NewStore(core.StoreConfig{
		Durable: durabletest.NewMemory(),
		Seal:    core.SealConfig{Keys: [][]byte{core.NewSealKey()}},
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

	e := echo.New()
	e.Use(echo5session.New(m, echo5session.Config{}))
	e.POST("/login", func(c *echo.Context) error {
		s := echo5session.Get(c)
		s.RenewToken()
		s.Put("user", c.QueryParam("user"))
		return c.NoContent(http.StatusNoContent)
	})
	e.GET("/me", func(c *echo.Context) error {
		user, _ := core.Value[string](echo5session.Get(c), "user")
		return c.String(http.StatusOK, user)
	})

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/login?user=ada", nil))
	cookie := rec.Result().Cookies()[0]

	req := httptest.NewRequest(http.MethodGet, "/me", nil)
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())

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
