package core

// flashKey is the session value that holds pending flash messages, as a
// flat list of kind and text pairs ([]string round-trips through every
// built-in codec).
const flashKey = "hs.flash"

// Flash is a one-time message for the next page the user sees, such as
// "Saved." after a form posts and redirects.
type Flash struct {
	// Kind classifies the message for display, such as "info", "success"
	// or "error"; the library gives it no meaning.
	Kind string
	// Message is the text.
	Message string
}

// AddFlash queues a message of the given kind for the next request that
// calls Flashes — typically the page a POST redirects to. Messages are
// kept in the session (under the key "hs.flash"), in order, until read.
func (s *Session) AddFlash(kind, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pairs := append(flashPairs(s.valuesLocked()[flashKey]), kind, message)
	s.values[flashKey] = pairs
	s.record(op{kind: opPut, key: flashKey, value: pairs})
}

// Flashes returns the queued flash messages, oldest first, and removes
// them from the session: each message is read once. It returns nil when
// there are none, which is not a change.
func (s *Session) Flashes() []Flash {
	pairs := flashPairs(s.Pop(flashKey))
	if pairs == nil {
		return nil
	}
	out := make([]Flash, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Flash{Kind: pairs[i], Message: pairs[i+1]})
	}
	return out
}

// flashPairs reads the stored list whatever the codec made of it: []string
// (gob, or this request) or []any of strings (JSON, msgpack). Anything else
// is dropped rather than trusted. The result is a copy.
func flashPairs(v any) []string {
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
