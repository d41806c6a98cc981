// gormstore on postgres, database-only: the value read back comes from the row.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/postgres"
)

func main() {
	db, err := postgres.Open(os.Getenv("DSN"))
	if err != nil {
		log.Fatal(err)
	}
	durable, err := gormstore.New(db, gormstore.Config{TableName: os.Getenv("TABLE")})
	if err != nil {
		log.Fatal(err)
	}
	keys, err := core.ParseSealKeys(os.Getenv("HYBRIDSESSION_SEAL_KEYS"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := core.NewStore(core.StoreConfig{Durable: durable, Seal: core.SealConfig{Keys: keys}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := core.New(core.Config{Store: store, DurableKeys: []string{"greeting"}})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("greeting", want)
		fmt.Fprint(w, "stored")
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		v, _ := core.Value[string](core.FromContext(r.Context()), "greeting")
		fmt.Fprint(w, v)
	})
	check("postgres (gormstore/postgres, net/http)", func(ln net.Listener) error { return http.Serve(ln, m.Handler(mux)) })
	if err := store.Close(context.Background()); err != nil {
		log.Fatal(err)
	}
	if err := db.Exec("DROP TABLE " + os.Getenv("TABLE")).Error; err != nil {
		log.Fatal(err)
	}
}
