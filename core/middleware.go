package core

import (
	"bufio"
	"context"
	"net"
	"net/http"
)

type ctxKey struct{}

// sessionCtx is the context NewContext returns: one node that answers both
// the package-level key (FromContext) and its session's Manager
// (Manager.FromContext), so each Manager in a chain keeps its own accessor
// for the price of a single context.WithValue.
type sessionCtx struct {
	context.Context
	s *Session
}

func (c *sessionCtx) Value(key any) any {
	switch k := key.(type) {
	case ctxKey:
		return c.s
	case *Manager:
		if k == c.s.m {
			return c.s
		}
	}
	return c.Context.Value(key)
}

// NewContext returns a copy of ctx that carries s. Adapters use it; handlers
// get the session back with FromContext, or with the session's
// Manager.FromContext when several Managers serve one request.
func NewContext(ctx context.Context, s *Session) context.Context {
	return &sessionCtx{Context: ctx, s: s}
}

// FromContext returns the session stored in ctx by the middleware, or nil
// when there is none (the handler is not behind the middleware). When the
// middleware of several Managers ran for the request it returns the
// session of the innermost one; use Manager.FromContext to choose.
//
// ctx must be the request's context (r.Context() in net/http,
// c.Request.Context() in gin, c.Request().Context() in echo): a
// framework's own context type does not always forward lookups to it
// (*gin.Context does so only with Engine.ContextWithFallback). Each
// adapter's Get takes the framework's context and needs no such care.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// FromContext returns the session that m's middleware stored in ctx, or nil
// when m's middleware did not run for the request. With several Managers
// in one request (an admin session and a user session under different
// cookie names) each Manager finds its own session here, whatever the
// order of the middleware.
func (m *Manager) FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(m).(*Session)
	return s
}

// Handler is net/http middleware: it loads the request's session, puts it
// in the request context (FromContext), runs next, and saves the session
// and writes its cookie just before the response header goes out — on the
// handler's first WriteHeader with a final status, Write, Flush or Hijack,
// or when it returns having written nothing. Load and save failures go to
// Config.ErrorHandler instead of the handler's response, never after it:
// after a failed save whatever the handler writes is discarded, and once it
// returns the headers it set are cleared and the error handler answers.
//
// The ResponseWriter given to next keeps Flush, Hijack and the other
// optional interfaces reachable through http.NewResponseController (it
// implements Unwrap). Informational responses (103 Early Hints) pass
// through without committing the session. To serve some paths without a
// session (static assets), route them around Handler:
//
//	mux.Handle("/static/", static)
//	mux.Handle("/", m.Handler(app))
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.LoadFrom(r.Context(), r.Header.Get)
		if err == nil {
			if err = m.serve(w, r, s, next.ServeHTTP); err != nil {
				// The handler's headers (Location, cookies) belong to the
				// response that is not sent.
				clear(w.Header())
			}
		}
		if err != nil {
			m.cfg.ErrorHandler(w, r, err)
		}
	})
}

// Serve is Handler for adapters of frameworks built on net/http (echo),
// which answer failures in their own way: it loads r's session and runs
// next with a request whose context carries it and a writer that saves it
// like Handler's. It returns the load error (next did not run) or the save
// error (next ran, and everything it wrote was discarded); the caller then
// answers on w, where nothing but informational responses was sent. A
// panic in next propagates, and the session is not saved unless the
// response had started.
func (m *Manager) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) error {
	s, err := m.LoadFrom(r.Context(), r.Header.Get)
	if err != nil {
		return err
	}
	return m.serve(w, r, s, next)
}

func (m *Manager) serve(w http.ResponseWriter, r *http.Request, s *Session, next func(http.ResponseWriter, *http.Request)) error {
	r = r.WithContext(NewContext(r.Context(), s))
	sw := &saveWriter{ResponseWriter: w, m: m, r: r, s: s}
	next(sw, r)
	if sw.commit() {
		_ = m.SaveTo(r.Context(), s, true, nil) // logs a change made after the commit
	}
	return sw.err
}

// saveWriter saves a session and adds its cookie just before the response
// header goes out, and discards the handler's output after a failed save.
type saveWriter struct {
	http.ResponseWriter
	m    *Manager
	r    *http.Request
	s    *Session
	done bool  // commit ran
	err  error // its error
}

// commit saves the session and adds its cookie, once, and reports whether
// the save succeeded.
func (w *saveWriter) commit() bool {
	if !w.done {
		w.done = true
		https := w.r.TLS != nil || w.r.Header.Get("X-Forwarded-Proto") == "https"
		w.err = w.m.SaveTo(w.r.Context(), w.s, https, w.ResponseWriter.Header().Add)
	}
	return w.err == nil
}

// WriteHeader commits the session and sends the header. An informational
// status (103 Early Hints) passes through before the commit: the handler
// may still change the session until the real response.
func (w *saveWriter) WriteHeader(code int) {
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		if !w.done {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	if w.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write commits the session and writes b. After a failed save it discards
// b and reports success, so the handler runs to its end undisturbed.
func (w *saveWriter) Write(b []byte) (int, error) {
	if !w.commit() {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *saveWriter) Flush() {
	if w.commit() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Hijack commits the session (its cookie is not sent: the handler owns the
// connection) and hands over the connection, or returns the save error.
func (w *saveWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.commit() {
		return nil, nil, w.err
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *saveWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
