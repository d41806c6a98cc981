package core

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
)

// StoreConfig configures a Store. At least one tier must be configured.
type StoreConfig struct {
	// Memcached configures the fast tier. Optional: without servers every
	// read and write goes to the durable tier.
	Memcached MemcachedConfig
	// Seal configures AEAD sealing of every envelope in both tiers.
	// Optional, but without keys sessions are stored in plain text and can
	// be forged by anyone who can write to memcached; NewStore warns.
	Seal SealConfig
	// Durable is the database tier (the gormstore module; durabletest.Memory
	// for tests). Optional, but without it a memcached restart or eviction
	// logs users out. The Store never closes it.
	Durable durable.Tier
	// Codec encodes the values of new and changed sessions. Optional.
	// Default Msgpack.
	Codec Codec
	// Codecs lists further codecs stored sessions may have been written
	// with (during a change of Codec); they are rewritten with Codec on
	// their next change. An envelope of any other codec id is neither read
	// nor overwritten. Optional.
	Codecs []Codec
	// SyncInterval is how long a session's changes and activity may live in
	// memcached alone: the background writer brings every row up to date
	// within SyncInterval of its first unsynced change or touch, in
	// multi-row statements, so a memcached loss costs at most that much of
	// a session's recent changes, never the session. New, renewed and
	// destroyed sessions and durable changes are written at once.
	// Optional. Default 2m.
	SyncInterval time.Duration
	// WriteThrough makes every write durable (the row is written before
	// Update returns), as Django's cached_db does: a row write per changed
	// request and per touch. Optional. Default false: write-behind.
	WriteThrough bool
	// SyncQueueSize bounds how many sessions the background writer tracks;
	// one that does not fit (Stats.SyncDropped) keeps its changes in
	// memcached until its next write or the reaper. Optional. Default 100000.
	SyncQueueSize int
	// DBTimeout bounds every call to the durable tier: each request-path
	// read and write, each background and reaper batch. Optional. Default 3s.
	DBTimeout time.Duration
	// Reaper configures the reaper a Store with a durable tier runs.
	// Optional.
	Reaper ReaperConfig
	// Logger receives breaker transitions, background failures (each kind
	// at most once a minute) and the Managers' problems that do not fail a
	// request. Optional. Default slog.Default().
	Logger *slog.Logger
	// Clock returns the current time. Optional. Default time.Now. Skew
	// between app servers moves timeouts by at most the skew; it never
	// orders writes (versions are counters).
	Clock func() time.Time
}

// MemcachedConfig configures the memcached tier. The zero value means no
// memcached: every read and write goes to the durable tier.
type MemcachedConfig struct {
	// Servers lists the nodes as "host:port" or, for a unix socket, a path
	// containing a slash. Optional. Empty: no memcached tier. Keys are
	// spread by consistent hashing (ketama): adding or removing a node
	// moves about 1/N of the sessions, whose next read is served from the
	// database.
	Servers []string
	// KeyPrefix is put in front of every storage key, so applications can
	// share one memcached; it is bound into every seal. Optional. Default
	// "hs:". At most 200 bytes, no spaces or control bytes (memcached keys
	// are at most 250 bytes; the storage key takes 43).
	KeyPrefix string
	// Timeout bounds each memcached operation: the dial, each socket read
	// and write. Optional. Default 100ms.
	Timeout time.Duration
	// MaxItemSize is the largest envelope in bytes the Store writes; larger
	// sessions fail with ErrTooLarge before anything is sent. Optional.
	// Default 1 MiB − 1 KiB: memcached's default item limit (-I 1m) less
	// room for the item header and key.
	MaxItemSize int
	// BreakerThreshold is how many consecutive failures (network errors,
	// timeouts) open a node's circuit breaker; while open, its keys are
	// served from the database and the node is pinged every
	// BreakerCooldown. Optional. Default 3.
	BreakerThreshold int
	// BreakerCooldown is the time between pings of an open breaker's node.
	// Optional. Default 2s.
	BreakerCooldown time.Duration
	// DialContext, when set, opens the connections instead of a net.Dialer
	// (TLS runs over them). Optional.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set, speaks TLS to every node (memcached -Z, 1.5.13 and
	// later), verifying against TLS.RootCAs (system roots when nil); put a
	// client certificate in TLS.Certificates for mutual TLS. Optional.
	// Default plain text: sessions are still sealed, but storage keys and
	// sizes are visible on the network.
	TLS *tls.Config
	// Tracer, when set, is called before every memcached operation op
	// ("get", "get_multi", "add", "set", "cas") on the node at
	// addr, with the context of the request or job it serves; the function
	// it returns is called once with the result: nil, a protocol answer
	// (memcache.ErrCacheMiss, ErrNotStored, ErrCASConflict) or a failure.
	// It must be safe for concurrent use and must not block. The metrics
	// module's Tracer.StartCacheOp records OpenTelemetry spans. Optional.
	Tracer func(ctx context.Context, op, addr string) (end func(err error))
}

// ReaperConfig configures the reaper a Store runs (StoreConfig.Reaper), or
// one made with Store.NewReaper.
type ReaperConfig struct {
	// Interval is the time between passes, ± 10% so the reapers of many app
	// servers drift apart. Negative: the Store runs no reaper (run one
	// elsewhere: hsctl, or Store.NewReaper and Reaper.RunOnce from cron).
	// Optional. Default 1m.
	Interval time.Duration
	// Batch is how many rows one database transaction claims and one
	// memcached GetMulti asks about. Optional. Default 500.
	Batch int
	// Archive, when set, receives every dead session before its row is
	// deleted; an error keeps the row for the next pass (Stats.ReapErrors).
	// It runs inside the batch's transaction: keep it quick. Optional.
	Archive func(ctx context.Context, s ArchivedSession) error
}

// SealConfig configures sealing: AES-256-GCM (an AEAD) of every envelope
// in both tiers, bound to the session's storage key and the key prefix, so
// that without a key no one who reaches memcached or the database can read,
// forge, alter or move a session (docs/security.md). The zero value seals
// nothing, and NewStore warns.
type SealConfig struct {
	// Keys is the key ring, each key 32 random bytes (AES-256; NewSealKey,
	// ParseSealKeys). The first seals, all open. An envelope sealed with a
	// key this server lacks is a miss and is never overwritten, so keys
	// rotate one server at a time (docs/operations.md). Optional.
	Keys [][]byte
	// AcceptUnsealed also reads plain-text envelopes, sealing them on
	// their next write; without it they are left alone, unread. Turn it on
	// while switching a running site to sealing and off after Lifetime:
	// while on, a forged plain-text envelope is accepted. Optional.
	AcceptUnsealed bool
}

const (
	defaultSyncInterval  = 2 * time.Minute
	defaultSyncQueueSize = 100000
	defaultDBTimeout     = 3 * time.Second

	defaultKeyPrefix        = "hs:"
	defaultMemcacheTimeout  = 100 * time.Millisecond
	defaultMaxIdleConns     = 64 // per node: above the usual peak of parallel requests per app server
	defaultMaxItemSize      = 1<<20 - 1<<10
	defaultBreakerThreshold = 3
	defaultBreakerCooldown  = 2 * time.Second
	maxKeyPrefixLen         = 200

	defaultReapInterval = time.Minute
	defaultReapBatch    = 500
)

// fill sets the defaults of zero fields and validates cfg.
func (cfg *StoreConfig) fill() error {
	if len(cfg.Memcached.Servers) == 0 && cfg.Durable == nil {
		return errors.New("core: no memcached servers and no durable tier configured")
	}
	if err := cfg.Memcached.fill(); err != nil {
		return err
	}
	cfg.SyncInterval = cmp.Or(cfg.SyncInterval, defaultSyncInterval)
	cfg.SyncQueueSize = cmp.Or(cfg.SyncQueueSize, defaultSyncQueueSize)
	cfg.DBTimeout = cmp.Or(cfg.DBTimeout, defaultDBTimeout)
	cfg.Reaper.Interval = cmp.Or(cfg.Reaper.Interval, defaultReapInterval)
	cfg.Reaper.Batch = cmp.Or(cfg.Reaper.Batch, defaultReapBatch)
	if cfg.Codec == nil {
		cfg.Codec = Msgpack
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.SyncInterval < 0 || cfg.SyncQueueSize < 0 || cfg.DBTimeout < 0 || cfg.Reaper.Batch < 0 {
		return errors.New("core: StoreConfig.SyncInterval, SyncQueueSize, DBTimeout and Reaper.Batch must not be negative")
	}
	return nil
}

func (c *MemcachedConfig) fill() error {
	c.KeyPrefix = cmp.Or(c.KeyPrefix, defaultKeyPrefix)
	if len(c.KeyPrefix) > maxKeyPrefixLen {
		return fmt.Errorf("core: MemcachedConfig.KeyPrefix longer than %d bytes", maxKeyPrefixLen)
	}
	for i := 0; i < len(c.KeyPrefix); i++ {
		if b := c.KeyPrefix[i]; b <= ' ' || b == 0x7f {
			return errors.New("core: MemcachedConfig.KeyPrefix contains a space or control byte")
		}
	}
	c.Timeout = cmp.Or(c.Timeout, defaultMemcacheTimeout)
	c.MaxItemSize = cmp.Or(c.MaxItemSize, defaultMaxItemSize)
	c.BreakerThreshold = cmp.Or(c.BreakerThreshold, defaultBreakerThreshold)
	c.BreakerCooldown = cmp.Or(c.BreakerCooldown, defaultBreakerCooldown)
	if c.Timeout < 0 || c.BreakerCooldown < 0 || c.MaxItemSize < 0 || c.BreakerThreshold < 0 {
		return errors.New("core: MemcachedConfig durations and counts must not be negative")
	}
	return nil
}
