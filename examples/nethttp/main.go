// Command nethttp is the demo application on the standard library alone,
// with hybridsession's net/http middleware (core.Manager.Handler): a login,
// a cart and a visit counter kept in sessions shared through memcached and
// a database.
//
//	go run ./examples/nethttp -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8085
//
// The routes are in package nethttpapp; the flags and wiring in
// examples/internal/setup.
package main

import (
	"log"
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/examples/nethttp/nethttpapp"
)

func main() {
	opts := setup.ParseFlags(nethttpapp.Name, "127.0.0.1:8085")
	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
		return &http.Server{Handler: nethttpapp.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
