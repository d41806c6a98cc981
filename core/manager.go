package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// Config configures a Manager.
type Config struct {
	// Store holds the sessions. Required.
	Store *Store

	// IdleTimeout is how long a session lives without activity: it is also
	// memcached's TTL for the entry. Optional. Default 30m. Activity is
	// recorded on every write and, for read-only requests, at most once per
	// TouchInterval, so a session expires between IdleTimeout−TouchInterval
	// and IdleTimeout after the last request (OWASP suggests 15–30 minutes
	// for ordinary applications).
	IdleTimeout time.Duration

	// Lifetime is the absolute lifetime of a session from its creation; it
	// is never extended, not even by RenewToken. Optional. Default 24h.
	Lifetime time.Duration

	// TouchInterval is how often a session that is only read refreshes its
	// activity (and memcached TTL) — one extra memcached write at most per
	// interval instead of one per request. Optional. Default 1m (at most
	// IdleTimeout/2); must be less than IdleTimeout.
	TouchInterval time.Duration

	// DurableKeys lists session keys whose changes are written to the
	// database at once rather than at the next sync (for example a user id
	// or a cart). Optional.
	DurableKeys []string

	// Cookie configures the session cookie.
	Cookie CookieConfig

	// Header, when Header.Name is set, carries the token in request and
	// response headers instead of the cookie. Optional.
	Header HeaderConfig

	// ErrorHandler answers a request whose session could not be loaded or
	// saved, in the net/http middleware (Manager.Handler). Optional.
	// Default: StatusCode(err) with its status text as the body; err is
	// never shown to the client.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// Logger receives problems that do not fail a request. Optional.
	// Default slog.Default().
	Logger *slog.Logger
}

// CookieConfig configures the session cookie. The zero value is safe: a
// cookie named "session" on path "/", HttpOnly, Secure, SameSite=Lax,
// persistent until the session's absolute deadline.
type CookieConfig struct {
	// Name is the cookie's name, an HTTP token. Optional. Default
	// "session". Every app server that shares sessions must use the same
	// name.
	Name string
	// Path is the cookie's path. Optional. Default "/".
	Path string
	// Domain is the cookie's domain. Optional. Default: none (host-only).
	Domain string
	// Insecure drops the Secure attribute, so browsers send the cookie over
	// plain HTTP. Optional. Default false. Set it only for local development
	// without TLS. While it is false, the Manager logs a warning the first
	// time it sets the cookie in answer to a plain-HTTP request.
	Insecure bool
	// SameSite is the cookie's SameSite attribute. Optional. Default
	// http.SameSiteLaxMode.
	SameSite http.SameSite
	// SessionOnly makes the cookie a browser-session cookie (no Expires),
	// forgotten when the browser closes, for every session not given
	// Session.RememberMe. Optional. Default false: the cookie expires at the
	// session's absolute deadline.
	SessionOnly bool
}

// maxRetries bounds how often Save re-reads and re-applies its changes
// while concurrent requests keep changing the same session.
const maxRetries = 16

// Manager loads and saves sessions for HTTP requests: tokens and cookies,
// typed values, timeouts, renewal and destruction, and the merging of
// concurrent changes. Manager.Handler serves net/http; framework adapters
// use Serve, or LoadFrom and SaveTo.
//
// A Manager is safe for concurrent use.
type Manager struct {
	store      *Store
	cfg        Config
	durableKey map[string]bool
	log        *slog.Logger
	bearer     bool        // the token header is Authorization: Bearer
	warnedHTTP atomic.Bool // the plain-HTTP Secure cookie warning was logged
}

// New validates cfg, fills its defaults and returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("core: Config.Store is required")
	}
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, 30*time.Minute)
	cfg.Lifetime = cmp.Or(cfg.Lifetime, 24*time.Hour)
	cfg.TouchInterval = cmp.Or(cfg.TouchInterval, min(time.Minute, cfg.IdleTimeout/2))
	cfg.Cookie.Name = cmp.Or(cfg.Cookie.Name, "session")
	cfg.Cookie.Path = cmp.Or(cfg.Cookie.Path, "/")
	cfg.Cookie.SameSite = cmp.Or(cfg.Cookie.SameSite, http.SameSiteLaxMode)
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = defaultErrorHandler
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.Header.fill()
	switch {
	case cfg.IdleTimeout < 0 || cfg.Lifetime < 0 || cfg.TouchInterval < 0:
		return nil, errors.New("core: IdleTimeout, Lifetime and TouchInterval must not be negative")
	case cfg.TouchInterval >= cfg.IdleTimeout:
		return nil, errors.New("core: TouchInterval must be less than IdleTimeout")
	case !isToken(cfg.Cookie.Name):
		return nil, fmt.Errorf("core: invalid cookie name %q", cfg.Cookie.Name)
	case !isToken(cfg.Header.Name) || !isToken(cfg.Header.Response):
		return nil, fmt.Errorf("core: invalid header name in %+v", cfg.Header)
	}
	m := &Manager{store: cfg.Store, cfg: cfg, log: cfg.Logger, durableKey: map[string]bool{}}
	m.bearer = http.CanonicalHeaderKey(cfg.Header.Name) == "Authorization"
	for _, k := range cfg.DurableKeys {
		m.durableKey[k] = true
	}
	return m, nil
}

// Store returns the Manager's Store, for the Store's own API (Stats, List,
// a metrics collector, scsstore).
func (m *Manager) Store() *Store { return m.store }

// Load returns the session for a cookie value. A value that is not shaped
// like a token, or a token the store does not know (expired, destroyed,
// forged), yields a new empty session: client-supplied tokens are never
// adopted. The error wraps ErrUnavailable when the store could not answer.
func (m *Manager) Load(ctx context.Context, cookieValue string) (*Session, error) {
	s := &Session{m: m}
	if !ValidToken(cookieValue) {
		return s, nil
	}
	e, err := m.store.Get(ctx, cookieValue)
	if err != nil {
		return nil, err
	}
	if e == nil || opaqueCodec(e.Codec) {
		return s, nil
	}
	s.token, s.entry = cookieValue, e
	return s, nil
}

// Save writes the session's changes, if any, before the response headers
// are sent. Unchanged sessions are not written, except for a throttled
// activity refresh (at most once per TouchInterval). When another request
// changed the session meanwhile, Save re-reads it, re-applies this request's
// own Put, Delete and Clear calls key by key, and retries, so concurrent
// requests that change different keys keep each other's changes.
//
// It returns ErrTooLarge or an error wrapping ErrEncode (nothing written,
// the stored copy intact), ErrConflict after 16 lost races, and
// errors wrapping ErrUnavailable when the store could not take the write.
func (m *Manager) Save(ctx context.Context, s *Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saved {
		return nil
	}
	err := m.save(ctx, s)
	if err == nil {
		s.saved = true
	}
	return err
}

func (m *Manager) save(ctx context.Context, s *Session) error {
	switch {
	case s.entry == nil && len(s.ops) == 0 && !s.subjectSet && !s.expiry.pending():
		return nil // a new session nobody wrote to: no store, no cookie
	case s.entry == nil:
		return m.insert(ctx, s)
	case s.renew:
		return m.renew(ctx, s)
	case len(s.ops) == 0 && !s.subjectSet && !s.durable && !s.expiry.pending():
		return m.touch(ctx, s)
	}
	return m.update(ctx, s)
}

// insert stores s as a new session under a new token.
func (m *Manager) insert(ctx context.Context, s *Session) error {
	now := m.store.Now()
	e := &Entry{Created: now, Deadline: now.Add(m.cfg.Lifetime), IdleTimeout: m.cfg.IdleTimeout}
	if s.entry != nil { // renewal keeps the creation time, deadline and expiry choices
		e.Created, e.Deadline, e.Subject = s.entry.Created, s.entry.Deadline, s.entry.Subject
		e.IdleTimeout, e.Persistent = s.entry.IdleTimeout, s.entry.Persistent
	}
	if s.subjectSet {
		e.Subject = s.subject
	}
	s.expiry.apply(e)
	values := s.valuesLocked()
	var err error
	if e.Payload, err = m.encode(values); err != nil {
		return err
	}
	e.Codec = m.store.codec.ID()
	token := NewToken()
	for {
		err = m.store.Insert(ctx, token, e, s.durable || s.expiry.pending())
		if !errors.Is(err, ErrExists) {
			break
		}
		token = NewToken() // 2^-256: only a broken random source gets here
	}
	if err != nil {
		return err
	}
	s.token, s.entry, s.values, s.decoded = token, e, values, true
	s.ops, s.subjectSet, s.setCookie = nil, false, true
	s.expiry = expiryChange{}
	return nil
}

// renew moves the session to a fresh token. This request's changes are
// first written to the old token's row (durably, merging with whatever the
// row holds that this request's copy never saw), so that the new session
// starts from everything the old one had; then the new session is inserted,
// and the old one destroyed. While the database is unavailable the new
// session starts from this request's copy.
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
	if err := m.store.Destroy(ctx, oldEntry); err != nil {
		m.log.Warn("hybridsession: RenewToken could not destroy the old token", "error", err)
	}
	return nil
}

// touch refreshes the activity of an unchanged session when the last
// refresh is TouchInterval old. Failures do not fail the request: the
// session was served, and the next request tries again.
func (m *Manager) touch(ctx context.Context, s *Session) error {
	if m.store.Now().Sub(s.entry.ActiveAt) < m.cfg.TouchInterval {
		return nil
	}
	err := m.store.Update(ctx, s.entry, Change{})
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrDestroyed) {
		// A conflict means another request wrote, which refreshed it.
		m.log.Warn("hybridsession: could not refresh session activity", "error", err)
	}
	return nil
}

// dropDestroyed forgets a session another request destroyed (or that
// expired) while this one changed it: the destruction wins, and this
// request's changes are dropped. No cookie change: the request that
// destroyed or renewed the session sent the right one, and an expiring
// cookie from this response could arrive after it and undo a fresh login.
func (s *Session) dropDestroyed() {
	s.entry, s.token, s.values, s.decoded = nil, "", nil, false
	s.ops, s.subjectSet = nil, false
}

// change describes this request's changes for Store.Update.
func (s *Session) change() Change {
	c := Change{Keys: s.keysBuf[:0], Header: s.subjectSet || s.expiry.pending(), Durable: s.durable || s.subjectSet || s.expiry.pending()}
	for _, o := range s.ops {
		if o.kind == opClear {
			c.All = true
		} else if !slices.Contains(c.Keys, o.key) {
			c.Keys = append(c.Keys, o.key)
		}
	}
	return c
}

// update writes this request's changes with compare-and-swap, re-reading
// the session and re-applying them on conflict.
func (m *Manager) update(ctx context.Context, s *Session) error {
	cookieChanged := false
	values := s.valuesLocked()
	e := s.entry
	c := s.change()
	var err error
	for attempt := 0; ; attempt++ {
		e.Codec = m.store.codec.ID()
		if s.subjectSet {
			e.Subject = s.subject
		}
		if s.expiry.apply(e) {
			cookieChanged = true
		}
		if e.Payload, err = m.encode(values); err != nil {
			return err
		}
		err = m.store.Update(ctx, e, c)
		if !errors.Is(err, ErrConflict) {
			break
		}
		if attempt >= maxRetries {
			return fmt.Errorf("core: gave up after %d concurrent changes: %w", attempt+1, ErrConflict)
		}
		if attempt > 0 {
			// Lost twice in a row: spread out from the other writers.
			time.Sleep(rand.N(time.Duration(min(attempt, 8)) * 200 * time.Microsecond))
		}
		if e, err = m.store.Get(ctx, s.token); err != nil {
			return err
		}
		if e == nil {
			break
		}
		base, err := m.decode(e)
		if err != nil {
			base = map[string]any{} // corrupt payload: our changes on an empty map
		}
		values = s.replay(base)
	}
	if e == nil || errors.Is(err, ErrDestroyed) {
		s.dropDestroyed()
		return nil
	}
	if err != nil {
		return err
	}
	s.entry, s.values, s.decoded = e, values, !e.merged
	s.ops, s.subjectSet, s.durable = nil, false, false
	s.expiry = expiryChange{}
	if cookieChanged {
		s.setCookie = true
	}
	return nil
}

func (m *Manager) encode(values map[string]any) ([]byte, error) {
	b, err := m.store.codec.Encode(values)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	return b, nil
}

func (m *Manager) decode(e *Entry) (map[string]any, error) {
	return m.store.decode(e.Codec, e.Payload)
}

// DestroySubject destroys every session of subject (see Session.SetSubject)
// in both tiers — "log out everywhere", for example after a password
// change — and returns how many it destroyed.
func (m *Manager) DestroySubject(ctx context.Context, subject string) (int, error) {
	return m.store.DestroySubject(ctx, subject)
}

// StatusCode maps a Load or Save error to an HTTP status: 503 Service
// Unavailable for ErrUnavailable, 413 Content Too Large for ErrTooLarge (the
// request made the session exceed the item size limit), 500 Internal Server
// Error otherwise.
func StatusCode(err error) int {
	switch {
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// defaultErrorHandler is Config.ErrorHandler's default.
func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	code := StatusCode(err)
	http.Error(w, http.StatusText(code), code)
}
