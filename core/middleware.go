package core

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

type ctxKey struct{}

// sessionCtx answers both FromContext's key and its Manager's: one context node per Manager.
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

// FromContext returns the session the innermost middleware stored in ctx, or nil, whose methods panic naming the
// middleware to mount; Manager.FromContext picks a Manager's, adapters' Get their own. ctx is the request's:
// r.Context(), c.Request.Context() in gin (the *gin.Context with ContextWithFallback), c.Request().Context() in echo.
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

// Handler is net/http middleware: it loads the session into the request context (FromContext), runs next,
// and saves the session and adds its cookie on the first final WriteHeader, Write, Flush or Hijack, or when
// next returns having written nothing; 1xx responses pass through. Failures go to Config.ErrorHandler, never
// after next's output: a failed save discards it, and clears its headers once next returns. next's writer
// implements Unwrap (http.NewResponseController). Mount paths needing no session (static assets) outside.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.serve(w, r, next.ServeHTTP, true); err != nil {
			m.cfg.ErrorHandler(w, r, err)
		}
	})
}

// Serve is Handler for frameworks on net/http (echo) that answer failures their own way: it returns the
// load error (next did not run) or save error (next's output discarded, only 1xx sent), for the caller to
// answer on w. A panic in next propagates; the session is then saved only if the response had started.
func (m *Manager) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) error {
	return m.serve(w, r, next, false)
}

// serve is Serve; clearHeaders clears the headers of the response a failed save discarded.
func (m *Manager) serve(w http.ResponseWriter, r *http.Request, next http.HandlerFunc, clearHeaders bool) error {
	s, ctx, err := m.LoadFrom(r.Context(), r.Header.Get)
	if err != nil {
		return err
	}
	r = r.WithContext(ctx)
	sw := &saveWriter{ResponseWriter: w, r: r, s: s}
	next(sw, r)
	if sw.commit() {
		_ = m.SaveTo(r.Context(), s, true, nil) // logs a change made after the commit
	} else if clearHeaders {
		clear(w.Header())
	}
	return sw.err
}

// LoadFrom is Load of the token in the cookie or Config.TokenHeader, for adapters; header returns a request
// header like r.Header.Get, copied if the framework reuses buffers (fasthttp): the Session keeps the token.
// It returns the session and a copy of ctx carrying it (FromContext). Errors are Load's, and logged (once a
// minute per Store) for the error handlers.
func (m *Manager) LoadFrom(ctx context.Context, header func(name string) string) (*Session, context.Context, error) {
	var token string
	if m.cfg.TokenHeader == "" {
		token = cookieValue(header("Cookie"), m.cfg.Cookie.Name)
	} else if token = strings.TrimSpace(header(m.cfg.TokenHeader)); m.bearer {
		scheme, cred, ok := strings.Cut(token, " ") // Authorization: Bearer <token>
		token = ""
		if ok && strings.EqualFold(scheme, "Bearer") {
			token = strings.TrimSpace(cred)
		}
	}
	s, err := m.Load(ctx, token)
	if err != nil {
		m.store.warn.log("load", "hybridsession: session could not be loaded", err)
		return nil, ctx, err
	}
	return s, &sessionCtx{Context: ctx, s: s}, nil
}

// cookieValue returns the unquoted value of the first cookie called name in a Cookie header, "" when there
// is none. It scans in place: http.Request.Cookie allocates every cookie it parses.
func cookieValue(line, name string) string {
	for part := range strings.SplitSeq(line, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == name {
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// isToken reports whether s is empty or an HTTP token (RFC 9110), as header and cookie names must be.
func isToken(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

// SaveTo is Save for adapters, called just before the response header goes out. For a created, renewed or
// destroyed session it then adds Set-Cookie (expired once destroyed), "Vary: Cookie" and `Cache-Control:
// no-cache="Set-Cookie"`, so shared caches never hand a cookie to another user; in header mode,
// Config.TokenResponseHeader, "Vary: <TokenHeader>" and "Cache-Control: no-store". https says if the request
// came over HTTPS: a Secure cookie set on plain HTTP is logged, as browsers drop it outside localhost. On error
// (Save's) it adds nothing. Adapters call it again when the handler returns: it adds nothing (addHeader may be
// nil), and returns an error wrapping ErrChangedAfterCommit for a change made since, which is lost. Warnings
// and errors are logged at most once a minute per kind.
func (m *Manager) SaveTo(ctx context.Context, s *Session, https bool, addHeader func(name, value string)) error {
	s.lock()
	defer s.mu.Unlock()
	if s.sent {
		if s.saved {
			return nil
		}
		err := fmt.Errorf("%w (change the session before writing the response)", ErrChangedAfterCommit)
		m.store.warn.log("commit", "hybridsession: session changed after the response was committed; the change is lost", err)
		return err
	}
	if err := m.saveLocked(ctx, s); err != nil {
		m.store.warn.log("save", "hybridsession: session could not be saved", err)
		return err
	}
	s.sent = true
	switch {
	case !s.setCookie:
	case m.cfg.TokenHeader != "":
		addHeader(m.cfg.TokenResponseHeader, s.token)
		addHeader("Vary", m.cfg.TokenHeader)
		addHeader("Cache-Control", "no-store")
	default:
		c := m.cookie(s)
		if c.Secure && c.Value != "" && !https {
			m.store.warn.log("http", "hybridsession: a Secure session cookie was set on a plain-HTTP request; "+
				"browsers drop it outside localhost and every request starts a new session. "+
				"Serve HTTPS (behind a proxy: X-Forwarded-Proto: https), or set Cookie.Insecure for local development", nil)
		}
		addHeader("Set-Cookie", c.String()) // never "": New checked the name
		addHeader("Vary", "Cookie")
		addHeader("Cache-Control", `no-cache="Set-Cookie"`)
	}
	return nil
}

// cookie returns s's cookie, an expired one once s was destroyed. s.mu is held.
func (m *Manager) cookie(s *Session) *http.Cookie {
	cc := m.cfg.Cookie
	c := &http.Cookie{Name: cc.Name, Path: cc.Path, Domain: cc.Domain,
		Secure: !cc.Insecure, HttpOnly: true, SameSite: cc.SameSite}
	switch {
	case s.entry == nil: // destroyed, and s.token is ""
		c.MaxAge, c.Expires = -1, time.Unix(1, 0)
	case !cc.SessionOnly || s.entry.Persistent:
		// MaxAge rounds up: a browser must not drop the cookie before the deadline.
		c.Expires = s.entry.Deadline.UTC()
		c.MaxAge = max(int((s.entry.Deadline.Sub(m.store.now())+time.Second-1)/time.Second), 1)
	}
	c.Value = s.token
	return c
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
	// A 1xx response passes unsaved, before the real one: the handler may change the session until then.
	informational := code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols
	if informational && !w.done || !informational && w.commit() {
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
