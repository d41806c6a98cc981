// Package ginapp is the demo application (see examples/internal/demo) on
// gin, with sessions from ginsession. examples/gin serves it alone and
// examples/cluster behind a load balancer.
package ginapp

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
)

// Name is the framework's name on the page and in X-Served-By.
const Name = "gin"

// New returns the demo's routes on gin, with sessions from m.
func New(m *core.Manager) *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery())
	r.Use(func(c *gin.Context) { c.Header(demo.HeaderServedBy, Name) })
	r.Use(ginsession.New(m, ginsession.Config{}))

	r.GET("/", func(c *gin.Context) {
		page, err := demo.Page(demo.Visit(session(c), Name))
		if err != nil {
			_ = c.AbortWithError(http.StatusInternalServerError, err)
			return
		}
		c.Data(http.StatusOK, demo.ContentTypeHTML, page)
	})
	r.GET("/api/state", func(c *gin.Context) {
		c.JSON(http.StatusOK, demo.Read(session(c), Name))
	})
	r.POST("/login", func(c *gin.Context) {
		done(c, demo.Login(session(c), c.PostForm("name")))
	})
	r.POST("/cart/add", func(c *gin.Context) {
		done(c, demo.AddToCart(session(c), c.PostForm("item")))
	})
	r.POST("/logout", func(c *gin.Context) {
		done(c, demo.Logout(session(c)))
	})
	return r
}

func session(c *gin.Context) demo.Session {
	return demo.Core(c.Request.Context(), ginsession.Get(c))
}

// done answers a form post: back to the page, or the error.
func done(c *gin.Context, err error) {
	if err != nil {
		c.String(demo.StatusCode(err), demo.ErrorText(err))
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}
