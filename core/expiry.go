package core

import "time"

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

// SetIdleTimeout sets how long this session lives without activity, in place of Config.IdleTimeout,
// and its memcached TTL. Activity is recorded at most once per Config.TouchInterval, so choose d well
// above it. The change is durable. It panics if d is not positive.
func (s *Session) SetIdleTimeout(d time.Duration) {
	if d <= 0 {
		panic("core: Session.SetIdleTimeout expects a positive duration")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiry.idle, s.saved = d, false
}

// RememberMe gives this session a persistent cookie lasting until its deadline and, when lifetime is
// positive, an absolute lifetime from its creation in place of Config.Lifetime (the deadline moves
// earlier or later). With CookieConfig.SessionOnly, sessions not remembered keep browser-session
// cookies: the usual "remember me" box at login. The choice is durable and survives RenewToken. Pair
// it with SetIdleTimeout for a longer idle timeout too:
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
	s.expiry.persist, s.saved = true, false
}

// Deadline returns the end of the session's absolute lifetime, which no activity extends: creation +
// Config.Lifetime, or RememberMe's lifetime. A session this request creates counts as created now.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadlineLocked()
}

func (s *Session) deadlineLocked() time.Time {
	created := s.m.store.now()
	deadline := created.Add(s.m.cfg.Lifetime)
	if s.entry != nil {
		created, deadline = s.entry.Created, s.entry.Deadline
	}
	if s.expiry.lifetime > 0 {
		deadline = created.Add(s.expiry.lifetime)
	}
	return deadline
}

// IdleExpiry returns when the session expires if no further request arrives: its last recorded
// activity plus its idle timeout (Config.IdleTimeout or SetIdleTimeout's), capped at Deadline. Reads
// record activity at most once per TouchInterval, so during a request it may lie up to TouchInterval
// before now + the idle timeout; after a write it is exact. A session this request creates was active now.
func (s *Session) IdleExpiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	active, idle := s.m.store.now(), s.m.cfg.IdleTimeout
	if s.entry != nil {
		idle = s.entry.IdleTimeout
		if !s.entry.ActiveAt.IsZero() {
			active = s.entry.ActiveAt
		}
	}
	if s.expiry.idle > 0 {
		active, idle = s.m.store.now(), s.expiry.idle
	}
	t, d := active.Add(idle), s.deadlineLocked()
	if t.After(d) {
		return d
	}
	return t
}
