package core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"
)

// deviceKey is the session value that holds the metadata SetDeviceInfo
// records, as a flat list of name and value pairs.
const deviceKey = "hs.device"

// maxSubjectSessions bounds how many sessions of one subject Sessions,
// RevokeSession and DestroyOtherSessions look at.
const maxSubjectSessions = 1000

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
// address, a device name — for Manager.Sessions to list, typically at
// login. It replaces what was recorded before; a nil or empty info removes
// it. It is stored as a session value (key "hs.device"), and the change is
// durable, so the devices page sees it at once.
func (s *Session) SetDeviceInfo(info map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.valuesLocked()
	if len(info) == 0 {
		if _, ok := v[deviceKey]; ok {
			delete(v, deviceKey)
			s.record(op{kind: opDelete, key: deviceKey})
			s.durable = true
		}
		return
	}
	pairs := make([]string, 0, 2*len(info))
	for k, val := range info {
		pairs = append(pairs, k, val)
	}
	v[deviceKey] = pairs
	s.record(op{kind: opPut, key: deviceKey, value: pairs})
	s.durable = true
}

// DeviceInfo returns what SetDeviceInfo recorded, nil when nothing was.
func (s *Session) DeviceInfo() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return deviceInfo(s.valuesLocked())
}

func deviceInfo(values map[string]any) map[string]string {
	pairs := flashPairs(values[deviceKey])
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
// oldest first — at most 1000 of them. It reads the database, where every
// session with a subject has a row, and overlays memcached's copies, which
// may be ahead of the rows: a session memcached holds as destroyed or
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

// RevokeSession destroys the session of subject whose SessionInfo.ID is id,
// in both tiers, and reports whether it found one. Sessions of other
// subjects are never touched, so id may come from a form as long as
// subject comes from the logged-in user. Errors are those of Sessions and,
// wrapping ErrUnavailable, of the deletion.
func (m *Manager) RevokeSession(ctx context.Context, subject, id string) (bool, error) {
	listed, err := m.store.listSubject(ctx, subject)
	if err != nil {
		return false, err
	}
	for _, l := range listed {
		if sessionID(l.Key) == id {
			return true, m.store.deleteKey(ctx, l.Key)
		}
	}
	return false, nil
}

// DestroyOtherSessions destroys every session of current's subject except
// current itself — "log out everywhere else", for example after a password
// change — and returns how many it destroyed. A current session without a
// subject destroys nothing. Errors are those of Sessions and, wrapping
// ErrUnavailable, of the deletions (the others are still attempted).
func (m *Manager) DestroyOtherSessions(ctx context.Context, current *Session) (int, error) {
	subject := current.Subject()
	if subject == "" {
		return 0, nil
	}
	keep := current.ID()
	listed, err := m.store.listSubject(ctx, subject)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, l := range listed {
		if sessionID(l.Key) == keep {
			continue
		}
		if err := m.store.deleteKey(ctx, l.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// listSubject returns the live sessions of subject: the durable tier's
// rows, overlaid with memcached's copies where those are at least as new
// (one GetMulti), without refilling memcached. A copy memcached holds as a
// tombstone, expired, or under another subject drops the session.
func (s *Store) listSubject(ctx context.Context, subject string) ([]ListedEntry, error) {
	if s.durable == nil {
		return nil, errors.New("core: listing a subject's sessions needs a durable tier")
	}
	if subject == "" {
		return nil, nil
	}
	now := s.now()
	dctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	recs, err := s.durable.ListSubject(dctx, subject, now, maxSubjectSessions)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	out := s.overlay(recs, now)
	kept := out[:0]
	for _, le := range out {
		if le.Entry.Subject == subject { // memcached's copy may be ahead of the row
			kept = append(kept, le)
		}
	}
	return kept, nil
}
