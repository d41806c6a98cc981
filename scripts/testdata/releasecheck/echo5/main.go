package main

import (
	"context"
	"log"
	"net"
	"net/http"

	"github.com/hybridsession/hybridsession/adapters/echo5session"
	"github.com/hybridsession/hybridsession/core"
	"github.com/labstack/echo/v5"
)

func main() {
	store := memcachedStore()
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}

	e := echo.New()
	e.Use(echo5session.New(m, echo5session.Config{}))
	e.GET("/put", func(c *echo.Context) error {
		echo5session.Get(c).Put("greeting", want)
		return c.String(http.StatusOK, "stored")
	})
	e.GET("/get", func(c *echo.Context) error {
		v, _ := core.Value[string](echo5session.Get(c), "greeting")
		return c.String(http.StatusOK, v)
	})
	check("echo v5 (echo5session)", func(ln net.Listener) error { return http.Serve(ln, e) })
}
