package core

// Status is what a request did to its session, as Session.Status reports
// it — for code that runs after the handler (logging, audit, caching
// decisions).
type Status uint8

const (
	// Unmodified means the request read the session, or did not use it.
	Unmodified Status = iota
	// Modified means the request changed the session: values, subject,
	// expiry, durability or token (RenewToken), or created it.
	Modified
	// Destroyed means the request destroyed the session (Destroy) and did
	// not start a new one after.
	Destroyed
)

// String returns "unmodified", "modified" or "destroyed".
func (st Status) String() string {
	switch st {
	case Modified:
		return "modified"
	case Destroyed:
		return "destroyed"
	}
	return "unmodified"
}

// Status reports what this request did to the session. It stays valid
// after Save, so middleware that runs after the handler can read it.
func (s *Session) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Source reports where this request found the session: memcached, the
// database (memcached had lost it, or could not be asked), or nowhere (a
// new session). After Save it reports SourceNone for a session that was
// created.
func (s *Session) Source() Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entry == nil {
		return SourceNone
	}
	return s.entry.Source
}
