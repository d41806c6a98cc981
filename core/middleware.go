package core

import (
	"context"
	"net/http"
)

type ctxKey struct{}

// NewContext returns a copy of ctx that carries s. Adapters use it; handlers
// get the session back with FromContext.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the session stored in ctx by the middleware, or nil
// when there is none (the handler is not behind the middleware).
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// Handler is net/http middleware: it loads the request's session, puts it
// in the request context (FromContext), runs next, and saves the session
// and writes its cookie just before the response headers go out — on the
// handler's first WriteHeader or Write, or when it returns having written
// nothing. Load and save failures go to Config.ErrorHandler instead of the
// handler's response, never after it.
//
// The ResponseWriter given to next keeps Flush, Hijack and the other
// optional interfaces reachable through http.NewResponseController (it
// implements Unwrap).
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.LoadRequest(r)
		if err != nil {
			m.cfg.ErrorHandler(w, r, err)
			return
		}
		sw := &sessionWriter{ResponseWriter: w, m: m, s: s, r: r}
		next.ServeHTTP(sw, r.WithContext(NewContext(r.Context(), s)))
		sw.commit()
	})
}

// sessionWriter saves the session before the first byte of the response.
type sessionWriter struct {
	http.ResponseWriter
	m         *Manager
	s         *Session
	r         *http.Request
	committed bool
	failed    bool // the save failed and the error handler answered
}

// commit saves the session and writes its cookie, once. It reports false
// when the save failed: the error handler has answered the request, and
// the handler's own output must be dropped.
func (w *sessionWriter) commit() bool {
	if w.committed {
		return !w.failed
	}
	w.committed = true
	if err := w.m.Save(w.r.Context(), w.s); err != nil {
		w.failed = true
		// The handler's headers (Location, cookies, content type) belong
		// to the response that is not sent.
		clear(w.ResponseWriter.Header())
		w.m.cfg.ErrorHandler(w.ResponseWriter, w.r, err)
		return false
	}
	w.m.WriteCookie(w.ResponseWriter.Header(), w.s)
	return true
}

func (w *sessionWriter) WriteHeader(code int) {
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints): the real response is still to
		// come, and the handler may change the session until then.
		if !w.committed {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	if w.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	if !w.commit() {
		return len(b), nil // swallowed: the error response is already out
	}
	return w.ResponseWriter.Write(b)
}

// Flush commits the session and flushes, so streaming handlers work.
func (w *sessionWriter) Flush() {
	if w.commit() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Unwrap returns the underlying ResponseWriter for http.ResponseController.
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
