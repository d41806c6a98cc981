package core

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// HeaderConfig moves the session token from the cookie to HTTP headers,
// for API and mobile clients. The zero value keeps the cookie.
//
// CSRF: in cookie mode the browser attaches the cookie to every request to
// the site, cross-site ones included, so state-changing endpoints need
// CSRF protection (SameSite=Lax, the default, stops most cross-site POSTs;
// a CSRF token middleware covers the rest). In header mode the browser
// never attaches the token by itself, so cross-site request forgery does
// not apply; instead the client stores the token where page scripts can
// read it, so an XSS flaw can steal it — keep it out of localStorage where
// possible.
type HeaderConfig struct {
	// Name is the request header that carries the token. Optional.
	// Default "": the token travels in the cookie (CookieConfig). When it
	// is "Authorization" the header is read as "Authorization: Bearer
	// <token>"; any other name carries the bare token, for example
	// "X-Session-Token". When Name is set the cookie is neither read nor
	// written.
	Name string

	// Response is the response header in which a new or renewed token is
	// returned, and an empty value when the session was destroyed; it is
	// absent when the client's token is still right. Optional. Default:
	// Name, or "Session-Token" when Name is "Authorization". Browsers that
	// call cross-origin must be allowed to read it
	// (Access-Control-Expose-Headers).
	Response string
}

func (h *HeaderConfig) fill() {
	if h.Name != "" && h.Response == "" {
		h.Response = h.Name
		if http.CanonicalHeaderKey(h.Name) == "Authorization" {
			h.Response = "Session-Token"
		}
	}
}

// isToken reports whether s is empty or an HTTP token (RFC 9110), as
// header and cookie names must be.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// LoadFrom is Load with the token a request carries, for framework
// adapters: header returns the request's value of a header ("" when
// absent), for example r.Header.Get. The token is read from the session
// cookie in the Cookie header, or from the token header in header mode
// (Config.Header). LoadFrom keeps no string header returned, so they may
// point into buffers the framework reuses. Errors are Load's.
func (m *Manager) LoadFrom(ctx context.Context, header func(name string) string) (*Session, error) {
	var token string
	if m.cfg.Header.Name != "" {
		token = m.headerToken(header(m.cfg.Header.Name))
	} else {
		token = cookieValue(header("Cookie"), m.cfg.Cookie.Name)
	}
	s, err := m.Load(ctx, token)
	if s != nil && s.token != "" {
		s.token = strings.Clone(s.token)
	}
	return s, err
}

// headerToken returns the token in v, a value of the token header: the
// credentials of "Bearer <token>" for Authorization, v itself otherwise.
func (m *Manager) headerToken(v string) string {
	v = strings.TrimSpace(v)
	if !m.bearer {
		return v
	}
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// cookieValue returns the value of the first cookie called name in a
// Cookie header, without surrounding double quotes; "" when there is none.
// It scans in place: http.Request.Cookie allocates every cookie it parses
// (BenchmarkCookieValue).
func cookieValue(line, name string) string {
	for len(line) > 0 {
		var part string
		part, line, _ = strings.Cut(line, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k != name {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v
	}
	return ""
}

// SaveTo is Save for framework adapters, called once just before the
// response header goes out: it saves s and then, with addHeader, adds the
// response headers the client needs. In cookie mode that is the
// Set-Cookie of a created, renewed or destroyed session (an expired cookie
// for the latter) with "Vary: Cookie" and `Cache-Control:
// no-cache="Set-Cookie"`, so shared caches never hand one user's cookie to
// another; in header mode it is the token in HeaderConfig.Response ("" for
// a destroyed session) with "Vary: <token header>" and "Cache-Control:
// no-store". https says whether the request came over HTTPS: the first
// Secure cookie set in answer to a plain-HTTP request is logged as a
// warning, since browsers other than on localhost drop it.
//
// It returns Save's errors, and then adds nothing. Called again after it
// succeeded, it saves and adds nothing: when the session changed since
// (the change is lost, as its headers are gone) it logs and returns an
// error wrapping ErrChangedAfterCommit, otherwise nil. Adapters call it
// again after the handler returned, to report such changes.
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
	case m.cfg.Header.Name != "":
		addHeader(m.cfg.Header.Response, s.token) // "" once destroyed
		addHeader("Vary", m.cfg.Header.Name)
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

// cookie returns the session cookie for s: its token, or an expired cookie
// once s was destroyed. s.mu is held.
func (m *Manager) cookie(s *Session) *http.Cookie {
	c := &http.Cookie{
		Name:     m.cfg.Cookie.Name,
		Path:     m.cfg.Cookie.Path,
		Domain:   m.cfg.Cookie.Domain,
		Secure:   !m.cfg.Cookie.Insecure,
		HttpOnly: true,
		SameSite: m.cfg.Cookie.SameSite,
	}
	if s.token == "" || s.entry == nil {
		c.MaxAge, c.Expires = -1, time.Unix(1, 0)
		return c
	}
	c.Value = s.token
	if !m.cfg.Cookie.SessionOnly || s.entry.Persistent {
		c.Expires = s.entry.Deadline.UTC()
		// Rounded up: a browser must not drop the cookie before the deadline.
		c.MaxAge = max(int((s.entry.Deadline.Sub(m.store.Now())+time.Second-1)/time.Second), 1)
	}
	return c
}
