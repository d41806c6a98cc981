// Package nethttpapp is the demo application (see examples/internal/demo) on
// the standard library alone, with sessions from core's net/http middleware
// (core.Manager.Handler). examples/nethttp serves it alone and
// examples/cluster behind a load balancer.
package nethttpapp

import (
	"encoding/json"
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
)

// Name is the framework's name on the page and in X-Served-By.
const Name = "net/http"

// New returns the demo's routes on an http.ServeMux, with sessions from m.
func New(m *core.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page, err := demo.Page(demo.Visit(session(r), Name))
		if err != nil {
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", demo.ContentTypeHTML)
		w.Write(page)
	})
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, demo.Read(session(r), Name))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		done(w, r, demo.Login(session(r), r.PostFormValue("name")))
	})
	mux.HandleFunc("POST /cart/add", func(w http.ResponseWriter, r *http.Request) {
		done(w, r, demo.AddToCart(session(r), r.PostFormValue("item")))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		done(w, r, demo.Logout(session(r)))
	})
	servedBy := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(demo.HeaderServedBy, Name)
			next.ServeHTTP(w, r)
		})
	}
	return servedBy(m.Handler(mux))
}

func session(r *http.Request) demo.Session {
	return demo.Core(r.Context(), core.FromContext(r.Context()))
}

// done answers a form post: back to the page, or the error.
func done(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		http.Error(w, demo.ErrorText(err), demo.StatusCode(err))
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
	}
}
