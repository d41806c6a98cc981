package scsstore_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/alexedwards/scs/v2"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
	"github.com/hybridsession/hybridsession/scsstore"
)

// Example serves an scs application from an scsstore.Store and logs a user
// in. It runs on the embedded SQLite tier alone; in production add your
// memcached servers to core.StoreConfig.Memcached.
func Example() {
	dir, err := os.MkdirTemp("", "scsstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(filepath.Join(dir, "sessions.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { sqlDB, _ := db.DB(); sqlDB.Close() }()
	durable, err := gormstore.New(db, gormstore.Config{})
	if err != nil {
		log.Fatal(err)
	}

	tiers, err := core.NewStore(core.StoreConfig{
		// Memcached: core.MemcachedConfig{Servers: []string{"127.0.0.1:11211"}},
		Durable: durable,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tiers.Close(context.Background())
	store, err := scsstore.New(tiers, scsstore.Config{Iterable: true})
	if err != nil {
		log.Fatal(err)
	}

	sessionManager := scs.New()
	sessionManager.Store = store
	sessionManager.HashTokenInStore = true // required with Iterable: only hashes are kept

	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := sessionManager.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sessionManager.Put(r.Context(), "user", r.URL.Query().Get("user"))
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sessionManager.GetString(r.Context(), "user"))
	})
	handler := sessionManager.LoadAndSave(mux)

	login := httptest.NewRecorder()
	handler.ServeHTTP(login, httptest.NewRequest("GET", "/login?user=alice", nil))

	req := httptest.NewRequest("GET", "/whoami", nil)
	for _, c := range login.Result().Cookies() {
		req.AddCookie(c)
	}
	whoami := httptest.NewRecorder()
	handler.ServeHTTP(whoami, req)
	fmt.Println("logged in as", whoami.Body.String())

	// Iterate lists every live session (Config.Iterable).
	err = sessionManager.Iterate(context.Background(), func(ctx context.Context) error {
		fmt.Println("session of", sessionManager.GetString(ctx, "user"))
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// logged in as alice
	// session of alice
}
