package main

import (
	"context"
	"log"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
)

func main() {
	store := memcachedStore()
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/put", func(c *gin.Context) {
		ginsession.Get(c).Put("greeting", want)
		c.String(http.StatusOK, "stored")
	})
	r.GET("/get", func(c *gin.Context) {
		v, _ := core.Value[string](ginsession.Get(c), "greeting")
		c.String(http.StatusOK, v)
	})
	check("gin (ginsession)", func(ln net.Listener) error { return http.Serve(ln, r) })
}
