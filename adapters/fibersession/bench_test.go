package fibersession_test

import (
	"fmt"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/valyala/fasthttp"
)

// BenchmarkMiddleware measures one request on an existing session through
// the middleware, without network for HTTP (fiber's fasthttp handler called
// with a fasthttp.RequestCtx, fiber's counterpart of httptest.NewRecorder)
// and with a real memcached: "read" loads and reads (one memcached get; the
// activity refresh is throttled to once a minute), "modify" loads and puts
// (a get and a compare-and-swap).
func BenchmarkMiddleware(b *testing.B) {
	m, _ := newManager(b, core.CookieConfig{})
	app := newApp()
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/read", func(c *fiber.Ctx) error {
		return c.SendString(fmt.Sprint(getInt(fibersession.Get(c), "n")))
	})
	app.Get("/modify", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		s.Put("n", getInt(s, "n")+1)
		return c.SendString("ok")
	})
	h := app.Handler()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/modify")
	h(&ctx)
	var ck fasthttp.Cookie
	if err := ck.Parse(string(ctx.Response.Header.PeekCookie("session"))); err != nil || len(ck.Value()) == 0 {
		b.Fatalf("no session cookie: %v", err)
	}
	token := string(ck.Value())
	for _, path := range []string{"/read", "/modify"} {
		b.Run(path[1:], func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.SetRequestURI(path)
				ctx.Request.Header.SetCookie("session", token)
				h(&ctx)
				if code := ctx.Response.StatusCode(); code != fiber.StatusOK {
					b.Fatalf("status %d", code)
				}
			}
		})
	}
}
