package core

import "errors"

// Errors returned by the Store, the Manager and the Session, most of them wrapped: compare with errors.Is.
var (
	// ErrTooLarge is returned when an encoded session exceeds MemcachedConfig.MaxItemSize (memcached
	// refuses items over its -I limit, 1 MiB by default). Nothing is written.
	ErrTooLarge = errors.New("core: session too large")
	// ErrConflict is returned by KV.Write when the key changed since it was read (a memcached CAS
	// mismatch, a row that moved on, an insert that found the key taken, a destruction): read again and
	// retry. The Manager retries by itself and returns it, from Save, only after 16 lost races in a row.
	ErrConflict = errors.New("core: session changed concurrently")
	// ErrUnavailable is returned when neither memcached nor the database could serve a request.
	// Adapters answer it with HTTP 503.
	ErrUnavailable = errors.New("core: session store unavailable")
	// ErrMalformed is returned, wrapped, by the built-in codecs' Decode for input that breaks their
	// limits: a length beyond the input, or nesting deeper than the codec allows (see Msgpack). The
	// Manager treats such a session as holding no values.
	ErrMalformed = errors.New("core: malformed session values")
	// ErrEncode wraps the codec's error when a session value cannot be encoded (a channel, a gob type
	// never registered). Nothing is written.
	ErrEncode = errors.New("core: cannot encode session values")
	// ErrInvalidSubject is returned by Manager.Save for a subject longer than 255 bytes, not valid UTF-8
	// or holding a NUL byte (which PostgreSQL refuses). Nothing is written.
	ErrInvalidSubject = errors.New("core: invalid session subject")
	// ErrChangedAfterCommit is logged by Manager.SaveTo (which the middleware calls) when a handler changes
	// a session after the middleware saved it for the response headers going out: the change is lost.
	ErrChangedAfterCommit = errors.New("core: session changed after the response was committed")

	// The Store's own answers; KV.Write reports the first two as ErrConflict.
	errExists       = errors.New("core: session already exists") // insert: the key is taken
	errDestroyed    = errors.New("core: session destroyed")      // update: destroyed since read
	errUnknownCodec = errors.New("core: unknown codec")          // left unread, never overwritten
)
