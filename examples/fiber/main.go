// Command fiber is the demo application on fiber v2 with hybridsession's
// fibersession middleware: a login, a cart and a visit counter kept in
// sessions shared through memcached and a database.
//
//	go run ./examples/fiber -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8083
//
// The routes are in package fiberapp; the flags and wiring in
// examples/internal/setup.
package main

import (
	"log"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/fiber/fiberapp"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

func main() {
	opts := setup.ParseFlags(fiberapp.Name, "127.0.0.1:8083")
	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
		return fiberapp.Server{App: fiberapp.New(m)}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
