package ginsession_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// Testing gin handlers without memcached or a database (docs/testing.md):
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

	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.POST("/login", func(c *gin.Context) {
		s := ginsession.Get(c)
		s.RenewToken()
		s.Put("user", c.Query("user"))
		c.Status(http.StatusNoContent)
	})
	r.GET("/me", func(c *gin.Context) {
		user, _ := core.Value[string](ginsession.Get(c), "user")
		c.String(http.StatusOK, user)
	})

	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/login?user=ada", nil))
	cookie := rec.Result().Cookies()[0]

	req := httptest.NewRequest(http.MethodGet, "/me", nil)
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, req)
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
