package core

import (
	"slices"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// entry is one session as the Store keeps it, and where it was read from, so that update can detect
// concurrent writers. Not for two goroutines at once.
type entry struct {
	envelope.Envelope // as read or to be written

	key, mkey string // storage and memcached keys
	casID     uint64 // memcached CAS id, when via is viaCache
	via       via
	source    string // where read found the entry: srcCache, srcDatabase, or "" (not read)
	merged    bool   // the last update merged the row's values into Payload
}

// via says how an entry is written back.
type via uint8

const (
	viaNone  via = iota // not stored yet
	viaCache            // compare-and-swap on the memcached copy read (casID)
	viaAdded            // memcached copy refilled from the row: CAS id unknown
	viaRow              // memcached unavailable or unreadable: conditional row write
)

// Where read found an entry, as Session.Source reports it.
const (
	srcCache    = "memcached"
	srcDatabase = "database" // memcached did not have it, or could not be asked
)

// change says what an update changes, for merging with others' changes. The zero change is a touch.
type change struct {
	Keys    []string // session keys whose values this write puts or deletes
	All     bool     // the whole payload changed (Clear, or an opaque payload): it wins a merge whole
	Header  bool     // the subject, idle timeout, deadline or Persistent changed
	Durable bool     // update writes the row before it returns, or fails with ErrUnavailable
}

// has reports whether c, a write being made now, changes key (AllKeys: the payload; headerKey: the header); nil c: no.
func (c *change) has(key string) bool {
	return c != nil && (c.All || key == headerKey && c.Header || slices.Contains(c.Keys, key))
}

// changes reports whether c changes the session (anything but a touch).
func (c change) changes() bool { return len(c.Keys) > 0 || c.All || c.Header }

const headerKey = "\x00header" // change.Header in the envelope's list of changed keys
