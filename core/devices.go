package core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

const deviceKey = "hs.device" // SetDeviceInfo's metadata as a flat list of name, value pairs

// SessionInfo describes one session of a subject for a "devices" page (Manager.Sessions), without the token
// or storage key, so its reader cannot take over the session.
type SessionInfo struct {
	ID         string            // for RevokeSession, as Session.ID; one-way from the key, safe to show
	Created    time.Time         // when the session was created (a login, usually)
	LastActive time.Time         // last recorded activity, precise to Config.TouchInterval
	Deadline   time.Time         // end of the absolute lifetime
	IdleExpiry time.Time         // when the session expires without further activity
	Persistent bool              // a "remember me" cookie (Session.RememberMe)
	Info       map[string]string // what Session.SetDeviceInfo recorded, nil when nothing was
}

func sessionID(key string) string {
	sum := sha256.Sum256([]byte("hybridsession session id\x00" + key))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// ID returns the session's public id (SessionInfo.ID), to mark "this device" on a devices page; "" until
// saved. Unlike Token it is not a secret.
func (s *Session) ID() string {
	if token := s.Token(); token != "" {
		key, _ := s.m.store.keys(token)
		return sessionID(key)
	}
	return ""
}

// SetDeviceInfo records metadata such as user agent, IP address or device name for Manager.Sessions
// (SessionInfo.Info), typically at login, replacing what was recorded; an empty info removes it. It is
// stored as the session value "hs.device", durably, so the devices page sees it at once.
func (s *Session) SetDeviceInfo(info map[string]string) {
	pairs := make([]string, 0, 2*len(info))
	for k, v := range info {
		pairs = append(pairs, k, v)
	}
	if len(pairs) > 0 {
		s.Put(deviceKey, pairs)
	} else if s.Pop(deviceKey) == nil {
		return
	}
	s.MarkDurable()
}

// deviceInfo reads SetDeviceInfo's pairs from decoded values, as any codec returns a []string; anything else,
// or a decoding error, yields nil.
func deviceInfo(values map[string]any, err error) map[string]string {
	pairs, ok := convert[[]string](values[deviceKey], false)
	if !ok || len(pairs) < 2 || err != nil {
		return nil
	}
	info := make(map[string]string, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		info[pairs[i]] = pairs[i+1]
	}
	return info
}

// Sessions lists the live sessions of subject (Session.SetSubject), oldest first, from the database rows
// overlaid by memcached's newer copies: one held there as destroyed or expired is left out. It returns an
// error without a durable tier, and one wrapping ErrUnavailable when the database could not answer.
func (m *Manager) Sessions(ctx context.Context, subject string) ([]SessionInfo, error) {
	out := []SessionInfo{}
	if subject == "" && m.store.durable != nil {
		return out, nil // each lists every row for ""; without a durable tier it returns its error
	}
	err := m.store.each(ctx, subject, func(rec durable.Record, row, cp *envelope.Envelope) error {
		e, _ := latest(row, cp, m.store.now())
		if e == nil || e.Subject != subject {
			return nil // memcached's copy may be ahead of the row
		}
		out = append(out, SessionInfo{ID: sessionID(rec.Key), Created: e.Created, LastActive: e.ActiveAt,
			Deadline: e.Deadline, IdleExpiry: e.ExpiresAt(), Persistent: e.Persistent,
			Info: deviceInfo(m.store.decode(e.Codec, e.Payload))})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b SessionInfo) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// RevokeSession destroys the session of subject whose ID is id (from Sessions), for a "sign out this
// device" button, and reports whether it found one; a session of another subject is never touched.
func (m *Manager) RevokeSession(ctx context.Context, subject, id string) (bool, error) {
	n, err := m.store.destroyRows(ctx, subject, func(key string) bool { return sessionID(key) == id })
	return n > 0, err
}

// DestroyOtherSessions destroys every session of current's subject but current ("sign out all other
// devices"; none without a subject) and returns how many; the error wraps ErrUnavailable for the rest.
func (m *Manager) DestroyOtherSessions(ctx context.Context, current *Session) (int, error) {
	keep := current.ID()
	return m.store.destroyRows(ctx, current.Subject(), func(key string) bool { return sessionID(key) != keep })
}
