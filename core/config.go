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
)

// StoreConfig configures a Store. At least one tier must be configured.
type StoreConfig struct {
	// Memcached configures the fast tier. Optional: without servers every
	// read and write goes to the durable tier.
	Memcached MemcachedConfig

	// Seal configures authenticated encryption of every envelope, in both
	// tiers, with a key ring (see SealConfig). Optional, but without keys
	// sessions are stored in plain text and can be forged by anyone who
	// can write to memcached; NewStore logs a warning.
	Seal SealConfig

	// Durable is the database tier (see the gormstore module, and
	// durabletest.Memory for tests). Optional, but without it a memcached
	// restart or eviction logs users out. The Store never closes it.
	Durable Durable

	// Codec encodes the values of new and changed sessions. Optional.
	// Default Msgpack.
	Codec Codec

	// Codecs lists further codecs that may have written stored sessions
	// (after Codec changed, or during a rolling change of it), so that
	// they stay readable; they are rewritten with Codec on their next
	// change. The Store decodes with Codec and these only: an envelope
	// naming any other codec id is not read (and not overwritten).
	// Optional.
	Codecs []Codec

	// SyncInterval is how long a session's changes and activity may live in
	// memcached alone: the background writer brings every session's row up
	// to date within SyncInterval of its first unsynced change or touch, in
	// multi-row statements. The database copy may therefore lag memcached
	// by up to SyncInterval, and a memcached loss costs at most that much
	// of a session's recent changes — never the session itself. New,
	// renewed and destroyed sessions and durable changes are written at
	// once. Optional. Default 2m.
	SyncInterval time.Duration

	// WriteThrough makes every write a durable one: the database row is
	// written before each Update returns, as Django's cached_db does. It
	// costs a row write per changed request and per touch; choose it when
	// the database can take that load and no change may wait for the
	// writer. Optional. Default false: write-behind within SyncInterval.
	WriteThrough bool

	// SyncQueueSize bounds how many sessions the background writer tracks.
	// A session that does not fit is not tracked (counted in
	// Stats.SyncDropped): its changes stay in memcached until its next write
	// or, if none comes, until the reaper finds its row expired and reads
	// the copy. Optional. Default 100000.
	SyncQueueSize int

	// DBTimeout bounds every call to the durable tier: each read and write
	// on the request path, each background batch and each reaper batch. A
	// database that hangs then costs a request at most DBTimeout.
	// Optional. Default 3s.
	DBTimeout time.Duration

	// Reaper configures the reaper that a Store with a durable tier runs in
	// the background (see ReaperConfig). Optional.
	Reaper ReaperConfig

	// Logger receives breaker transitions and background failures, each
	// kind at most once a minute. Optional. Default slog.Default().
	Logger *slog.Logger

	// Clock returns the current time. Optional. Default time.Now. Set it to
	// drive simulations with a virtual clock. Clock skew between app
	// servers moves a session's timeouts by at most the skew; it never
	// orders writes (versions are counters).
	Clock func() time.Time
}

// MemcachedConfig configures the memcached tier. The zero value means no
// memcached: every read and write goes to the durable tier.
type MemcachedConfig struct {
	// Servers lists the memcached nodes as "host:port" or, for a unix
	// socket, a path containing a slash. Optional. Empty: no memcached tier.
	// With more than one server, keys are spread with consistent hashing
	// (ketama), so adding or removing a node moves about 1/N of the
	// sessions; their next read is served from the database.
	Servers []string

	// KeyPrefix is put in front of every storage key, so several
	// applications can share one memcached; it is also bound into every
	// seal. Optional. Default "hs:". At most 200 bytes, with no spaces or
	// control bytes (memcached keys are at most 250 bytes; the storage key
	// itself takes 43).
	KeyPrefix string

	// Timeout bounds each memcached operation: connecting, and each read
	// and write on the socket. Optional. Default 100ms.
	Timeout time.Duration

	// MaxIdleConns is the number of idle connections kept per node.
	// Optional. Default 64. Keep it above your peak of parallel requests per
	// app server, or requests pay for new connections.
	MaxIdleConns int

	// MaxItemSize is the largest envelope, in bytes, the Store writes.
	// Larger sessions fail with ErrTooLarge before anything is sent.
	// Optional. Default 1 MiB minus 1 KiB: memcached's default item size
	// limit (-I 1m) less room for the item header and key.
	MaxItemSize int

	// BreakerThreshold is how many consecutive failures (network errors,
	// timeouts) open a node's circuit breaker. While it is open, that
	// node's keys are served from the database without waiting on the node,
	// which is probed in the background every BreakerCooldown.
	// Optional. Default 3.
	BreakerThreshold int

	// BreakerCooldown is how long an open breaker waits between probes of
	// its node. Optional. Default 2s.
	BreakerCooldown time.Duration

	// DialContext, when set, opens connections to memcached nodes instead
	// of a net.Dialer. With TLS set, the TLS handshake runs over the
	// connections it returns. Optional.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// TLS, when set, speaks TLS to every node (memcached 1.5.13 and later
	// started with -Z). The server's certificate is verified against
	// TLS.RootCAs (the system's roots when nil); for mutual TLS put the
	// client certificate in TLS.Certificates. Optional. Default: plain
	// text — sessions are still sealed, but their storage keys and sizes
	// are visible on the network.
	TLS *tls.Config

	// Tracer, when set, is told about every memcached operation (see
	// CacheTracer). Optional.
	Tracer CacheTracer
}

// CacheTracer is told about every memcached operation the Store makes (the
// metrics module's Tracer records OpenTelemetry spans). StartCacheOp is
// called before operation op ("get", "get_multi", "add", "set", "cas",
// "delete") on the node at addr, with the context of the request or
// background job it serves; the function it returns is called once with
// the result: nil, a protocol answer (memcache.ErrCacheMiss, ErrNotStored,
// ErrCASConflict) or a failure. It must be safe for concurrent use and
// must not block.
type CacheTracer interface {
	StartCacheOp(ctx context.Context, op, addr string) (end func(err error))
}

// ReaperConfig configures the reaper a Store runs (StoreConfig.Reaper), or
// one made with Store.NewReaper.
type ReaperConfig struct {
	// Interval is the time between passes; each waits Interval ± 10% so
	// that the reapers of many app servers drift apart. A negative
	// Interval starts no reaper in the Store (run one elsewhere: the
	// operations command, or Store.NewReaper and Reaper.RunOnce from cron).
	// Optional. Default 1m.
	Interval time.Duration

	// Batch is how many rows one database transaction claims, and one
	// memcached GetMulti asks about. Optional. Default 500.
	Batch int

	// Archive, when set, receives every dead session before its row is
	// deleted. An error keeps the row for the next pass (counted in
	// Stats.ReapErrors). It runs inside the batch's database transaction:
	// keep it quick. Optional.
	Archive func(ctx context.Context, s ArchivedSession) error
}

// SealConfig configures the sealing of envelopes: AES-256-GCM of every
// envelope the Store writes to memcached and to the database, bound to the
// session's storage key and the Store's key prefix. A sealed envelope
// cannot be read, forged, altered or moved to another key by anyone who can
// reach memcached or read the database without holding a key. See
// docs/security.md for the threat model.
//
// The zero value seals nothing: sessions are stored in plain text, and
// NewStore logs a warning saying so.
type SealConfig struct {
	// Keys is the key ring: each key 32 bytes (AES-256) from a
	// cryptographically secure source (NewSealKey, ParseSealKeys). The
	// first key seals every write; every key opens. An app server that
	// meets an envelope sealed with a key it does not hold treats it as a
	// miss and never overwrites it, so keys can be rotated one server at
	// a time (docs/operations.md). Optional.
	Keys [][]byte

	// AcceptUnsealed makes a Store with Keys also read envelopes stored in
	// plain text; they are sealed on their next write. Without it such
	// envelopes are left alone, unread. Turn it on while switching a
	// running site to sealing, and off after Lifetime: while it is on, a
	// forged plain-text envelope is accepted. Optional. Default false.
	AcceptUnsealed bool
}

const (
	defaultSyncInterval  = 2 * time.Minute
	defaultSyncQueueSize = 100000
	defaultDBTimeout     = 3 * time.Second

	defaultKeyPrefix        = "hs:"
	defaultMemcacheTimeout  = 100 * time.Millisecond
	defaultMaxIdleConns     = 64
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
	c.MaxIdleConns = cmp.Or(c.MaxIdleConns, defaultMaxIdleConns)
	c.MaxItemSize = cmp.Or(c.MaxItemSize, defaultMaxItemSize)
	c.BreakerThreshold = cmp.Or(c.BreakerThreshold, defaultBreakerThreshold)
	c.BreakerCooldown = cmp.Or(c.BreakerCooldown, defaultBreakerCooldown)
	if c.Timeout < 0 || c.BreakerCooldown < 0 || c.MaxIdleConns < 0 || c.MaxItemSize < 0 || c.BreakerThreshold < 0 {
		return errors.New("core: MemcachedConfig durations and counts must not be negative")
	}
	return nil
}
