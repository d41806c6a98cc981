// Package echo5app is the demo application (see examples/internal/demo) on
// echo v5, with sessions from echo5session. examples/echo5 serves it alone
// and examples/cluster behind a load balancer.
package echo5app

import (
	"net/http"

	"github.com/hybridsession/hybridsession/adapters/echo5session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
)

// Name is the framework's name on the page and in X-Served-By.
const Name = "echo5"

// New returns the demo's routes on echo v5, with sessions from m.
func New(m *core.Manager) *echo.Echo {
	e := echo.New()
	e.Use(middleware.Recover())
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			c.Response().Header().Set(demo.HeaderServedBy, Name)
			return next(c)
		}
	})
	e.Use(echo5session.New(m, echo5session.Config{}))

	e.GET("/", func(c *echo.Context) error {
		page, err := demo.Page(demo.Visit(session(c), Name))
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, demo.ContentTypeHTML, page)
	})
	e.GET("/api/state", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, demo.Read(session(c), Name))
	})
	e.POST("/login", func(c *echo.Context) error {
		return done(c, demo.Login(session(c), c.FormValue("name")))
	})
	e.POST("/cart/add", func(c *echo.Context) error {
		return done(c, demo.AddToCart(session(c), c.FormValue("item")))
	})
	e.POST("/logout", func(c *echo.Context) error {
		return done(c, demo.Logout(session(c)))
	})
	return e
}

func session(c *echo.Context) demo.Session {
	return demo.Core(c.Request().Context(), echo5session.Get(c))
}

// done answers a form post: back to the page, or the error.
func done(c *echo.Context, err error) error {
	if err != nil {
		return c.String(demo.StatusCode(err), demo.ErrorText(err))
	}
	return c.Redirect(http.StatusSeeOther, "/")
}
