package fiber3session

import (
	"context"
	"errors"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/hybridsession/hybridsession/core"
)

// RawCodecID is the codec id of the entries Storage writes: their payload
// is fiber's own bytes, not values of a core.Codec. A core.Manager does not
// read such entries: a token that finds one loads as a new session.
// Storage in turn ignores entries of any other codec. It is the id
// fibersession's Storage uses, so fiber v2 and v3 apps share data.
const RawCodecID uint8 = 61

// ErrResetNotSupported is returned by Storage.Reset and ResetWithContext.
var ErrResetNotSupported = errors.New("fiber3session: Storage.Reset is not supported: " +
	"the store may be shared, and neither tier can delete only fiber's keys")

// StorageConfig configures a Storage. The zero value is ready to use.
type StorageConfig struct {
	// Timeout bounds each call of the methods that take no context (Get,
	// Set, Delete); the WithContext methods use the caller's context. It
	// applies to the database tier; memcached operations have their own
	// timeout (core.MemcachedConfig.Timeout). Optional. Default 5s.
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

// Storage is a fiber v3 Storage on a core.Store, so that fiber's session,
// CSRF and limiter middleware — or any fiber middleware that takes a
// Storage — keep their data in memcached with the database behind it,
// under the Store's sync rule and fallbacks. It is a core.KV (see there
// for keys) with fiber v3's methods: an empty key or value is ignored
// without an error, as fiber's contract says.
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
		panic("fiber3session: NewStorage expects a non-nil *core.Store")
	}
	if cfg.Timeout < 0 || cfg.NoExpiration < 0 || cfg.MaxRetries < 0 {
		panic("fiber3session: StorageConfig fields must not be negative")
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

// GetWithContext returns the value stored under key, or nil with a nil
// error when there is none (never set, expired, deleted, an empty key, or
// an entry that Storage did not write). The error wraps
// core.ErrUnavailable when the store could not answer.
func (st *Storage) GetWithContext(ctx context.Context, key string) ([]byte, error) {
	it, err := st.kv.Read(ctx, key)
	if it == nil {
		return nil, err
	}
	return it.Value, nil
}

// Get is GetWithContext bounded by StorageConfig.Timeout.
func (st *Storage) Get(key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.Timeout)
	defer cancel()
	return st.GetWithContext(ctx, key)
}

// SetWithContext stores val under key for exp; an exp of 0 or less means
// StorageConfig.NoExpiration. The value expires exp after the last Set (Get
// does not extend it). An empty key or value is ignored without an error.
// It does not keep val after it returns.
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
func (st *Storage) SetWithContext(ctx context.Context, key string, val []byte, exp time.Duration) error {
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
			return errors.New("fiber3session: Storage.Set: the key holds an entry that Storage did not write")
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

// Set is SetWithContext bounded by StorageConfig.Timeout.
func (st *Storage) Set(key string, val []byte, exp time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.Timeout)
	defer cancel()
	return st.SetWithContext(ctx, key, val, exp)
}

// DeleteWithContext removes key from both tiers of the store. A missing or
// empty key is not an error. The error wraps core.ErrUnavailable when a
// tier that may hold the key could not be reached.
func (st *Storage) DeleteWithContext(ctx context.Context, key string) error {
	return st.kv.Delete(ctx, key)
}

// Delete is DeleteWithContext bounded by StorageConfig.Timeout.
func (st *Storage) Delete(key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.Timeout)
	defer cancel()
	return st.kv.Delete(ctx, key)
}

// ResetWithContext is not supported: it returns ErrResetNotSupported and
// deletes nothing. Emptying memcached (flush_all) would drop every other
// application's data and every core.Manager session sharing the servers,
// and the store cannot enumerate fiber's keys alone.
func (st *Storage) ResetWithContext(context.Context) error { return ErrResetNotSupported }

// Reset is ResetWithContext: it returns ErrResetNotSupported.
func (st *Storage) Reset() error { return ErrResetNotSupported }

// Close does nothing and returns nil: the core.Store belongs to the
// caller, who closes it (core.Store.Close flushes pending database syncs).
func (st *Storage) Close() error { return nil }
