// Command echo is the demo application on echo with hybridsession's
// echosession middleware: a login, a cart and a visit counter kept in
// sessions shared through memcached and a database.
//
//	go run ./examples/echo -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8082
//
// The routes are in package echoapp; the flags and wiring in
// examples/internal/setup.
package main

import (
	"log"
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/echo/echoapp"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

func main() {
	opts := setup.ParseFlags(echoapp.Name, "127.0.0.1:8082")
	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
		return &http.Server{Handler: echoapp.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
