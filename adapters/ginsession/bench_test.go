package ginsession_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
)

// BenchmarkMiddleware measures one request on an existing session through
// the middleware, without network for HTTP (httptest.NewRecorder) and with a
// real memcached: "read" loads and reads (one memcached get; the activity
// refresh is throttled to once a minute), "modify" loads and puts (a get
// and a compare-and-swap).
func BenchmarkMiddleware(b *testing.B) {
	m, _ := newManager(b, core.CookieConfig{})
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/read", func(c *gin.Context) {
		c.String(http.StatusOK, "%d", getInt(ginsession.Get(c), "n"))
	})
	r.GET("/modify", func(c *gin.Context) {
		s := ginsession.Get(c)
		s.Put("n", getInt(s, "n")+1)
		c.String(http.StatusOK, "ok")
	})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/modify", nil))
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
				r.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
