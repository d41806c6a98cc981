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

	// ErrConflict is returned by Store.Update when the entry changed since it
	// was read (a memcached CAS mismatch, or a newer row in the database).
	// The Manager handles it by re-reading and re-applying its changes; other
	// callers re-read and retry.
	ErrConflict = errors.New("core: session changed concurrently")

	// ErrExists is returned by Store.Insert when the key is already taken.
	ErrExists = errors.New("core: session already exists")

	// ErrUnavailable is returned when neither memcached nor the database
	// could serve a request. Adapters answer it with HTTP 503.
	ErrUnavailable = errors.New("core: session store unavailable")

	// ErrCacheUnavailable marks a memcached failure: a network error, a
	// timeout, or a node whose circuit breaker is open. The Store falls back to
	// the database on it; it reaches callers only wrapped in ErrUnavailable.
	ErrCacheUnavailable = errors.New("core: memcached unavailable")

	// ErrCorrupt is returned by DecodeEnvelope for bytes that are not a valid
	// envelope. The Store treats a corrupt entry or row as a miss.
	ErrCorrupt = errors.New("core: corrupt session envelope")

	// ErrNotAuthentic is wrapped, together with ErrCorrupt, by the error for
	// a sealed envelope that failed to open: altered, forged, copied under
	// another session's key, sealed with a key that is not in
	// StoreConfig.Seal.Keys, or stored in plain text while the Store has
	// keys. The Store treats such an entry or row as a miss and counts it in
	// Stats.SealFailures.
	ErrNotAuthentic = errors.New("core: session envelope failed to open")

	// ErrMalformed is returned, wrapped, by the built-in codecs' Decode for
	// input that breaks their limits: a length that exceeds the input, or
	// nesting deeper than the codec allows (see Msgpack). The Manager treats
	// such a session as holding no values.
	ErrMalformed = errors.New("core: malformed session values")

	// ErrUnknownCodec is returned when an envelope names a codec id that is
	// not registered with the Manager. The session is treated as absent.
	ErrUnknownCodec = errors.New("core: unknown codec")

	// ErrEncode is returned, wrapping the codec's error, when a session value
	// cannot be encoded (for example a channel, or a gob type that was never
	// registered). Nothing is written and the stored copy is unchanged.
	ErrEncode = errors.New("core: cannot encode session values")

	// ErrDestroyed is returned when a destroyed session is changed or saved
	// again, and by Store.Insert when the key still holds the tombstone of
	// a destroyed session.
	ErrDestroyed = errors.New("core: session destroyed")

	// ErrNotSaved is returned, wrapped with a count, by Store.Close when
	// durable writes that the database refused or could not be reached for
	// were still waiting when Close ended: memcached alone holds them (see
	// Stats.DurableLost).
	ErrNotSaved = errors.New("core: writes not saved to the database")

	// ErrInvalidSubject is returned by Store.Insert and Store.Update (and so
	// by Manager.Save) when a session's subject is longer than 255 bytes or
	// is not valid UTF-8. Nothing is written.
	ErrInvalidSubject = errors.New("core: invalid session subject")

	// ErrNoStore is returned by NewStore when neither memcached servers nor a
	// durable tier are configured.
	ErrNoStore = errors.New("core: no memcached servers and no durable tier configured")

	// ErrChangedAfterCommit is logged (by Manager.CheckCommitted, which the
	// middleware calls) when a handler changes a session after the
	// middleware saved it because the response headers were going out:
	// the change is not saved.
	ErrChangedAfterCommit = errors.New("core: session changed after the response was committed")
)
