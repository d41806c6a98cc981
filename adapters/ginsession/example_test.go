package ginsession_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
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

	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/", func(c *gin.Context) {
		s := ginsession.Get(c)
		n, _ := core.Value[int](s, "visits")
		n++
		s.Put("visits", n)
		c.String(http.StatusOK, "visit %d", n)
	})

	var cookie *http.Cookie
	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
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
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{
		ErrorHandler: func(c *gin.Context, err error) {
			c.AbortWithStatusJSON(core.StatusCode(err), gin.H{"error": http.StatusText(core.StatusCode(err))})
		},
	}))
	r.GET("/", func(c *gin.Context) {
		ginsession.Get(c).Put("upload", strings.Repeat("x", 2<<20))
		c.String(http.StatusOK, "stored")
	})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://example.com/", nil))
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 413 {"error":"Request Entity Too Large"}
}
