package main

import (
	"context"
	"log"
	"net"
	"net/http"

	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/labstack/echo/v4"
)

func main() {
	store := memcachedStore()
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}

	e := echo.New()
	e.Use(echosession.New(m, echosession.Config{}))
	e.GET("/put", func(c echo.Context) error {
		echosession.Get(c).Put("greeting", want)
		return c.String(http.StatusOK, "stored")
	})
	e.GET("/get", func(c echo.Context) error {
		v, _ := core.Value[string](echosession.Get(c), "greeting")
		return c.String(http.StatusOK, v)
	})
	check("echo v4 (echosession)", func(ln net.Listener) error { return http.Serve(ln, e) })
}
