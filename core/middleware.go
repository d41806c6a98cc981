package core

import (
	"bufio"
	"context"
	"net"
	"net/http"
)

type ctxKey struct{}

// sessionCtx answers both FromContext's key and its session's Manager (Manager.FromContext), so
// several Managers cost one context node each.
type sessionCtx struct {
	context.Context
	s *Session
}

func (c *sessionCtx) Value(key any) any {
	if k, ok := key.(*Manager); key == (ctxKey{}) || ok && k == c.s.m {
		return c.s
	}
	return c.Context.Value(key)
}

// FromContext returns the session the middleware stored in ctx, nil when there is none; with several
// Managers, the innermost one's (see Manager.FromContext). ctx must be the request's context
// (r.Context(), c.Request.Context() in gin, c.Request().Context() in echo): a *gin.Context forwards
// lookups only with Engine.ContextWithFallback. Each adapter's Get takes the framework's context.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// FromContext returns the session m's middleware stored in ctx, nil when it did not run: with several
// Managers in one request (an admin and a user session under different cookie names) each finds its own.
func (m *Manager) FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(m).(*Session)
	return s
}

// Handler is net/http middleware: it loads the request's session into the request context
// (FromContext), runs next, and saves the session and adds its cookie as the response header goes out:
// on the first final WriteHeader, Write, Flush or Hijack, or when next returns having written nothing;
// informational responses (103 Early Hints) pass through. Failures go to Config.ErrorHandler, never
// after the handler's output: after a failed save next's output is discarded, and when it returns its
// headers are cleared and the error handler answers. next's writer implements Unwrap, for
// http.NewResponseController. Route paths that need no session (static assets) around Handler:
//
//	mux.Handle("/static/", static)
//	mux.Handle("/", m.Handler(app))
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ctx, err := m.LoadFrom(r.Context(), r.Header.Get)
		if err == nil {
			if err = m.serve(w, r.WithContext(ctx), s, next.ServeHTTP); err != nil {
				clear(w.Header()) // they described the response not sent
			}
		}
		if err != nil {
			m.cfg.ErrorHandler(w, r, err)
		}
	})
}

// Serve is Handler for adapters of frameworks built on net/http (echo) that answer failures their own
// way. It returns the load error (next did not run) or the save error (next ran and its output was
// discarded); the caller then answers on w, where only informational responses went out. A panic in
// next propagates; the session is then saved only if the response had started.
func (m *Manager) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) error {
	s, ctx, err := m.LoadFrom(r.Context(), r.Header.Get)
	if err != nil {
		return err
	}
	return m.serve(w, r.WithContext(ctx), s, next)
}

func (m *Manager) serve(w http.ResponseWriter, r *http.Request, s *Session, next http.HandlerFunc) error {
	sw := &saveWriter{ResponseWriter: w, r: r, s: s}
	next(sw, r)
	if sw.commit() {
		_ = m.SaveTo(r.Context(), s, true, nil) // logs a change made after the commit
	}
	return sw.err
}

// saveWriter saves the session as the response header goes out, and discards output after a failed save.
type saveWriter struct {
	http.ResponseWriter
	r    *http.Request
	s    *Session
	done bool  // commit ran
	err  error // its error
}

// commit saves the session once, and reports whether that succeeded.
func (w *saveWriter) commit() bool {
	if !w.done {
		w.done = true
		https := w.r.TLS != nil || w.r.Header.Get("X-Forwarded-Proto") == "https"
		w.err = w.s.m.SaveTo(w.r.Context(), w.s, https, w.ResponseWriter.Header().Add)
	}
	return w.err == nil
}

func (w *saveWriter) WriteHeader(code int) {
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		if !w.done { // the handler may change the session until the real response
			w.ResponseWriter.WriteHeader(code)
		}
	} else if w.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write reports success after a failed save, so the handler runs its course.
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

// Hijack commits first: the cookie is not sent, but the session is saved.
func (w *saveWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.commit() {
		return nil, nil, w.err
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *saveWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
