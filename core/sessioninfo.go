package core

import "time"

// Source tells where a Session's data came from on this request.
type Source uint8

const (
	// SourceNone: the session was not in the store (a new session).
	SourceNone Source = iota
	// SourceCache: memcached had the session.
	SourceCache
	// SourceDatabase: memcached did not have it (a restart, an eviction, a
	// moved key) or could not be asked, and the durable tier did; the
	// session was restored from its row.
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

// TierInfo describes where a Session stands in the tiers, for display
// and diagnostics; see Session.TierInfo.
type TierInfo struct {
	// Source is where this request's copy came from.
	Source Source
	// Version is the session's version as read: it increases with every
	// change. 0 for a new session.
	Version uint64
	// SyncedAt is when the session last reached the durable tier, as
	// recorded in the copy read; zero when never (or for a new session).
	SyncedAt time.Time
	// SyncedVersion is Version at SyncedAt.
	SyncedVersion uint64
}

// TierInfo returns where the session came from and its version and last sync,
// as loaded for this request. After Save it describes the copy written,
// with Source SourceNone.
func (s *Session) TierInfo() TierInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entry
	if e == nil {
		return TierInfo{}
	}
	info := TierInfo{Version: e.Version, SyncedAt: e.SyncedAt, SyncedVersion: e.SyncedVersion}
	switch {
	case e.cached:
		info.Source = SourceCache
	case e.Restored:
		info.Source = SourceDatabase
	}
	return info
}
