package fibersession

import (
	"context"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/core"
)

// RawCodecID is the codec id of the entries Storage writes: their payload
// is fiber's own bytes (for middleware/session, gob-encoded values), not
// values of a core.Codec. A core.Manager does not read such entries: a
// token that finds one loads as a new session. Storage in turn ignores
// entries of any other codec.
const RawCodecID uint8 = 61

// ErrResetNotSupported is returned by Storage.Reset.
var ErrResetNotSupported = errors.New("fibersession: Storage.Reset is not supported: " +
	"the store may be shared, and neither tier can delete only fiber's keys")

// StorageConfig configures a Storage. The zero value is ready to use.
type StorageConfig struct {
	// Timeout bounds each call, since fiber.Storage methods take no
	// context. It applies to the database tier; memcached operations have
	// their own timeout (core.MemcachedConfig.Timeout). Optional. Default 5s.
	Timeout time.Duration

	// NoExpiration is how long a value lives when Set is given an
	// expiration of 0, which fiber's contract calls "no expiration". The
	// store keeps nothing forever. Optional. Default 30 days.
	NoExpiration time.Duration

	// MaxRetries bounds how often Set re-reads and writes again when
	// another writer changed the key between its read and its write (see
	// Storage.Set). Optional. Default 8.
	MaxRetries int
}

const (
	defaultStorageTimeout = 5 * time.Second
	defaultNoExpiration   = 30 * 24 * time.Hour
	defaultMaxRetries     = 8
)

// Storage is a fiber.Storage on a core.Store, so that fiber's
// middleware/session — or any fiber middleware that takes a Storage —
// keeps its data in memcached with the database behind it, under the
// Store's sync rule and fallbacks. It is a core.KV (see there for keys)
// with fiber's context-free methods.
//
// A Storage is safe for concurrent use.
type Storage struct {
	kv  *core.KV
	cfg StorageConfig
}

var _ fiber.Storage = (*Storage)(nil)

// NewStorage returns a Storage on s. s is not closed by Storage.Close:
// close it yourself after the app shuts down. NewStorage panics if s is
// nil or a field of cfg is negative.
func NewStorage(s *core.Store, cfg StorageConfig) *Storage {
	if s == nil {
		panic("fibersession: NewStorage expects a non-nil *core.Store")
	}
	if cfg.Timeout < 0 || cfg.NoExpiration < 0 || cfg.MaxRetries < 0 {
		panic("fibersession: StorageConfig fields must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultStorageTimeout
	}
	if cfg.NoExpiration == 0 {
		cfg.NoExpiration = defaultNoExpiration
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = defaultMaxRetries
	}
	return &Storage{kv: core.NewKV(s, RawCodecID), cfg: cfg}
}

// Get returns the value stored under key, or nil with a nil error when
// there is none (never set, expired, deleted, an empty key, or an entry
// that Storage did not write). The error wraps core.ErrUnavailable when
// the store could not answer.
func (st *Storage) Get(key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.Timeout)
	defer cancel()
	it, err := st.kv.Read(ctx, key)
	if it == nil {
		return nil, err
	}
	return it.Value, nil
}

// Set stores val under key for exp; an exp of 0 or less means
// StorageConfig.NoExpiration. The value expires exp after the last Set (Get
// does not extend it). An empty key or value is ignored without an error,
// as fiber's Storage contract says. Set does not keep val after it returns.
//
// It reads the key and writes over it with compare-and-swap. When another
// writer changed the key in between, it reads and writes again, so the Set
// that finishes last wins. After MaxRetries lost races in a row it returns
// nil without writing: each lost race was another Set or Delete of the key
// completing during this call, so the result equals this Set followed by
// the last of those writes; it never fails with core.ErrConflict.
//
// It returns core.ErrTooLarge for a value over the store's item size, an
// error wrapping core.ErrUnavailable when the store could not take the
// write, and an error when key holds an entry that Storage did not write,
// which it does not overwrite.
func (st *Storage) Set(key string, val []byte, exp time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.Timeout)
	defer cancel()
	if key == "" || len(val) == 0 {
		return nil
	}
	if exp <= 0 {
		exp = st.cfg.NoExpiration
	}
	for attempt := 0; ; attempt++ {
		it, err := st.kv.Read(ctx, key)
		if err != nil {
			return err
		}
		if it != nil && it.Value == nil {
			return errors.New("fibersession: Storage.Set: the key holds an entry that Storage did not write")
		}
		err = st.kv.Write(ctx, key, it, val, exp, st.kv.Now().Add(exp))
		if !errors.Is(err, core.ErrConflict) {
			return err
		}
		if attempt >= st.cfg.MaxRetries {
			return nil
		}
	}
}

// Delete removes key from both tiers of the store. A missing or empty key
// is not an error. The error wraps core.ErrUnavailable when a tier that
// may hold the key could not be reached.
func (st *Storage) Delete(key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.Timeout)
	defer cancel()
	return st.kv.Delete(ctx, key)
}

// Reset is not supported: it returns ErrResetNotSupported and deletes
// nothing. Emptying memcached (flush_all) would drop every other
// application's data and every core.Manager session sharing the servers,
// and the store cannot enumerate fiber's keys alone.
func (st *Storage) Reset() error { return ErrResetNotSupported }

// Close does nothing and returns nil: the core.Store belongs to the
// caller, who closes it (core.Store.Close flushes pending database syncs).
func (st *Storage) Close() error { return nil }
