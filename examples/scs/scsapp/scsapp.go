// Package scsapp is the demo application (see examples/internal/demo) on
// plain net/http with an scs.SessionManager whose store is scsstore: scs's
// own session API, hybridsession's two tiers underneath. examples/scs
// serves it.
//
// Unlike the core.Manager samples, scs writes whole sessions: a new session
// reaches the database at once and later changes within SyncInterval (the
// Store's background writer), with no durable keys, and scs has no session
// subject (no "log out everywhere").
package scsapp

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
	"github.com/hybridsession/hybridsession/scsstore"
)

// Name is the name on the page and in X-Served-By.
const Name = "scs"

// New returns the demo's routes on net/http with an scs.SessionManager
// keeping sessions in tiers, and the SessionManager.
func New(tiers *core.Store) (http.Handler, *scs.SessionManager, error) {
	store, err := scsstore.New(tiers, scsstore.Config{})
	if err != nil {
		return nil, nil, err
	}
	sm := scs.New()
	sm.Store = store
	sm.IdleTimeout = 30 * time.Minute // scs's default is none: match the core's
	sm.Lifetime = 24 * time.Hour
	// The sample serves plain HTTP on localhost, and browsers do not send a
	// Secure cookie over plain HTTP. Behind TLS set it to true.
	sm.Cookie.Secure = false
	sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		code := core.StatusCode(err)
		http.Error(w, http.StatusText(code), code)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page, err := demo.Page(demo.Visit(session(sm, r), Name))
		if err != nil {
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", demo.ContentTypeHTML)
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(demo.Read(session(sm, r), Name))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		done(w, r, demo.Login(session(sm, r), r.PostFormValue("name")))
	})
	mux.HandleFunc("POST /cart/add", func(w http.ResponseWriter, r *http.Request) {
		done(w, r, demo.AddToCart(session(sm, r), r.PostFormValue("item")))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		done(w, r, demo.Logout(session(sm, r)))
	})
	return servedBy(sm.LoadAndSave(mux)), sm, nil
}

func servedBy(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(demo.HeaderServedBy, Name)
		next.ServeHTTP(w, r)
	})
}

// done answers a form post: back to the page, or the error.
func done(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		http.Error(w, demo.ErrorText(err), demo.StatusCode(err))
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// session adapts scs's session of r to demo.Session.
func session(sm *scs.SessionManager, r *http.Request) demo.Session {
	return scsSession{r.Context(), sm}
}

type scsSession struct {
	ctx context.Context
	sm  *scs.SessionManager
}

func (s scsSession) Get(key string) any        { return s.sm.Get(s.ctx, key) }
func (s scsSession) Put(key string, value any) { s.sm.Put(s.ctx, key, value) }
func (s scsSession) RenewToken() error         { return s.sm.RenewToken(s.ctx) }
func (s scsSession) SetSubject(string)         {} // scs has no session subject
func (s scsSession) Destroy() error            { return s.sm.Destroy(s.ctx) }
