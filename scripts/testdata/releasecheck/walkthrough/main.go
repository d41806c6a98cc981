// README's "Start in three statements", then core's net/http middleware.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

func main() {
	m, closeSessions, err := sqlite.Start("sessions.db", os.Getenv("HYBRIDSESSION_MEMCACHED"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := closeSessions(); err != nil {
			log.Print(err)
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("greeting", want)
		fmt.Fprint(w, "stored")
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		v, _ := core.Value[string](core.FromContext(r.Context()), "greeting")
		fmt.Fprint(w, v)
	})
	check("walkthrough (sqlite.Start, net/http)", func(ln net.Listener) error { return http.Serve(ln, m.Handler(mux)) })
}
