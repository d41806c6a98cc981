package core

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// isToken reports whether s is empty or an HTTP token (RFC 9110), as header and cookie names must be.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// LoadFrom is Load with a request's token (from the cookie, or Config.TokenHeader when set), for
// framework adapters: header returns a request header's value ("" when absent), like r.Header.Get. The
// Session keeps the token, so a framework that reuses its buffers (fasthttp) must return copies. It
// returns the session and a copy of ctx carrying it (FromContext, Manager.FromContext). Errors are Load's.
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
		return nil, ctx, err
	}
	return s, &sessionCtx{Context: ctx, s: s}, nil
}

// cookieValue returns the value of the first cookie called name in a Cookie header, unquoted; "" when
// there is none. It scans in place: http.Request.Cookie allocates every cookie it parses.
func cookieValue(line, name string) string {
	for len(line) > 0 {
		var part string
		part, line, _ = strings.Cut(line, ";")
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == name {
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// SaveTo is Save for framework adapters, called just before the response header goes out. It then adds
// with addHeader the Set-Cookie of a created, renewed or destroyed (expired cookie) session, with
// "Vary: Cookie" and `Cache-Control: no-cache="Set-Cookie"` so shared caches never hand one user's
// cookie to another; in header mode, Config.TokenResponseHeader ("" once destroyed), "Vary:
// <TokenHeader>" and "Cache-Control: no-store". https tells whether the request came over HTTPS: the
// first Secure cookie set on a plain-HTTP request is logged, as browsers drop it outside localhost.
//
// On error (Save's) it adds nothing. A call after a success saves and adds nothing (addHeader may be
// nil); a change made since is lost, so it logs and returns an error wrapping ErrChangedAfterCommit.
// Adapters call it again when the handler returns.
func (m *Manager) SaveTo(ctx context.Context, s *Session, https bool, addHeader func(name, value string)) error {
	s.mu.Lock()
	sent, late := s.sent, !s.saved
	s.mu.Unlock()
	if sent {
		if !late {
			return nil
		}
		err := fmt.Errorf("%w (change the session before writing the response)", ErrChangedAfterCommit)
		m.log.Warn("hybridsession: session changed after the response was committed; the change is lost", "error", err)
		return err
	}
	if err := m.Save(ctx, s); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = true
	switch {
	case !s.setCookie:
	case m.cfg.TokenHeader != "":
		addHeader(m.cfg.TokenResponseHeader, s.token) // "" once destroyed
		addHeader("Vary", m.cfg.TokenHeader)
		addHeader("Cache-Control", "no-store")
	default:
		c := m.cookie(s)
		if c.Secure && c.Value != "" && !https && !m.warnedHTTP.Swap(true) {
			m.log.Warn("hybridsession: a Secure session cookie was set on a plain-HTTP request; " +
				"browsers drop it outside localhost and every request starts a new session. " +
				"Serve HTTPS (behind a proxy: X-Forwarded-Proto: https), or set Cookie.Insecure for local development")
		}
		if v := c.String(); v != "" {
			addHeader("Set-Cookie", v)
		}
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
	if s.token == "" || s.entry == nil {
		c.MaxAge, c.Expires = -1, time.Unix(1, 0)
		return c
	}
	c.Value = s.token
	if !cc.SessionOnly || s.entry.Persistent {
		// MaxAge rounds up: a browser must not drop the cookie before the deadline.
		c.Expires = s.entry.Deadline.UTC()
		c.MaxAge = max(int((s.entry.Deadline.Sub(m.store.now())+time.Second-1)/time.Second), 1)
	}
	return c
}
