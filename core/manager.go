package core

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// Config configures a Manager. Every field but Store is optional; a zero field takes its default.
type Config struct {
	Store *Store // holds the sessions; required
	// IdleTimeout is how long a session lives without activity, and its memcached TTL. Default 30m (OWASP:
	// 15–30m). A session expires IdleTimeout−TouchInterval to IdleTimeout after its last request.
	IdleTimeout time.Duration
	// Lifetime is the absolute lifetime from creation, never extended, not even by RenewToken. Default 24h.
	Lifetime time.Duration
	// TouchInterval is how often a session only read records its activity and refreshes its TTL (one
	// memcached write). Default 1m, or IdleTimeout/2 when shorter; must be less than IdleTimeout.
	TouchInterval time.Duration
	// DurableKeys lists keys whose changes go to the database at once, not at the next sync (a user id).
	DurableKeys []string
	Cookie      CookieConfig // the session cookie
	// TokenHeader, when set, carries the token in place of the cookie (API, mobile clients): "Authorization"
	// as "Bearer <token>", any other name ("X-Session-Token") bare. Browsers never attach it by themselves
	// (no CSRF), but page scripts can read it where the client keeps it (XSS). Default "": the cookie.
	TokenHeader string
	// TokenResponseHeader returns a new or renewed token ("" once destroyed), absent while unchanged; expose it
	// with Access-Control-Expose-Headers. Default: TokenHeader, or "Session-Token" for Authorization.
	TokenResponseHeader string
	// ErrorHandler answers, in Manager.Handler, a request whose session could not be loaded or saved.
	// Default: StatusCode(err) with its status text; err is never shown to the client (the Manager logs it,
	// once a minute per kind, through StoreConfig.Logger).
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
}

// CookieConfig configures the session cookie; its zero value is safe: "session" on path "/", HttpOnly,
// Secure, SameSite=Lax, persistent until the session's absolute deadline.
type CookieConfig struct {
	// Name is an HTTP token, the same on app servers that share sessions; default "session". A session loads only in
	// Managers of the name (or TokenHeader) it was created under. New refuses names browsers drop (RFC 6265bis): a
	// "__Secure-" one with Insecure, a "__Host-" one (immune to cookie tossing) also with a Domain or a Path but "/".
	Name   string
	Path   string // default "/"
	Domain string // default none: host-only
	// Insecure drops the Secure attribute so browsers send the cookie over plain HTTP: for local development
	// without TLS only. When false, a cookie set in answer to a plain-HTTP request logs a warning (once a minute).
	Insecure bool
	SameSite http.SameSite // default http.SameSiteLaxMode
	// SessionOnly gives sessions without Session.RememberMe browser-session cookies (no Expires),
	// forgotten when the browser closes. Default false: cookies expire at the absolute deadline.
	SessionOnly bool
}

const maxRetries = 16 // bounds Save's re-reads while other requests keep changing the session

// Manager loads and saves sessions for HTTP requests, merging concurrent changes. Handler serves net/http;
// framework adapters use Serve, or LoadFrom and SaveTo. A Manager is safe for concurrent use.
type Manager struct {
	store  *Store
	cfg    Config
	bearer bool   // the token header is Authorization: Bearer
	scope  uint64 // hashes TokenHeader, or the cookie name: what a session it loads must have been created under
}

// New validates cfg, fills its defaults and returns a Manager.
func New(cfg Config) (*Manager, error) {
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, 30*time.Minute)
	cfg.Lifetime = cmp.Or(cfg.Lifetime, 24*time.Hour)
	cfg.TouchInterval = cmp.Or(cfg.TouchInterval, min(time.Minute, cfg.IdleTimeout/2))
	cfg.Cookie.Name = cmp.Or(cfg.Cookie.Name, "session")
	cfg.Cookie.Path = cmp.Or(cfg.Cookie.Path, "/")
	cfg.Cookie.SameSite = cmp.Or(cfg.Cookie.SameSite, http.SameSiteLaxMode)
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
			code := StatusCode(err)
			http.Error(w, http.StatusText(code), code)
		}
	}
	bearer := http.CanonicalHeaderKey(cfg.TokenHeader) == "Authorization"
	if bearer {
		cfg.TokenResponseHeader = cmp.Or(cfg.TokenResponseHeader, "Session-Token")
	}
	cfg.TokenResponseHeader = cmp.Or(cfg.TokenResponseHeader, cfg.TokenHeader)
	name := strings.ToLower(cfg.Cookie.Name)
	sum := sha256.Sum256([]byte(cmp.Or(http.CanonicalHeaderKey(cfg.TokenHeader), cfg.Cookie.Name))) // see Manager.scope
	switch {
	case cfg.Store == nil:
		return nil, errors.New("core: Config.Store is required")
	case cfg.IdleTimeout < 0 || cfg.Lifetime < 0 || cfg.TouchInterval < 0:
		return nil, errors.New("core: IdleTimeout, Lifetime and TouchInterval must not be negative")
	case cfg.TouchInterval >= cfg.IdleTimeout:
		return nil, errors.New("core: TouchInterval must be less than IdleTimeout")
	case !isToken(cfg.Cookie.Name) || !isToken(cfg.TokenHeader) || !isToken(cfg.TokenResponseHeader):
		return nil, fmt.Errorf("core: invalid cookie name %q, token header name %q or token response header name %q",
			cfg.Cookie.Name, cfg.TokenHeader, cfg.TokenResponseHeader)
	case strings.HasPrefix(name, "__host-") && (cfg.Cookie.Insecure || cfg.Cookie.Path != "/" || cfg.Cookie.Domain != ""),
		strings.HasPrefix(name, "__secure-") && cfg.Cookie.Insecure:
		return nil, fmt.Errorf(`core: cookie %q: browsers drop a __Secure- cookie without Secure, and a __Host- one also `+
			`with a Path other than "/" or a Domain (RFC 6265bis)`, cfg.Cookie.Name)
	}
	cfg.DurableKeys = slices.Clone(cfg.DurableKeys)
	return &Manager{store: cfg.Store, cfg: cfg, bearer: bearer, scope: binary.BigEndian.Uint64(sum[:]) | 1}, nil
}

// Store returns the Manager's Store (for Stats, List, metrics, scsstore).
func (m *Manager) Store() *Store { return m.store }

// Load returns a token's session; a malformed or unknown token (expired, destroyed, forged) gets a new empty
// session, never adopted. The error wraps ErrUnavailable when the store could not answer.
func (m *Manager) Load(ctx context.Context, cookieValue string) (*Session, error) {
	s := &Session{m: m}
	if !validToken(cookieValue) {
		return s, nil
	}
	e, err := m.store.read(ctx, cookieValue)
	if err != nil {
		return nil, err
	}
	if e != nil && !opaqueCodec(e.Codec) && (e.Scope == m.scope || e.Scope == 0) { // 0: before format 4
		s.token, s.entry, s.subject = cookieValue, e, e.Subject
	}
	return s, nil
}

// Save writes the session's changes; an unchanged one only refreshes its activity, once per TouchInterval.
// If another request changed the session meanwhile, Save re-reads it and replays this request's Put,
// Delete and Clear, so requests changing different keys keep each other's changes. It returns ErrTooLarge
// or ErrEncode (wrapped; nothing written), ErrConflict after 16 lost races, or wraps ErrUnavailable.
func (m *Manager) Save(ctx context.Context, s *Session) error {
	s.lock()
	defer s.mu.Unlock()
	return m.saveLocked(ctx, s)
}

func (m *Manager) saveLocked(ctx context.Context, s *Session) (err error) {
	switch {
	case s.saved, s.entry == nil && len(s.ops) == 0 && !s.subjectSet && !s.expiry.pending():
		// saved already, or a new session nobody wrote to: no store, no cookie
	case s.entry == nil:
		err = m.insert(ctx, s)
	case s.renew:
		err = m.renew(ctx, s)
	case len(s.ops) == 0 && !s.subjectSet && !s.durable && !s.expiry.pending():
		m.touch(ctx, s)
	default:
		err = m.update(ctx, s)
	}
	s.saved = err == nil
	return err
}

func (m *Manager) insert(ctx context.Context, s *Session) error {
	now := m.store.now()
	e := &entry{Envelope: envelope.Envelope{Created: now, Deadline: now.Add(m.cfg.Lifetime), IdleTimeout: m.cfg.IdleTimeout}}
	if s.entry != nil { // renewal keeps the creation time, deadline and expiry choices
		e.Created, e.Deadline, e.Subject = s.entry.Created, s.entry.Deadline, s.entry.Subject
		e.IdleTimeout, e.Persistent = s.entry.IdleTimeout, s.entry.Persistent
	}
	if _, err := m.prepare(e, s, s.valuesLocked()); err != nil {
		return err
	}
	var token string
	err := errExists
	for i := 0; errors.Is(err, errExists); i++ { // a taken token: 2^-256, unless the random source is broken
		if i == maxRetries {
			return fmt.Errorf("core: %d fresh tokens were all taken: %w", i, ErrConflict)
		}
		token = NewToken()
		err = m.store.insert(ctx, token, e, s.durable || s.expiry.pending())
	}
	if err != nil {
		return err
	}
	s.token, s.entry = token, e // valuesLocked left s.values decoded
	s.ops, s.subjectSet, s.setCookie, s.expiry = nil, false, true, expiryChange{}
	return nil
}

// renew writes this request's changes durably to the old token, so the session inserted under a fresh
// token has all the old one had, then destroys the old one; a database outage leaves this request's copy.
func (m *Manager) renew(ctx context.Context, s *Session) error {
	s.durable = true
	err := m.update(ctx, s)
	switch {
	case errors.Is(err, ErrUnavailable):
	case err != nil:
		return err
	case s.entry == nil:
		return nil // destroyed meanwhile: the destruction wins
	}
	oldEntry := s.entry
	if err := m.insert(ctx, s); err != nil {
		return err
	}
	s.renew = false
	if err := m.store.destroy(ctx, oldEntry); err != nil {
		m.store.warn.log("renew", "hybridsession: RenewToken could not destroy the old token", err)
	}
	return nil
}

// touch refreshes an unchanged session's activity once TouchInterval old. Failures do not fail the request:
// the next one tries again; a conflict means another request wrote, which refreshed it.
func (m *Manager) touch(ctx context.Context, s *Session) {
	if m.store.now().Sub(s.entry.ActiveAt) < m.cfg.TouchInterval {
		return
	}
	err := m.store.update(ctx, s.entry, change{})
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, errDestroyed) {
		m.store.warn.log("touch", "hybridsession: could not refresh session activity", err)
	}
}

// dropDestroyed forgets the stored session: Destroy's, or one destroyed meanwhile (which sent the cookie).
func (s *Session) dropDestroyed() {
	s.entry, s.token, s.values, s.decoded, s.ops, s.subject, s.subjectSet = nil, "", nil, false, nil, "", false
}

// change describes this request's changes for Store.update.
func (s *Session) change() change {
	header := s.subjectSet || s.expiry.pending()
	c := change{Keys: s.keysBuf[:0], Header: header, Durable: s.durable || header}
	for _, o := range s.ops {
		if o.kind == opClear {
			c.All = true
		} else if !slices.Contains(c.Keys, o.key) {
			c.Keys = append(c.Keys, o.key)
		}
	}
	return c
}

// update writes this request's changes with compare-and-swap, replaying them on a fresh read on conflict.
func (m *Manager) update(ctx context.Context, s *Session) error {
	values, e, c := s.valuesLocked(), s.entry, s.change()
	cookieChanged := false
	for attempt := 0; ; attempt++ {
		changed, err := m.prepare(e, s, values)
		if err != nil {
			return err
		}
		cookieChanged = cookieChanged || changed
		err = m.store.update(ctx, e, c)
		switch {
		case err == nil:
			s.entry, s.values, s.decoded, s.subject = e, values, !e.merged, e.Subject
			s.ops, s.subjectSet, s.durable, s.expiry = nil, false, false, expiryChange{}
			s.setCookie = s.setCookie || cookieChanged
			return nil
		case errors.Is(err, errDestroyed):
			s.dropDestroyed()
			return nil
		case !errors.Is(err, ErrConflict):
			return err
		case attempt >= maxRetries:
			return fmt.Errorf("core: gave up after %d concurrent changes: %w", attempt+1, ErrConflict)
		case attempt > 0: // lost twice in a row: spread out from the other writers
			time.Sleep(rand.N(time.Duration(min(attempt, 8)) * 200 * time.Microsecond))
		}
		if e, err = m.store.read(ctx, s.token); err != nil {
			return err
		}
		if e == nil {
			s.dropDestroyed()
			return nil
		}
		if values, err = m.store.decode(e.Codec, e.Payload); err != nil {
			values = map[string]any{} // corrupt payload: our changes on an empty map
		}
		for _, o := range s.ops {
			o.applyTo(values)
		}
	}
}

// prepare writes this request's subject, expiry and values into e; cookieChanged is expiryChange.apply's.
func (m *Manager) prepare(e *entry, s *Session, values map[string]any) (cookieChanged bool, err error) {
	if s.subjectSet {
		e.Subject = s.subject
	}
	cookieChanged = s.expiry.apply(e)
	e.Codec, e.Scope = m.store.codec.ID(), m.scope
	if e.Payload, err = m.store.codec.Encode(values); err != nil {
		return false, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	return cookieChanged, nil
}

// DestroySubject destroys every session of subject (Session.SetSubject) in both tiers, to "log out
// everywhere" after a password change, and returns how many; the error wraps ErrUnavailable for the rest.
func (m *Manager) DestroySubject(ctx context.Context, subject string) (int, error) {
	return m.store.destroyRows(ctx, subject, func(string) bool { return true })
}

// StatusCode maps a Load or Save error to an HTTP status: 503 for ErrUnavailable, 413 Content Too
// Large for ErrTooLarge (the session outgrew the item size limit), 500 otherwise.
func StatusCode(err error) int {
	switch {
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}
