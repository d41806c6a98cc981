package scsstore_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/alexedwards/scs/v2"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/scsstore"
)

// Testing scs handlers without memcached or a database (docs/testing.md):
// the core Store keeps sessions in memory, like scs's memstore; the test
// copies the cookie of the login response to the next request and reads the
// stored session with scs's own Load.
func Example_testing() {
	tiers, err := core.NewStore(core.StoreConfig{
		Durable: durabletest.NewMemory(),
		Seal:    core.SealConfig{Keys: [][]byte{core.NewSealKey()}},
	})
	if err != nil {
		panic(err)
	}
	defer tiers.Close(context.Background())
	store, err := scsstore.New(tiers, scsstore.Config{})
	if err != nil {
		panic(err)
	}
	sessionManager := scs.New()
	sessionManager.Store = store
	sessionManager.HashTokenInStore = true

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := sessionManager.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sessionManager.Put(r.Context(), "user", r.FormValue("user"))
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sessionManager.GetString(r.Context(), "user"))
	})
	handler := sessionManager.LoadAndSave(mux)

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/login?user=ada", nil))
	cookie := rec.Result().Cookies()[0]

	req := httptest.NewRequest(http.MethodGet, "/me", nil)
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())

	ctx, err := sessionManager.Load(context.Background(), cookie.Value)
	if err != nil {
		panic(err)
	}
	fmt.Println("stored:", sessionManager.GetString(ctx, "user"))
	// Output:
	// 200 ada
	// stored: ada
}
