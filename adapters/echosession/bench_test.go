package echosession_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/labstack/echo/v4"
)

// BenchmarkMiddleware measures one request on an existing session through
// the middleware, without network for HTTP (httptest.NewRecorder) and with a
// real memcached: "read" loads and reads (one memcached get; the activity
// refresh is throttled to once a minute), "modify" loads and puts (a get
// and a compare-and-swap).
func BenchmarkMiddleware(b *testing.B) {
	m, _ := newManager(b, core.CookieConfig{})
	e := newEcho()
	e.Use(echosession.New(m, echosession.Config{}))
	e.GET("/read", func(c echo.Context) error {
		return c.String(http.StatusOK, fmt.Sprint(getInt(echosession.Get(c), "n")))
	})
	e.GET("/modify", func(c echo.Context) error {
		s := echosession.Get(c)
		s.Put("n", getInt(s, "n")+1)
		return c.String(http.StatusOK, "ok")
	})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/modify", nil))
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		b.Fatalf("no session cookie: %v", rec.Header())
	}
	cookie := cs[0]
	for _, path := range []string{"/read", "/modify"} {
		b.Run(path[1:], func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.AddCookie(cookie)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
