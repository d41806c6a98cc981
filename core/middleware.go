package core

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
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

// MiddlewareConfig configures Manager.Middleware. The zero value is ready
// to use.
type MiddlewareConfig struct {
	// Skip reports whether a request is served without a session (the
	// handler finds none: FromContext returns nil), for example static
	// assets. Optional. Default: no request is skipped, except those
	// SkipPaths names.
	Skip func(r *http.Request) bool

	// SkipPaths lists URL path prefixes served without a session, for
	// example "/static/". Optional.
	SkipPaths []string

	// ErrorHandler answers a request whose session could not be loaded or
	// saved. Optional. Default: the Manager's Config.ErrorHandler.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
}

// Skipper returns a function that reports whether a request is served
// without a session: when skip says so, or when path starts with one of
// prefixes. Adapters use it to implement their skip options. It returns
// nil when skip is nil and prefixes is empty.
func Skipper[R any](skip func(R) bool, path func(R) string, prefixes []string) func(R) bool {
	if skip == nil && len(prefixes) == 0 {
		return nil
	}
	prefixes = append([]string(nil), prefixes...)
	return func(r R) bool {
		if skip != nil && skip(r) {
			return true
		}
		if len(prefixes) > 0 {
			p := path(r)
			for _, pre := range prefixes {
				if strings.HasPrefix(p, pre) {
					return true
				}
			}
		}
		return false
	}
}

// Handler is net/http middleware: it loads the request's session, puts it
// in the request context (FromContext), runs next, and saves the session
// and writes its cookie just before the response headers go out — on the
// handler's first WriteHeader or Write, or when it returns having written
// nothing. Load and save failures go to Config.ErrorHandler instead of the
// handler's response, never after it. It is Middleware with a zero
// MiddlewareConfig.
//
// The ResponseWriter given to next keeps Flush, Hijack and the other
// optional interfaces reachable through http.NewResponseController (it
// implements Unwrap). Informational responses (103 Early Hints) pass
// through without committing the session.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return m.Middleware(MiddlewareConfig{})(next)
}

// Middleware returns net/http middleware configured by cfg; see Handler.
func (m *Manager) Middleware(cfg MiddlewareConfig) func(http.Handler) http.Handler {
	onError := cfg.ErrorHandler
	if onError == nil {
		onError = m.cfg.ErrorHandler
	}
	skip := Skipper(cfg.Skip, func(r *http.Request) string { return r.URL.Path }, cfg.SkipPaths)
	// fail answers a request whose save failed; made once, not per request.
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		// The handler's headers (Location, cookies, content type) belong to
		// the response that is not sent.
		clear(w.Header())
		onError(w, r, err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if skip != nil && skip(r) {
				next.ServeHTTP(w, r)
				return
			}
			s, err := m.LoadRequest(r)
			if err != nil {
				onError(w, r, err)
				return
			}
			sw := m.NewSaveWriter(w, r, s, fail)
			next.ServeHTTP(sw, r.WithContext(NewContext(r.Context(), s)))
			if sw.Commit() {
				m.CheckCommitted(s)
			}
		})
	}
}

// CheckCommitted is called by adapters after the handler returned and the
// session was saved. When the handler changed the session after it was
// saved — after the response headers went out, so the change cannot be
// saved nor its cookie sent — it logs the change at warning level with
// ErrChangedAfterCommit and returns that error; otherwise it returns nil.
func (m *Manager) CheckCommitted(s *Session) error {
	s.mu.Lock()
	late := !s.saved
	s.mu.Unlock()
	if !late {
		return nil
	}
	err := fmt.Errorf("%w (change the session before writing the response)", ErrChangedAfterCommit)
	m.log.Warn("hybridsession: session changed after the response was committed; the change is lost", "error", err)
	return err
}

// SaveWriter is an http.ResponseWriter that saves a session and writes its
// cookie (Manager.WriteCookie) just before the response header goes out:
// on the first WriteHeader with a final status, Write, Flush or Hijack.
// Informational statuses (103 Early Hints) pass through without saving.
// After a failed save it discards everything the handler writes. Manager's
// net/http middleware and the adapters of frameworks built on net/http
// (echo) use it; Unwrap keeps the wrapped writer's optional interfaces
// reachable through http.NewResponseController.
type SaveWriter struct {
	http.ResponseWriter
	m      *Manager
	s      *Session
	r      *http.Request
	onFail func(http.ResponseWriter, *http.Request, error)
	state  uint8 // pending, committed or failed
	err    error // the save error, once failed
}

// Commit states of a SaveWriter.
const (
	pending = iota
	committed
	failed
)

// NewSaveWriter returns a SaveWriter that saves s, with r's context, before
// the header of w goes out. When the save fails, onFail, if not nil, is
// called with w, r and the error at once, to answer the request; with a nil
// onFail the caller answers once the handler returned (see Commit and
// Err).
func (m *Manager) NewSaveWriter(w http.ResponseWriter, r *http.Request, s *Session, onFail func(http.ResponseWriter, *http.Request, error)) *SaveWriter {
	return &SaveWriter{ResponseWriter: w, m: m, s: s, r: r, onFail: onFail}
}

// Commit saves the session and writes its cookie, once, and reports
// whether the save succeeded. Middleware calls it after the handler
// returned, for handlers that wrote nothing.
func (w *SaveWriter) Commit() bool {
	switch w.state {
	case committed:
		return true
	case failed:
		return false
	}
	w.state = committed
	if err := w.m.Save(w.r.Context(), w.s); err != nil {
		w.state, w.err = failed, err
		if w.onFail != nil {
			w.onFail(w.ResponseWriter, w.r, err)
		}
		return false
	}
	w.m.WriteCookie(w.ResponseWriter.Header(), w.s)
	return true
}

// Err returns the error of a failed save, nil otherwise.
func (w *SaveWriter) Err() error { return w.err }

// WriteHeader commits the session and sends the header; an informational
// status passes through without committing. After a failed save it does
// nothing.
func (w *SaveWriter) WriteHeader(code int) {
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints): the real response is still to
		// come, and the handler may change the session until then.
		if w.state == pending {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	if w.Commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write commits the session and writes b. After a failed save it discards
// b and reports success, so the handler runs to its end undisturbed.
func (w *SaveWriter) Write(b []byte) (int, error) {
	if !w.Commit() {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush commits the session and flushes, so streaming handlers work; after
// a failed save it does nothing.
func (w *SaveWriter) Flush() {
	if w.Commit() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Hijack commits the session and hands over the connection (the cookie,
// if any, is not sent: the handler owns the connection). After a failed
// save it returns the save error.
func (w *SaveWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.Commit() {
		return nil, nil, w.err
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *SaveWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
