package sqlite_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

// From nothing to sessions: one call opens the database and builds the
// tiers and the Manager; pass memcached servers after the path (none here,
// so that the example runs anywhere: database only).
func ExampleStart() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	m, closeSessions, err := sqlite.Start(filepath.Join(dir, "sessions.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := closeSessions(); err != nil { // writes pending rows, closes the database
			log.Print(err)
		}
	}()

	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		n, _ := core.Value[int](s, "visits")
		n++
		s.Put("visits", n)
		fmt.Fprintf(w, "visit %d", n)
	}))
	var cookie *http.Cookie
	for range 2 {
		req := httptest.NewRequest(http.MethodGet, "https://localhost/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if cs := rec.Result().Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		fmt.Println(rec.Body.String())
	}
	// Output:
	// visit 1
	// visit 2
}
