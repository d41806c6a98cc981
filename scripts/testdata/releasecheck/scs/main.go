package main

import (
	"context"
	"log"
	"net"
	"net/http"

	"github.com/alexedwards/scs/v2"
	"github.com/hybridsession/hybridsession/scsstore"
)

func main() {
	store := memcachedStore()
	defer store.Close(context.Background())
	scsStore, err := scsstore.New(store, scsstore.Config{})
	if err != nil {
		log.Fatal(err)
	}
	sessionManager := scs.New()
	sessionManager.Store = scsStore

	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		sessionManager.Put(r.Context(), "greeting", want)
		w.Write([]byte("stored"))
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(sessionManager.GetString(r.Context(), "greeting")))
	})
	check("scs (scsstore)", func(ln net.Listener) error { return http.Serve(ln, sessionManager.LoadAndSave(mux)) })
}
