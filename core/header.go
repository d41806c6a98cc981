package core

import (
	"net/http"
	"strings"
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

// fill fills the HeaderConfig defaults; New calls it.
func (h *HeaderConfig) fill() {
	if h.Name != "" && h.Response == "" {
		h.Response = h.Name
		if http.CanonicalHeaderKey(h.Name) == "Authorization" {
			h.Response = "Session-Token"
		}
	}
}

// valid reports whether the header names are HTTP tokens (or empty).
func (h *HeaderConfig) valid() bool {
	for _, name := range []string{h.Name, h.Response} {
		for i := 0; i < len(name); i++ {
			c := name[i]
			if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
				return false
			}
		}
	}
	return true
}

// TokenHeader returns the request header that carries the token
// (Config.Header.Name), "" when the token travels in the cookie.
func (m *Manager) TokenHeader() string { return m.cfg.Header.Name }

// HeaderToken returns the token in v, a value of the TokenHeader request
// header: the credentials of "Bearer <token>" for Authorization, v itself
// for any other header. It returns "" when v carries no token.
func (m *Manager) HeaderToken(v string) string {
	if !m.bearer {
		return strings.TrimSpace(v)
	}
	scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// RequestToken returns the token r carries: from the TokenHeader header
// when one is configured, from the session cookie otherwise.
func (m *Manager) RequestToken(r *http.Request) string {
	if m.cfg.Header.Name != "" {
		return m.HeaderToken(r.Header.Get(m.cfg.Header.Name))
	}
	return m.cookieValue(r)
}

// ResponseHeader returns the response header that returns the token to a
// client in header mode after Save: the token when the session was
// created or renewed, "" when it was destroyed. ok is false when no header
// is needed, and always in cookie mode (see Cookie).
func (m *Manager) ResponseHeader(s *Session) (name, value string, ok bool) {
	if m.cfg.Header.Name == "" {
		return "", "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.setCookie {
		return "", "", false
	}
	if s.entry != nil {
		value = s.token
	}
	return m.cfg.Header.Response, value, true
}

// writeHeaderToken is WriteCookie in header mode.
func (m *Manager) writeHeaderToken(h http.Header, s *Session) {
	name, value, ok := m.ResponseHeader(s)
	if !ok {
		return
	}
	h.Set(name, value)
	h.Add("Vary", m.cfg.Header.Name)
	h.Set("Cache-Control", "no-store")
}
