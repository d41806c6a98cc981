// Command scs is the demo application on plain net/http with
// github.com/alexedwards/scs/v2, whose session store is hybridsession's
// scsstore: a login, a cart and a visit counter kept in sessions shared
// through memcached and a database.
//
//	go run ./examples/scs -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8084
//
// The routes are in package scsapp; the flags and wiring in
// examples/internal/setup.
package main

import (
	"log"
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/examples/scs/scsapp"
)

func main() {
	opts := setup.ParseFlags(scsapp.Name, "127.0.0.1:8084")
	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
		// scs brings its own session manager: it needs only the Store.
		h, _, err := scsapp.New(m.Store())
		if err != nil {
			return nil, err
		}
		return &http.Server{Handler: h, ReadHeaderTimeout: setup.ReadHeaderTimeout}, nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
