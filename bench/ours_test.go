package bench

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/alexedwards/scs/v2"
	"github.com/gin-gonic/gin"
	"github.com/gofiber/fiber/v2"
	"github.com/labstack/echo/v4"

	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/scsstore"
)

func init() {
	gin.SetMode(gin.ReleaseMode)
	for _, wt := range []bool{false, true} {
		suffix := ""
		if wt {
			suffix = "-wt"
		}
		builders["hybrid-gin"+suffix] = func(e *env, tb testing.TB) *target { return hybridGin(e, tb, "hybrid-gin"+suffix, wt) }
		builders["hybrid-echo"+suffix] = func(e *env, tb testing.TB) *target { return hybridEcho(e, tb, "hybrid-echo"+suffix, wt) }
		builders["hybrid-fiber"+suffix] = func(e *env, tb testing.TB) *target { return hybridFiber(e, tb, "hybrid-fiber"+suffix, wt) }
	}
	// scsstore has no write-through form: scs writes whole sessions, and
	// nothing makes its Commits durable.
	builders["hybrid-scs"] = func(e *env, tb testing.TB) *target { return hybridSCS(e, tb, "hybrid-scs") }
}

// ourTarget builds the Store and Manager of one of our targets (virtual
// clock) and the target around them; app makes the framework's handler.
// writeThrough makes every key a durable key: each change is written to the
// database before the response.
func ourTarget(e *env, tb testing.TB, name string, writeThrough bool) (*target, *core.Manager) {
	clock := newVClock()
	pathTrips := new(atomic.Int64)
	st, trips, counter := e.hybridStoreWith(tb, name, clock, withPathTracer(pathTrips))
	var durable []string
	if writeThrough {
		durable = writeThroughKeys
	}
	m := hybridManager(tb, st, durable...)
	return &target{
		name:       name,
		ours:       true,
		trips:      trips,
		pathTrips:  pathTrips,
		sql:        counter,
		pathKnown:  true,
		clock:      clock,
		writer:     newWriterDriver(tb, st, clock),
		cookieName: "session",
		flush:      func() { _ = st.Flush(context.Background()) },
	}, m
}

// present reports whether s holds a key.
func present(s *core.Session) func(string) bool {
	return func(k string) bool { return s.Get(k) != nil }
}

// countKeys counts the addKeys that exists reports present.
func countKeys(exists func(string) bool) string {
	n := 0
	for _, k := range addKeys {
		if exists(k) {
			n++
		}
	}
	return strconv.Itoa(n)
}

func hybridGin(e *env, tb testing.TB, name string, wt bool) *target {
	t, m := ourTarget(e, tb, name, wt)
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/new", func(c *gin.Context) {
		s := ginsession.Get(c)
		for _, v := range newValues {
			s.Put(v.key, v.value)
		}
		c.String(http.StatusOK, "ok")
	})
	r.GET("/read", func(c *gin.Context) {
		_ = getString(ginsession.Get(c), "user")
		c.String(http.StatusOK, "ok")
	})
	r.GET("/modify", func(c *gin.Context) {
		s := ginsession.Get(c)
		s.Put("n", getInt(s, "n")+1)
		c.String(http.StatusOK, "ok")
	})
	r.GET("/add/:k", func(c *gin.Context) {
		ginsession.Get(c).Put(c.Param("k"), 1)
		c.String(http.StatusOK, "ok")
	})
	r.GET("/count", func(c *gin.Context) {
		c.String(http.StatusOK, countKeys(present(ginsession.Get(c))))
	})
	t.newClient = func() client { return newHTTPClient(r, t.cookieName) }
	return t
}

func hybridEcho(e *env, tb testing.TB, name string, wt bool) *target {
	t, m := ourTarget(e, tb, name, wt)
	app := echo.New()
	app.HideBanner, app.HidePort = true, true
	app.Use(echosession.New(m, echosession.Config{}))
	app.GET("/new", func(c echo.Context) error {
		s := echosession.Get(c)
		for _, v := range newValues {
			s.Put(v.key, v.value)
		}
		return c.String(http.StatusOK, "ok")
	})
	app.GET("/read", func(c echo.Context) error {
		_ = getString(echosession.Get(c), "user")
		return c.String(http.StatusOK, "ok")
	})
	app.GET("/modify", func(c echo.Context) error {
		s := echosession.Get(c)
		s.Put("n", getInt(s, "n")+1)
		return c.String(http.StatusOK, "ok")
	})
	app.GET("/add/:k", func(c echo.Context) error {
		echosession.Get(c).Put(c.Param("k"), 1)
		return c.String(http.StatusOK, "ok")
	})
	app.GET("/count", func(c echo.Context) error {
		return c.String(http.StatusOK, countKeys(present(echosession.Get(c))))
	})
	t.newClient = func() client { return newHTTPClient(app, t.cookieName) }
	return t
}

// markRequest gives fiber handlers the benchmark's request context (fiber's
// user context is context.Background otherwise), so that statements run on
// the request path are told from the background writer's. Every fiber
// application in the benchmarks, ours and the peer, runs it.
func markRequest(c *fiber.Ctx) error {
	c.SetUserContext(requestContext)
	return c.Next()
}

func newFiberApp() *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(markRequest)
	return app
}

func hybridFiber(e *env, tb testing.TB, name string, wt bool) *target {
	t, m := ourTarget(e, tb, name, wt)
	app := newFiberApp()
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/new", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		for _, v := range newValues {
			s.Put(v.key, v.value)
		}
		return c.SendString("ok")
	})
	app.Get("/read", func(c *fiber.Ctx) error {
		_ = getString(fibersession.Get(c), "user")
		return c.SendString("ok")
	})
	app.Get("/modify", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		s.Put("n", getInt(s, "n")+1)
		return c.SendString("ok")
	})
	app.Get("/add/:k", func(c *fiber.Ctx) error {
		fibersession.Get(c).Put(c.Params("k"), 1)
		return c.SendString("ok")
	})
	app.Get("/count", func(c *fiber.Ctx) error {
		return c.SendString(countKeys(present(fibersession.Get(c))))
	})
	h := app.Handler()
	t.newClient = func() client { return newFiberClient(h, t.cookieName) }
	return t
}

// hybridSCS is scs v2 (its own tokens, codec and middleware) on scsstore.
// scs computes expiries from the real clock, so this Store keeps the real
// clock too: its background writer syncs a session every SyncInterval of
// real time.
func hybridSCS(e *env, tb testing.TB, name string) *target {
	pathTrips := new(atomic.Int64)
	st, trips, counter := e.hybridStoreWith(tb, name, nil, withPathTracer(pathTrips))
	store, err := scsstore.New(st, scsstore.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	sm := scs.New()
	sm.Store = store
	sm.Cookie.Secure = false
	mux := http.NewServeMux()
	mux.HandleFunc("GET /new", func(w http.ResponseWriter, r *http.Request) {
		for _, v := range newValues {
			sm.Put(r.Context(), v.key, v.value)
		}
		_, _ = w.Write(ok)
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		_ = sm.GetString(r.Context(), "user")
		_, _ = w.Write(ok)
	})
	mux.HandleFunc("GET /modify", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "n", sm.GetInt(r.Context(), "n")+1)
		_, _ = w.Write(ok)
	})
	mux.HandleFunc("GET /add/{k}", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), r.PathValue("k"), 1)
		_, _ = w.Write(ok)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(countKeys(func(k string) bool { return sm.Exists(r.Context(), k) })))
	})
	h := sm.LoadAndSave(mux)
	return &target{
		name:       name,
		ours:       true,
		trips:      trips,
		pathTrips:  pathTrips,
		sql:        counter,
		pathKnown:  true,
		cookieName: sm.Cookie.Name,
		newClient:  func() client { return newHTTPClient(h, sm.Cookie.Name) },
		flush:      func() { _ = st.Flush(context.Background()) },
	}
}

var ok = []byte("ok")

// getInt and getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getInt(s *core.Session, key string) int       { v, _ := core.Value[int](s, key); return v }
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
