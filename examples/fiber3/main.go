// Command fiber3 is the demo application on fiber v3 with hybridsession's
// fiber3session middleware: a login, a cart and a visit counter kept in
// sessions shared through memcached and a database.
//
//	go run ./examples/fiber3 -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8087
//
// The routes are in package fiber3app; the flags and wiring in
// examples/internal/setup.
package main

import (
	"log"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/fiber3/fiber3app"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

func main() {
	opts := setup.ParseFlags(fiber3app.Name, "127.0.0.1:8087")
	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
		return fiber3app.Server{App: fiber3app.New(m)}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
