// Command echo5 is the demo application on echo v5 with hybridsession's
// echo5session middleware: a login, a cart and a visit counter kept in
// sessions shared through memcached and a database.
//
//	go run ./examples/echo5 -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8086
//
// The routes are in package echo5app; the flags and wiring in
// examples/internal/setup.
package main

import (
	"log"
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/echo5/echo5app"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

func main() {
	opts := setup.ParseFlags(echo5app.Name, "127.0.0.1:8086")
	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
		return &http.Server{Handler: echo5app.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
