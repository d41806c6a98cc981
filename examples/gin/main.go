// Command gin is the demo application on gin with hybridsession's
// ginsession middleware: a login, a cart and a visit counter kept in
// sessions shared through memcached and a database.
//
//	go run ./examples/gin -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8081
//
// The routes are in package ginapp; the flags and wiring in
// examples/internal/setup.
package main

import (
	"log"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/gin/ginapp"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

func main() {
	opts := setup.ParseFlags(ginapp.Name, "127.0.0.1:8081")
	gin.SetMode(gin.ReleaseMode)
	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
		return &http.Server{Handler: ginapp.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
