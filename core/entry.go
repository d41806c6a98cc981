package core

import (
	"slices"
	"time"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// Entry is one session as the Store keeps it: the header fields a caller
// may set and the opaque, codec-encoded payload. Entries returned by
// Store.Get remember where they were read from, so that Store.Update can
// detect concurrent writers. An Entry must not be used by two goroutines at
// once.
type Entry struct {
	// Payload is the codec-encoded session values. The Store looks inside
	// only to merge concurrent changes key by key (see Change).
	Payload []byte
	// Codec is the id of the codec that encoded Payload.
	Codec uint8
	// Subject is the optional user id the session belongs to (empty:
	// none): at most 255 bytes of UTF-8 without NUL, or Insert and Update
	// return ErrInvalidSubject.
	Subject string
	// Created is when the session was created.
	Created time.Time
	// Deadline is the end of the absolute lifetime; never extended.
	Deadline time.Time
	// IdleTimeout is how long the session lives without activity.
	IdleTimeout time.Duration
	// ActiveAt is the last recorded activity, set by every write.
	ActiveAt time.Time
	// Persistent is true when the session's cookie lasts until Deadline
	// even where CookieConfig.SessionOnly makes browser-session cookies
	// (Session.RememberMe).
	Persistent bool
	// Source is where Store.Get found the entry.
	Source Source

	env        envelope.Envelope // the stored header, as read or written
	key, mkey  string            // storage and memcached keys
	casID      uint64            // memcached CAS id, when via is viaCache
	rowVersion uint64            // the row's version, when via is viaRow
	via        via
	merged     bool // the last Update merged the row's values into Payload
}

// via says how an Entry is written back.
type via uint8

const (
	viaNone  via = iota // not stored yet
	viaCache            // compare-and-swap on the memcached copy read (casID)
	viaAdded            // memcached copy refilled from the row: CAS id unknown
	viaRow              // memcached unavailable or unreadable: conditional row write
)

// Source tells where a session's data came from on this request.
type Source uint8

const (
	// SourceNone: the session was not in the store (a new session).
	SourceNone Source = iota
	// SourceCache: memcached had the session.
	SourceCache
	// SourceDatabase: memcached did not have it (a restart, an eviction, a
	// moved key) or could not be asked, and the database row did.
	SourceDatabase
)

// String returns "none", "memcached" or "database".
func (s Source) String() string {
	switch s {
	case SourceCache:
		return "memcached"
	case SourceDatabase:
		return "database"
	}
	return "none"
}

// Change says what an Update changes, so that the Store can merge it with
// changes other app servers made at the same time. The zero Change is a
// touch: it records activity and changes no value.
type Change struct {
	// Keys lists the session keys whose values this write puts or deletes.
	Keys []string
	// All says the whole payload changed (a Clear, or a payload that is not
	// a map of keys, as scsstore's): on a merge, this copy's payload wins
	// whole.
	All bool
	// Header says the subject, idle timeout, deadline or Persistent
	// changed.
	Header bool
	// Durable makes Update write the database before it returns, and fail
	// with ErrUnavailable when the database does not take the write.
	Durable bool
}

// has reports whether c, a write being made now, changes key (AllKeys:
// the whole payload; headerKey: the header). A nil c changes nothing.
func (c *Change) has(key string) bool {
	switch {
	case c == nil:
		return false
	case c.All, key == headerKey && c.Header:
		return true
	}
	return slices.Contains(c.Keys, key)
}

// changes reports whether c changes the session (anything but a touch).
func (c Change) changes() bool { return len(c.Keys) > 0 || c.All || c.Header }

// headerKey is the name under which Change.Header is noted in the
// envelope's list of changed keys.
const headerKey = "\x00header"

// toEnvelope copies e's public fields into its envelope and returns it.
func (e *Entry) toEnvelope() *envelope.Envelope {
	v := &e.env
	v.Payload, v.Codec, v.Subject = e.Payload, e.Codec, e.Subject
	v.Created, v.Deadline, v.IdleTimeout = e.Created, e.Deadline, e.IdleTimeout
	v.ActiveAt, v.Persistent = e.ActiveAt, e.Persistent
	return v
}

// fromEnvelope sets e's public fields and envelope from v.
func (e *Entry) fromEnvelope(v *envelope.Envelope) {
	e.env = *v
	e.Payload, e.Codec, e.Subject = v.Payload, v.Codec, v.Subject
	e.Created, e.Deadline, e.IdleTimeout = v.Created, v.Deadline, v.IdleTimeout
	e.ActiveAt, e.Persistent = v.ActiveAt, v.Persistent
}

// ExpiresAt returns when the session dies if nothing more happens: the
// earlier of ActiveAt+IdleTimeout and Deadline.
func (e *Entry) ExpiresAt() time.Time { return e.toEnvelope().ExpiresAt() }
