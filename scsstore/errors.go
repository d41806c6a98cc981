package scsstore

import "errors"

// Errors returned by the Store. Compare with errors.Is. Failures of the
// tiers themselves come from core and wrap core.ErrUnavailable; an entry too
// large for memcached wraps core.ErrTooLarge.
var (
	// ErrNotIterable is returned by All and AllCtx when the Store was built
	// without Config.Iterable, so the tokens of stored sessions cannot be
	// recovered (the tiers hold only a hash of each token).
	ErrNotIterable = errors.New("scsstore: All needs Config.Iterable (with scs's HashTokenInStore) and Config.Durable")

	// ErrInvalidToken is returned by Commit for an empty token or one longer
	// than 255 bytes. scs's tokens, and their hashes, are 43 bytes.
	ErrInvalidToken = errors.New("scsstore: invalid token")
)
