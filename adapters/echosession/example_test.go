package echosession_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/labstack/echo/v4"
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
	e.Use(echosession.New(m, echosession.Config{}))
	e.GET("/", func(c echo.Context) error {
		s := echosession.Get(c)
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

// The error hook: answer store failures in the application's own shape.
// Here a handler stores more than the item size limit (1 MiB by default).
func Example_errorHandler() {
	store, _ := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
	defer store.Close(context.Background())
	m, _ := core.New(core.Config{Store: store})
	e := echo.New()
	e.Use(echosession.New(m, echosession.Config{
		ErrorHandler: func(c echo.Context, err error) error {
			code := core.StatusCode(err)
			return c.JSON(code, map[string]string{"error": http.StatusText(code)})
		},
	}))
	e.GET("/", func(c echo.Context) error {
		echosession.Get(c).Put("upload", strings.Repeat("x", 2<<20))
		return c.String(http.StatusOK, "stored")
	})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://example.com/", nil))
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	// Output: 413 {"error":"Request Entity Too Large"}
}
