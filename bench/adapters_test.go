package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	fiber2 "github.com/gofiber/fiber/v2"
	fiber3 "github.com/gofiber/fiber/v3"
	echo4 "github.com/labstack/echo/v4"
	echo5 "github.com/labstack/echo/v5"
	"github.com/valyala/fasthttp"

	"github.com/hybridsession/hybridsession/adapters/echo5session"
	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/adapters/fiber3session"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// BenchmarkAdapters compares the framework adapters in one run, on one
// memcached-only Manager, without network for HTTP (httptest.NewRecorder,
// or a reused fasthttp.RequestCtx for fiber): "read" loads and reads an
// existing session (one memcached get; the activity refresh is throttled),
// "modify" loads and puts (a get and a compare-and-swap). The figures to
// compare are echo5 with echo4 and fiber3 with fiber2.
func BenchmarkAdapters(b *testing.B) {
	mc := memcachedtest.Start(b, memcachedtest.Options{})
	benchAdapters(b, core.StoreConfig{
		// A generous timeout: on a loaded machine a slow round trip must
		// not open the breaker and turn the benchmark into 503s.
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, Timeout: 5 * time.Second},
		Logger:    quiet,
	})
}

// BenchmarkAdaptersCPU is BenchmarkAdapters on an in-memory tier (no
// memcached, no network): what each adapter and the core cost in CPU, the
// figure that stays comparable on a loaded machine.
func BenchmarkAdaptersCPU(b *testing.B) {
	benchAdapters(b, core.StoreConfig{Durable: durabletest.NewMemory(), Logger: quiet})
}

func benchAdapters(b *testing.B, cfg core.StoreConfig) {
	st, err := core.NewStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close(context.Background()) })
	m := hybridManager(b, st)
	read := func(s *core.Session) string { return strconv.Itoa(getInt(s, "n")) }
	modify := func(s *core.Session) string { s.Put("n", getInt(s, "n")+1); return "ok" }

	// One session shared by all adapters.
	s, _ := m.Load(context.Background(), "")
	s.Put("n", 1)
	if err := m.Save(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	token := s.Token()

	adapters := []struct {
		name string
		do   func(b *testing.B, path string) // one request
	}{
		{"echo4", httpDo(func() http.Handler {
			e := echo4.New()
			e.Use(echosession.New(m, echosession.Config{}))
			e.GET("/read", func(c echo4.Context) error { return c.String(200, read(echosession.Get(c))) })
			e.GET("/modify", func(c echo4.Context) error { return c.String(200, modify(echosession.Get(c))) })
			return e
		}(), "session", token)},
		{"echo5", httpDo(func() http.Handler {
			e := echo5.New()
			e.Use(echo5session.New(m, echo5session.Config{}))
			e.GET("/read", func(c *echo5.Context) error { return c.String(200, read(echo5session.Get(c))) })
			e.GET("/modify", func(c *echo5.Context) error { return c.String(200, modify(echo5session.Get(c))) })
			return e
		}(), "session", token)},
		{"fiber2", fastDo(func() fasthttp.RequestHandler {
			app := fiber2.New(fiber2.Config{DisableStartupMessage: true})
			app.Use(fibersession.New(m, fibersession.Config{}))
			app.Get("/read", func(c *fiber2.Ctx) error { return c.SendString(read(fibersession.Get(c))) })
			app.Get("/modify", func(c *fiber2.Ctx) error { return c.SendString(modify(fibersession.Get(c))) })
			return app.Handler()
		}(), "session", token)},
		{"fiber3", fastDo(func() fasthttp.RequestHandler {
			app := fiber3.New()
			app.Use(fiber3session.New(m, fiber3session.Config{}))
			app.Get("/read", func(c fiber3.Ctx) error { return c.SendString(read(fiber3session.Get(c))) })
			app.Get("/modify", func(c fiber3.Ctx) error { return c.SendString(modify(fiber3session.Get(c))) })
			return app.Handler()
		}(), "session", token)},
		{"gin", httpDo(func() http.Handler {
			r := gin.New()
			r.Use(ginsession.New(m, ginsession.Config{}))
			r.GET("/read", func(c *gin.Context) { c.String(200, read(ginsession.Get(c))) })
			r.GET("/modify", func(c *gin.Context) { c.String(200, modify(ginsession.Get(c))) })
			return r
		}(), "session", token)},
		{"nethttp", httpDo(func() http.Handler {
			mux := http.NewServeMux()
			mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(read(core.FromContext(r.Context()))))
			})
			mux.HandleFunc("/modify", func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(modify(core.FromContext(r.Context()))))
			})
			return m.Handler(mux)
		}(), "session", token)},
	}
	for _, op := range []string{"read", "modify"} {
		for _, a := range adapters {
			b.Run(op+"/"+a.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					a.do(b, "/"+op)
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// httpDo returns a request function for a net/http handler.
func httpDo(h http.Handler, cookie, token string) func(b *testing.B, path string) {
	reqs := map[string]*http.Request{}
	for _, p := range []string{"/read", "/modify"} {
		r := httptest.NewRequest(http.MethodGet, p, nil)
		r.AddCookie(&http.Cookie{Name: cookie, Value: token})
		reqs[p] = r
	}
	return func(b *testing.B, path string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, reqs[path])
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: status %d", path, rec.Code)
		}
	}
}

// fastDo returns a request function for a fasthttp handler (fiber).
func fastDo(h fasthttp.RequestHandler, cookie, token string) func(b *testing.B, path string) {
	var ctx fasthttp.RequestCtx
	return func(b *testing.B, path string) {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.ResetUserValues()
		ctx.Request.SetRequestURI(path)
		ctx.Request.Header.SetCookie(cookie, token)
		h(&ctx)
		if code := ctx.Response.StatusCode(); code != http.StatusOK {
			b.Fatalf("%s: status %d", path, code)
		}
	}
}
