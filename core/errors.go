package core

import "errors"

// Errors returned by the Store, the Manager and the Session. Compare with
// errors.Is: most are returned wrapped with context.
var (
	// ErrTooLarge is returned when an encoded session exceeds the configured
	// maximum item size (MemcachedConfig.MaxItemSize; memcached refuses items
	// over its -I limit, 1 MiB by default). Nothing is written and the stored
	// copy is unchanged.
	ErrTooLarge = errors.New("core: session too large")
	// ErrConflict is returned by KV.Write when the key changed since it was
	// read (a memcached CAS mismatch, a row that moved on, an insert that
	// found the key taken, a destruction): read again and retry. The
	// Manager retries by itself and returns it, from Save, only after 16
	// lost races in a row.
	ErrConflict = errors.New("core: session changed concurrently")
	// ErrUnavailable is returned when neither memcached nor the database
	// could serve a request. Adapters answer it with HTTP 503.
	ErrUnavailable = errors.New("core: session store unavailable")
	// ErrMalformed is returned, wrapped, by the built-in codecs' Decode for
	// input that breaks their limits: a length that exceeds the input, or
	// nesting deeper than the codec allows (see Msgpack). The Manager treats
	// such a session as holding no values.
	ErrMalformed = errors.New("core: malformed session values")
	// ErrEncode is returned, wrapping the codec's error, when a session value
	// cannot be encoded (for example a channel, or a gob type that was never
	// registered). Nothing is written and the stored copy is unchanged.
	ErrEncode = errors.New("core: cannot encode session values")
	// ErrInvalidSubject is returned by Manager.Save when a session's subject is longer than 255 bytes,
	// is not valid UTF-8 or holds a NUL byte (which PostgreSQL refuses).
	// Nothing is written.
	ErrInvalidSubject = errors.New("core: invalid session subject")
	// ErrChangedAfterCommit is logged (by Manager.SaveTo, which the
	// middleware calls) when a handler changes a session after the
	// middleware saved it because the response headers were going out:
	// the change is not saved.
	ErrChangedAfterCommit = errors.New("core: session changed after the response was committed")
)

// The Store's own answers, which KV.Write reports as ErrConflict.
var (
	errExists    = errors.New("core: session already exists") // insert: the key is taken
	errDestroyed = errors.New("core: session destroyed")      // update: destroyed since read
	// An envelope naming a codec the Store is not configured with: left
	// unread and never overwritten.
	errUnknownCodec = errors.New("core: unknown codec")
)
