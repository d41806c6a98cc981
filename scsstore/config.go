package scsstore

import (
	"errors"
	"time"
)

// Config configures a Store. The zero value is valid: a Store that is not
// iterable, with the default memory (RememberSize, RememberFor).
type Config struct {
	// Iterable keeps scs's token inside each stored session so that All can
	// return it: the tiers key sessions by a hash of the token, which cannot
	// be reversed. Only iterable Stores implement All usefully; scs's
	// Iterate needs it.
	//
	// Security: with scs's HashTokenInStore on, the token scs passes to the
	// store is already a SHA-256 hash of the cookie value, and keeping it
	// hands nobody a live session. With HashTokenInStore off, the raw
	// cookie value would be kept in memcached and in the database, and
	// anyone who can read either could take over the session. Set Iterable
	// only together with HashTokenInStore.
	//
	// Sessions written while Iterable was false hold no token and are left
	// out of All until their next Commit. Optional. Default false.
	Iterable bool

	// Grace has no effect.
	//
	// Deprecated: Grace used to keep a session's copies that long past
	// scs's expiry to cover the lag of the database copy. They are now kept
	// exactly that lag past it, the Store's SyncInterval, and Find accepts
	// a session read back from its row after a memcached loss until the
	// row's expiry plus SyncInterval, as before (the overshoot the core
	// documents for its own sessions).
	Grace time.Duration

	// RememberSize is how many sessions read by Find are remembered for the
	// Commit of the same request, which then skips reading the session
	// again (see Store). Each costs about 200 bytes, whatever the session's
	// size; the least recently read is forgotten first. Optional. Default
	// 10000. A negative value remembers nothing: every Commit reads first.
	// The memo is hashicorp/golang-lru's expirable LRU, whose pruning
	// goroutine lives as long as the process: create one Store per process,
	// not one per request or test case.
	RememberSize int

	// RememberFor is how long, in real time, a session read by Find is
	// remembered. A Commit that comes later reads the session again.
	// Optional. Default 1m.
	RememberFor time.Duration
}

const (
	defaultRememberSize = 10000
	defaultRememberFor  = time.Minute
)

// setDefaults fills zero fields and validates cfg.
func (cfg *Config) setDefaults() error {
	if cfg.RememberSize == 0 {
		cfg.RememberSize = defaultRememberSize
	}
	if cfg.RememberFor == 0 {
		cfg.RememberFor = defaultRememberFor
	}
	if cfg.RememberFor < 0 {
		return errors.New("scsstore: Config.RememberFor must not be negative")
	}
	return nil
}
