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
	// ErrConflict is returned by Store.Update when the session changed since
	// it was read (a memcached CAS mismatch, or a row that moved on).
	// The Manager handles it by re-reading and re-applying its changes; other
	// callers re-read and retry.
	ErrConflict = errors.New("core: session changed concurrently")
	// ErrExists is returned by Store.Insert when the key is already taken.
	ErrExists = errors.New("core: session already exists")
	// ErrUnavailable is returned when neither memcached nor the database
	// could serve a request. Adapters answer it with HTTP 503.
	ErrUnavailable = errors.New("core: session store unavailable")
	// ErrMalformed is returned, wrapped, by the built-in codecs' Decode for
	// input that breaks their limits: a length that exceeds the input, or
	// nesting deeper than the codec allows (see Msgpack). The Manager treats
	// such a session as holding no values.
	ErrMalformed = errors.New("core: malformed session values")
	// ErrUnknownCodec is wrapped by the error for an envelope that names a
	// codec the Store is not configured with (StoreConfig.Codec and
	// Codecs): the entry is left unread and never overwritten.
	ErrUnknownCodec = errors.New("core: unknown codec")
	// ErrEncode is returned, wrapping the codec's error, when a session value
	// cannot be encoded (for example a channel, or a gob type that was never
	// registered). Nothing is written and the stored copy is unchanged.
	ErrEncode = errors.New("core: cannot encode session values")
	// ErrDestroyed is returned by Store.Update when the session was
	// destroyed since it was read.
	ErrDestroyed = errors.New("core: session destroyed")
	// ErrInvalidSubject is returned by Store.Insert and Store.Update (and so
	// by Manager.Save) when a session's subject is longer than 255 bytes,
	// is not valid UTF-8 or holds a NUL byte (which PostgreSQL refuses).
	// Nothing is written.
	ErrInvalidSubject = errors.New("core: invalid session subject")
	// ErrChangedAfterCommit is logged (by Manager.SaveTo, which the
	// middleware calls) when a handler changes a session after the
	// middleware saved it because the response headers were going out:
	// the change is not saved.
	ErrChangedAfterCommit = errors.New("core: session changed after the response was committed")
)
