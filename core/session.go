package core

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// Session is one user's session during one request, from the Manager or an adapter and saved by the
// middleware; Value reads typed values. It is safe for concurrent use by one request's goroutines.
type Session struct {
	m          *Manager
	mu         sync.Mutex
	token      string         // "" until stored
	entry      *entry         // nil: new, not stored
	values     map[string]any // decoded lazily from entry.Payload
	decoded    bool
	ops        []op      // this request's changes, replayed on a CAS conflict
	keysBuf    [4]string // backs change.Keys for the common few keys
	subject    string    // the stored session's, or SetSubject's
	subjectSet bool
	durable    bool // write to the database on Save
	renew      bool // move to a new token on Save
	setCookie  bool // Set-Cookie needed
	saved      bool
	expiry     expiryChange
	sent       bool // SaveTo added the response headers
}

type opKind uint8

const (
	opPut opKind = iota
	opDelete
	opClear
)

type op struct {
	kind  opKind
	key   string
	value any
}

func (o op) applyTo(values map[string]any) {
	switch o.kind {
	case opPut:
		values[o.key] = o.value
	case opDelete:
		delete(values, o.key)
	case opClear:
		clear(values)
	}
}

// expiryChange is what a request changed about its session's expiry; Save applies it to the entry.
type expiryChange struct {
	lifetime time.Duration // > 0: Deadline = Created + lifetime
	idle     time.Duration // > 0: the session's idle timeout
	persist  bool          // RememberMe: persistent cookie
}

func (c expiryChange) pending() bool { return c.lifetime > 0 || c.idle > 0 || c.persist }

// apply writes c into e and reports whether the cookie must change: a new deadline, or now persistent.
func (c expiryChange) apply(e *entry) (cookieChanged bool) {
	if d := e.Created.Add(c.lifetime); c.lifetime > 0 && !d.Equal(e.Deadline) {
		e.Deadline, cookieChanged = d, true
	}
	if c.idle > 0 {
		e.IdleTimeout = c.idle
	}
	if c.persist && !e.Persistent {
		e.Persistent, cookieChanged = true, true
	}
	return cookieChanged
}

// lock locks s.mu. A nil s, which FromContext returns where no session middleware ran, panics naming the fix.
func (s *Session) lock() {
	if s == nil {
		panic("core: nil *Session: no session middleware ran for this request; wrap the handler with " +
			"Manager.Handler or mount the adapter's middleware on this route")
	}
	s.mu.Lock()
}

// locked returns f's result, computed with s.mu held.
func locked[T any](s *Session, f func() T) T {
	s.lock()
	defer s.mu.Unlock()
	return f()
}

// set runs f with s.mu held and marks the session as not saved.
func (s *Session) set(f func()) {
	s.lock()
	defer s.mu.Unlock()
	f()
	s.saved = false
}

// valuesLocked returns the decoded values. A payload that cannot be decoded is counted and logged (once a
// minute), and the session continues with none; the next change overwrites it. s.mu is held.
func (s *Session) valuesLocked() map[string]any {
	if s.decoded {
		return s.values
	}
	s.decoded = true
	var err error
	if s.entry != nil {
		if s.values, err = s.m.store.decode(s.entry.Codec, s.entry.Payload); err != nil {
			s.m.store.stats.corrupt.Add(1)
			s.m.store.warn.log("decode", "hybridsession: session values cannot be decoded; continuing with none", err)
		}
	}
	if s.values == nil {
		s.values = map[string]any{}
	}
	return s.values
}

// record applies o, keeps it for Save and marks the session not saved. s.mu is held.
func (s *Session) record(o op) {
	o.applyTo(s.valuesLocked())
	s.ops = append(s.ops, o)
	s.durable = s.durable || o.kind != opClear && slices.Contains(s.m.cfg.DurableKeys, o.key)
	s.saved = false
}

// Token returns the session's token, "" for a new session not saved yet. It is a secret: never log it.
func (s *Session) Token() string { return locked(s, func() string { return s.token }) }

// IsNew reports whether the session was not in the store at the request's start, or was destroyed since.
func (s *Session) IsNew() bool { return locked(s, func() bool { return s.entry == nil }) }

// Source reports where this request found the session: "memcached", "database" (memcached had lost it,
// or could not be asked), or "" for a new session, and after Save for one that was created.
func (s *Session) Source() string {
	s.lock()
	defer s.mu.Unlock()
	if s.entry == nil {
		return ""
	}
	return s.entry.source
}

// Get returns the value under key as the codec decoded it (see Value for the stored type), nil when absent.
func (s *Session) Get(key string) any { return locked(s, func() any { return s.valuesLocked()[key] }) }

// Keys returns the session's keys in sorted order.
func (s *Session) Keys() []string {
	return locked(s, func() []string { return slices.Sorted(maps.Keys(s.valuesLocked())) })
}

// Put stores value under key. The codec must be able to encode it; Save reports ErrEncode otherwise. Keys
// in Config.DurableKeys make the change durable (written to the database on Save).
func (s *Session) Put(key string, value any) { s.set(func() { s.record(op{opPut, key, value}) }) }

// Pop returns the value under key and deletes it, nil when absent (which is not a change).
func (s *Session) Pop(key string) any {
	s.lock()
	defer s.mu.Unlock()
	v, ok := s.valuesLocked()[key]
	if ok {
		s.record(op{kind: opDelete, key: key})
	}
	return v
}

// Delete removes key. Deleting a missing key is not a change.
func (s *Session) Delete(key string) { s.Pop(key) }

// Clear removes every value but keeps the session and its token.
func (s *Session) Clear() { s.set(func() { s.record(op{kind: opClear}) }) }

// MarkDurable makes this request's Save write the session to the database at once instead of at the next
// sync, for changes that must survive the loss of memcached within the next SyncInterval.
func (s *Session) MarkDurable() { s.set(func() { s.durable = true }) }

// Subject returns the user id set with SetSubject, "" when none.
func (s *Session) Subject() string { return locked(s, func() string { return s.subject }) }

// SetSubject records, durably, which user the session belongs to ("" clears it) for Manager.DestroySubject;
// call RenewToken too at login. Save returns ErrInvalidSubject, writing nothing, unless subject is valid
// UTF-8 of at most 255 bytes (the durable tier's column).
func (s *Session) SetSubject(subject string) {
	s.set(func() { s.subject, s.subjectSet = subject, true })
}

// RenewToken moves a stored session to a new token on Save, keeping values, creation time and deadline, and
// deletes the old token from both tiers. Call it when the privilege level changes (login, logout), so a
// token planted or seen before cannot ride the new privileges (OWASP session fixation).
func (s *Session) RenewToken() {
	s.lock()
	defer s.mu.Unlock()
	if s.entry != nil {
		s.renew, s.saved = true, false
	}
}

// Destroy replaces the session with a tombstone in both tiers now (Store.Destroy), leaving an empty new one:
// the response expires the cookie, unless values put next start a new session under a new token. The
// error wraps ErrUnavailable when neither tier took the tombstone, and the session lives on.
func (s *Session) Destroy(ctx context.Context) error {
	s.lock()
	defer s.mu.Unlock()
	if s.entry != nil {
		if err := s.m.store.destroy(ctx, s.entry); err != nil {
			return err
		}
	}
	s.dropDestroyed()
	s.durable, s.renew, s.expiry = false, false, expiryChange{}
	s.setCookie, s.saved = true, false
	return nil
}

// SetIdleTimeout durably sets this session's idle timeout and memcached TTL in place of Config.IdleTimeout;
// choose d well above Config.TouchInterval, the precision of activity. It panics if d is not positive.
func (s *Session) SetIdleTimeout(d time.Duration) {
	if d <= 0 {
		panic("core: Session.SetIdleTimeout expects a positive duration")
	}
	s.set(func() { s.expiry.idle = d })
}

// RememberMe durably gives this session a cookie persistent until its deadline and, if lifetime > 0, that
// lifetime from creation in place of Config.Lifetime; it survives RenewToken. See the example for a login's
// "remember me" box, with CookieConfig.SessionOnly and SetIdleTimeout.
func (s *Session) RememberMe(lifetime time.Duration) {
	s.set(func() { s.expiry.persist, s.expiry.lifetime = true, cmp.Or(max(lifetime, 0), s.expiry.lifetime) })
}

// Deadline returns the end of the session's absolute lifetime, which no activity extends: creation +
// Config.Lifetime, or RememberMe's lifetime. A session this request creates counts as created now.
func (s *Session) Deadline() time.Time { return locked(s, s.deadlineLocked) }

func (s *Session) deadlineLocked() time.Time {
	switch {
	case s.entry == nil:
		return s.m.store.now().Add(cmp.Or(s.expiry.lifetime, s.m.cfg.Lifetime))
	case s.expiry.lifetime > 0:
		return s.entry.Created.Add(s.expiry.lifetime)
	}
	return s.entry.Deadline
}

// IdleExpiry returns when the session expires without further requests: last recorded activity (now for a
// new session) plus its idle timeout, capped at Deadline. Reads record activity once per TouchInterval, so
// it may lie that much before now + the idle timeout; after a write it is exact.
func (s *Session) IdleExpiry() time.Time {
	s.lock()
	defer s.mu.Unlock()
	e := envelope.Envelope{ActiveAt: s.m.store.now(), IdleTimeout: s.m.cfg.IdleTimeout, Deadline: s.deadlineLocked()}
	switch {
	case s.expiry.idle > 0:
		e.IdleTimeout = s.expiry.idle
	case s.entry != nil:
		e.IdleTimeout = s.entry.IdleTimeout
		if !s.entry.ActiveAt.IsZero() {
			e.ActiveAt = s.entry.ActiveAt
		}
	}
	return e.ExpiresAt()
}
