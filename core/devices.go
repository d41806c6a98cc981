package core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"time"
)

// deviceKey is the session value that holds the metadata SetDeviceInfo
// records, as a flat list of name and value pairs.
const deviceKey = "hs.device"

// SessionInfo describes one session of a subject for a "devices" page
// (Manager.Sessions). It holds nothing that lets its reader take over the
// session: neither the token nor the storage key.
type SessionInfo struct {
	// ID identifies the session to RevokeSession and compares with
	// Session.ID. It is derived one way from the storage key, so it is safe
	// to show and to put in a form.
	ID string
	// Created is when the session was created (a login, usually).
	Created time.Time
	// LastActive is the session's last recorded activity (see
	// Config.TouchInterval for its precision).
	LastActive time.Time
	// Deadline is the end of the session's absolute lifetime.
	Deadline time.Time
	// IdleExpiry is when the session expires without further activity.
	IdleExpiry time.Time
	// Persistent reports a "remember me" cookie (Session.RememberMe).
	Persistent bool
	// Info is what the application recorded with Session.SetDeviceInfo,
	// nil when nothing was recorded.
	Info map[string]string
}

// sessionID derives the public id from a storage key.
func sessionID(key string) string {
	sum := sha256.Sum256([]byte("hybridsession session id\x00" + key))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// ID returns the session's public id, the SessionInfo.ID that
// Manager.Sessions lists it under; "" for a new session not saved yet. Use
// it to mark "this device" on a devices page. Unlike Token it is not a
// secret.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == "" {
		return ""
	}
	key, _ := s.m.store.keys(s.token)
	return sessionID(key)
}

// SetDeviceInfo records metadata the application chooses — user agent, IP
// address, a device name — for Manager.Sessions to list (SessionInfo.Info),
// typically at login. It replaces what was recorded before; a nil or empty
// info removes it. It is stored as a session value (key "hs.device"), and
// the change is durable, so the devices page sees it at once.
func (s *Session) SetDeviceInfo(info map[string]string) {
	if len(info) == 0 {
		if s.Pop(deviceKey) != nil {
			s.MarkDurable()
		}
		return
	}
	pairs := make([]string, 0, 2*len(info))
	for k, v := range info {
		pairs = append(pairs, k, v)
	}
	s.Put(deviceKey, pairs)
	s.MarkDurable()
}

func deviceInfo(values map[string]any) map[string]string {
	pairs := stringPairs(values[deviceKey])
	if len(pairs) < 2 {
		return nil
	}
	info := make(map[string]string, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		info[pairs[i]] = pairs[i+1]
	}
	return info
}

// Sessions lists the live sessions of subject (see Session.SetSubject),
// oldest first, however many there are (paging through the database, where
// every session with a subject has a row). memcached's copies, which may be
// ahead of the rows, overlay them: a session memcached holds as destroyed or
// expired is left out, and last activity and device info come from the
// newest copy. It returns an error when the Store has no durable tier, and
// one wrapping ErrUnavailable when the database could not answer.
func (m *Manager) Sessions(ctx context.Context, subject string) ([]SessionInfo, error) {
	listed, err := m.store.listSubject(ctx, subject)
	if err != nil {
		return nil, err
	}
	out := make([]SessionInfo, 0, len(listed))
	for _, l := range listed {
		info := SessionInfo{
			ID:         sessionID(l.Key),
			Created:    l.Entry.Created,
			LastActive: l.Entry.ActiveAt,
			Deadline:   l.Entry.Deadline,
			IdleExpiry: l.Entry.ExpiresAt(),
			Persistent: l.Entry.Persistent,
		}
		if values, err := m.decode(l.Entry); err == nil {
			info.Info = deviceInfo(values)
		}
		out = append(out, info)
	}
	slices.SortStableFunc(out, func(a, b SessionInfo) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// RevokeSession destroys the session of subject whose ID is id (from
// Sessions), for a "sign out this device" button. It reports whether such
// a session was found; a session of another subject is never touched.
func (m *Manager) RevokeSession(ctx context.Context, subject, id string) (bool, error) {
	n, err := m.store.destroyRows(ctx, subject, func(key string) bool { return sessionID(key) == id })
	return n > 0, err
}

// DestroyOtherSessions destroys every session of current's subject except
// current — "sign out all other devices" — and returns how many it
// destroyed. A session without a subject has no others. The error wraps
// ErrUnavailable when some could not be destroyed; the count says how many
// were.
func (m *Manager) DestroyOtherSessions(ctx context.Context, current *Session) (int, error) {
	keep := current.ID()
	return m.store.destroyRows(ctx, current.Subject(), func(key string) bool { return sessionID(key) != keep })
}

// listSubject returns every live session of subject, paging through the
// database.
func (s *Store) listSubject(ctx context.Context, subject string) ([]listedEntry, error) {
	if s.durable == nil {
		return nil, errors.New("core: listing a subject's sessions needs a durable tier")
	}
	var out []listedEntry
	for after := ""; subject != ""; {
		page, next, err := s.list(ctx, subject, after, listPage)
		if err != nil {
			return nil, err
		}
		for _, le := range page {
			if le.Entry.Subject == subject { // memcached's copy may be ahead of the row
				out = append(out, le)
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	return out, nil
}

// stringPairs reads a stored list of strings whatever the codec made of it: []string
// (gob, or this request) or []any of strings (JSON, msgpack). Anything else
// is dropped rather than trusted. The result is a copy.
func stringPairs(v any) []string {
	switch l := v.(type) {
	case []string:
		return append([]string(nil), l...)
	case []any:
		out := make([]string, 0, len(l))
		for _, x := range l {
			str, ok := x.(string)
			if !ok {
				return nil
			}
			out = append(out, str)
		}
		return out
	}
	return nil
}
