// Package fiber3app is the demo application (see examples/internal/demo) on
// fiber v3, with sessions from fiber3session. examples/fiber3 serves it
// alone and examples/cluster behind a load balancer.
package fiber3app

import (
	"context"
	"net"
	"strings"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/recover"
	"github.com/hybridsession/hybridsession/adapters/fiber3session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
)

// Name is the framework's name on the page and in X-Served-By.
const Name = "fiber3"

// New returns the demo's routes on fiber v3, with sessions from m.
func New(m *core.Manager) *fiber.App {
	app := fiber.New()
	app.Use(recover.New())
	app.Use(func(c fiber.Ctx) error {
		c.Set(demo.HeaderServedBy, Name)
		return c.Next()
	})
	app.Use(fiber3session.New(m, fiber3session.Config{}))

	app.Get("/", func(c fiber.Ctx) error {
		page, err := demo.Page(demo.Visit(session(c), Name))
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, demo.ContentTypeHTML)
		return c.Send(page)
	})
	app.Get("/api/state", func(c fiber.Ctx) error {
		return c.JSON(demo.Read(session(c), Name))
	})
	app.Post("/login", func(c fiber.Ctx) error {
		return done(c, demo.Login(session(c), form(c, "name")))
	})
	app.Post("/cart/add", func(c fiber.Ctx) error {
		return done(c, demo.AddToCart(session(c), form(c, "item")))
	})
	app.Post("/logout", func(c fiber.Ctx) error {
		return done(c, demo.Logout(session(c)))
	})
	return app
}

func session(c fiber.Ctx) demo.Session {
	return demo.Core(c.Context(), fiber3session.Get(c))
}

// form returns a copy of a form value: fiber's strings point into buffers
// that the next request reuses, and this one is kept in the session.
func form(c fiber.Ctx, key string) string {
	return strings.Clone(c.FormValue(key))
}

// done answers a form post: back to the page, or the error.
func done(c fiber.Ctx, err error) error {
	if err != nil {
		return c.Status(demo.StatusCode(err)).SendString(demo.ErrorText(err))
	}
	return c.Redirect().Status(fiber.StatusSeeOther).To("/")
}

// Server serves a fiber App as a setup.Server.
type Server struct{ App *fiber.App }

// Serve serves the App on l until Shutdown.
func (s Server) Serve(l net.Listener) error {
	return s.App.Listener(l, fiber.ListenConfig{DisableStartupMessage: true})
}

// Shutdown stops the App, waiting for requests in flight until ctx ends.
func (s Server) Shutdown(ctx context.Context) error { return s.App.ShutdownWithContext(ctx) }
