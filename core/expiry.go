package core

import "time"

// expiryChange is what a request changed about its session's expiry; Save
// applies it to the entry it writes.
type expiryChange struct {
	lifetime time.Duration // > 0: Deadline = Created + lifetime
	idle     time.Duration // > 0: the session's idle timeout
	persist  bool          // RememberMe: persistent cookie
}

func (c expiryChange) pending() bool { return c.lifetime > 0 || c.idle > 0 || c.persist }

// apply writes c into e and reports whether the cookie the browser holds
// must change (a new deadline, or a cookie that becomes persistent).
func (c expiryChange) apply(e *Entry) (cookieChanged bool) {
	if c.lifetime > 0 {
		if d := e.Created.Add(c.lifetime); !d.Equal(e.Deadline) {
			e.Deadline, cookieChanged = d, true
		}
	}
	if c.idle > 0 {
		e.IdleTimeout = c.idle
	}
	if c.persist && !e.Persistent {
		e.Persistent, cookieChanged = true, true
	}
	return cookieChanged
}

// SetLifetime sets this session's absolute lifetime, counted from its
// creation, in place of Config.Lifetime: the deadline becomes creation +
// d, earlier or later than before, and the response carries a cookie with
// the new expiry. Like every expiry change it is durable (written to the
// database on Save). It panics if d is not positive.
func (s *Session) SetLifetime(d time.Duration) {
	if d <= 0 {
		panic("core: Session.SetLifetime expects a positive duration")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiry.lifetime = d
	s.changedExpiry()
}

// SetIdleTimeout sets how long this session lives without activity, in
// place of Config.IdleTimeout; it also becomes the session's memcached TTL.
// Activity is recorded at most once per Config.TouchInterval, so choose d
// well above it. The change is durable. It panics if d is not positive.
func (s *Session) SetIdleTimeout(d time.Duration) {
	if d <= 0 {
		panic("core: Session.SetIdleTimeout expects a positive duration")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiry.idle = d
	s.changedExpiry()
}

// RememberMe gives this session a persistent cookie that lasts until its
// deadline, and, when lifetime is positive, the absolute lifetime lifetime
// (as SetLifetime). With CookieConfig.SessionOnly set, sessions that are
// not remembered keep browser-session cookies, forgotten when the browser
// closes: the usual "remember me" box at login. The choice survives
// RenewToken and is stored with the session (it is durable). Pair it with
// SetIdleTimeout for a longer idle timeout too:
//
//	s.RenewToken()
//	if remember {
//		s.RememberMe(30 * 24 * time.Hour)
//		s.SetIdleTimeout(7 * 24 * time.Hour)
//	}
func (s *Session) RememberMe(lifetime time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lifetime > 0 {
		s.expiry.lifetime = lifetime
	}
	s.expiry.persist = true
	s.changedExpiry()
}

func (s *Session) changedExpiry() {
	s.saved = false
	s.status = Modified
}

// Persistent reports whether the session's cookie outlives the browser
// session: true after RememberMe, and for every session when
// CookieConfig.SessionOnly is false (the default).
func (s *Session) Persistent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.m.cfg.Cookie.SessionOnly || s.expiry.persist || (s.entry != nil && s.entry.Persistent)
}

// Deadline returns the end of the session's absolute lifetime, which no
// activity extends: creation + Config.Lifetime, or the lifetime set with
// SetLifetime or RememberMe (in effect once saved). For a session this
// request creates, creation is taken to be now.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadlineLocked()
}

func (s *Session) deadlineLocked() time.Time {
	created := s.m.store.Now()
	deadline := created.Add(s.m.cfg.Lifetime)
	if s.entry != nil {
		created, deadline = s.entry.Created, s.entry.Deadline
	}
	if s.expiry.lifetime > 0 {
		deadline = created.Add(s.expiry.lifetime)
	}
	return deadline
}

// IdleTimeout returns how long the session lives without activity:
// Config.IdleTimeout, or what SetIdleTimeout chose.
func (s *Session) IdleTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idleLocked()
}

func (s *Session) idleLocked() time.Duration {
	switch {
	case s.expiry.idle > 0:
		return s.expiry.idle
	case s.entry != nil:
		return s.entry.IdleTimeout
	}
	return s.m.cfg.IdleTimeout
}

// IdleExpiry returns when the session expires if no further request
// arrives: its last recorded activity plus its idle timeout, capped at
// Deadline. Read-only requests record activity at most once per
// TouchInterval, so during a request it may lie up to TouchInterval before
// now + IdleTimeout; after a write it is exact. For a session this request
// creates, the activity is now.
func (s *Session) IdleExpiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	active := s.m.store.Now()
	if s.entry != nil && s.expiry.idle == 0 && !s.entry.ActiveAt.IsZero() {
		active = s.entry.ActiveAt
	}
	t := active.Add(s.idleLocked())
	if d := s.deadlineLocked(); t.After(d) {
		return d
	}
	return t
}
