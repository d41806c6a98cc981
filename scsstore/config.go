package scsstore

import (
	"errors"
	"fmt"
	"time"
)

// Config configures a Store. The zero value is valid: a Store that is not
// iterable, with the default grace and memory.
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

	// Grace is how long a session's copies are kept after the expiry scs
	// gives it: memcached keeps the entry, and the database row may not be
	// reaped, until expiry + Grace. Find still reports a session expired at
	// scs's expiry exactly while memcached holds it.
	//
	// It exists because the database copy is written at most once per
	// SyncInterval: each Commit moves scs's expiry forward, but the row
	// holds the expiry of the last sync, up to SyncInterval older. When
	// memcached loses the session (restart, eviction, outage) the session is
	// read back from the row, and Find accepts it until the synced expiry +
	// SyncInterval, so a user active within scs's idle timeout is never
	// logged out. The price: a session read back from the database after a
	// memcached loss may outlive scs's expiry by up to SyncInterval (the
	// overshoot the core documents for its own sessions). Without memcached
	// every Commit reaches the database, and Find honours scs's expiry
	// exactly. scs's next Commit sets the expiry anew.
	//
	// It must be at least the Store's SyncInterval (New refuses less); a
	// larger value keeps rows longer but serves nothing past the bound
	// above. Optional. Default: the
	// Store's SyncInterval, and at least 2m.
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
	defaultGrace        = 2 * time.Minute
	defaultRememberSize = 10000
	defaultRememberFor  = time.Minute
)

// setDefaults fills zero fields and validates cfg against the Store's
// SyncInterval.
func (cfg *Config) setDefaults(syncInterval time.Duration) error {
	if cfg.Grace == 0 {
		cfg.Grace = max(defaultGrace, syncInterval)
	}
	if cfg.RememberSize == 0 {
		cfg.RememberSize = defaultRememberSize
	}
	if cfg.RememberFor == 0 {
		cfg.RememberFor = defaultRememberFor
	}
	var errs []error
	if cfg.Grace < 0 {
		errs = append(errs, errors.New("scsstore: Config.Grace must not be negative"))
	}
	if cfg.RememberFor < 0 {
		errs = append(errs, errors.New("scsstore: Config.RememberFor must not be negative"))
	}
	if cfg.Grace < syncInterval {
		errs = append(errs, fmt.Errorf("scsstore: Config.Grace (%v) must be at least the Store's SyncInterval (%v)", cfg.Grace, syncInterval))
	}
	return errors.Join(errs...)
}
