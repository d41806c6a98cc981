package core

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
)

// StoreConfig configures a Store. At least one tier must be configured.
type StoreConfig struct {
	// Memcached configures the fast tier. Optional: without servers every read and write goes to Durable.
	Memcached MemcachedConfig
	// Seal configures AEAD sealing of every envelope in both tiers. Optional, but without keys sessions are
	// stored in plain text and can be forged by anyone who can write to memcached; NewStore warns.
	Seal SealConfig
	// Durable is the database tier (the gormstore module; durabletest.Memory for tests). Optional, but
	// without it a memcached restart or eviction logs users out. The Store never closes it.
	Durable durable.Tier
	// Codec encodes the values of new and changed sessions. Optional. Default Msgpack.
	Codec Codec
	// Codecs lists further codecs stored sessions may be in (during a change of Codec), rewritten with Codec
	// on their next change; an envelope of any other codec id is neither read nor overwritten. Optional.
	Codecs []Codec
	// SyncInterval bounds how long a session's changes and activity live in memcached alone before the
	// background writer writes its row, so a memcached loss costs at most that much, never the session. New,
	// renewed and destroyed sessions and durable changes are written at once. Optional. Default 2m.
	SyncInterval time.Duration
	// WriteThrough writes the row before Update returns, as Django's cached_db does: a row write per changed
	// request and per touch. Optional. Default false: write-behind.
	WriteThrough bool
	// SyncQueueSize bounds how many sessions the background writer tracks; one that does not fit
	// (Stats.SyncDropped) is synced by its next write or the reaper. Optional. Default 100000.
	SyncQueueSize int
	// DBTimeout bounds every call to the durable tier: each request-path read and write, each background
	// and reaper batch. Optional. Default 3s.
	DBTimeout time.Duration
	// Reaper configures the reaper a Store with a durable tier runs. Optional.
	Reaper ReaperConfig
	// Logger receives breaker transitions, background failures (each kind at most once a minute) and the
	// Managers' problems that do not fail a request. Optional. Default slog.Default().
	Logger *slog.Logger
	// Clock returns the current time. Optional. Default time.Now. Skew between app servers moves timeouts
	// by at most the skew; it never orders writes (versions are counters).
	Clock func() time.Time
}

// MemcachedConfig configures the memcached tier. Without Servers there is none.
type MemcachedConfig struct {
	// Servers lists the nodes as "host:port" or, for a unix socket, a path with a slash. Optional. Keys are
	// spread by consistent hashing (ketama): adding or removing a node moves about 1/N of the sessions.
	Servers []string
	// KeyPrefix is put in front of every storage key, so applications can share one memcached; it is bound
	// into every seal. Optional. Default "hs:". At most 200 bytes, no spaces or control bytes (memcached
	// keys are at most 250 bytes; the storage key takes 43).
	KeyPrefix string
	// Timeout bounds each memcached operation: the dial, each socket read and write. Optional. Default 100ms.
	Timeout time.Duration
	// MaxItemSize is the largest envelope in bytes the Store writes; a larger one fails with ErrTooLarge,
	// unsent. Optional. Default 1 MiB − 1 KiB: memcached's default item limit (-I 1m) less header and key.
	MaxItemSize int
	// BreakerThreshold is how many consecutive failures (network errors, timeouts) open a node's circuit
	// breaker, which serves its keys from the database and pings it every BreakerCooldown. Optional. Default 3.
	BreakerThreshold int
	// BreakerCooldown is the time between pings of an open breaker's node. Optional. Default 2s.
	BreakerCooldown time.Duration
	// DialContext, when set, opens the connections instead of a net.Dialer (TLS runs over them). Optional.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set, speaks TLS (memcached -Z, 1.5.13 and later) to every node, verifying against TLS.RootCAs
	// (system roots when nil; TLS.Certificates for mutual TLS). Optional. Default plain text: sessions are
	// still sealed, but storage keys and sizes show on the network. InsecureSkipVerify is allowed and logged at Warn.
	TLS *tls.Config
	// Tracer, when set, is called before each memcached operation op ("get", "get_multi", "add", "set",
	// "cas") on node addr with the context it serves; end is called once with the result: nil, a protocol
	// answer (memcache.ErrCacheMiss, ErrNotStored, ErrCASConflict) or a failure. It must be safe for
	// concurrent use and not block; the metrics module's Tracer.StartCacheOp records OpenTelemetry spans.
	Tracer func(ctx context.Context, op, addr string) (end func(err error))
}

// ReaperConfig configures the reaper a Store runs (StoreConfig.Reaper), or one made with Store.NewReaper.
type ReaperConfig struct {
	// Interval is the time between passes, ± 10% so app servers' reapers drift apart. Optional. Default 1m.
	// Negative: the Store runs none (run one with hsctl, or Store.NewReaper and Reaper.RunOnce from cron).
	Interval time.Duration
	// Batch is how many rows a database transaction claims and a GetMulti asks about. Optional. Default 500.
	Batch int
	// Archive, when set, receives every dead session before its row is deleted; an error keeps the row for
	// the next pass (Stats.ReapErrors). It runs inside the batch's transaction: keep it quick. Optional.
	Archive func(ctx context.Context, s ArchivedSession) error
}

// SealConfig configures sealing: AES-256-GCM of every envelope in both tiers, bound to the storage key and
// the key prefix, so that without a key no one who reaches memcached or the database can read, forge, alter
// or move a session (docs/security.md). The zero value seals nothing, and NewStore warns.
type SealConfig struct {
	// Keys is the key ring, each key 32 random bytes (AES-256; NewSealKey, ParseSealKeys). The first seals,
	// all open. An envelope sealed with a key this server lacks is a miss and is never overwritten, so keys
	// rotate one server at a time (docs/operations.md). Optional.
	Keys [][]byte
	// AcceptUnsealed also reads plain-text envelopes, sealing them on their next write; without it they are
	// left alone, unread. Turn it on while switching a running site to sealing and off after Lifetime: while
	// on, a forged plain-text envelope is accepted. Optional.
	AcceptUnsealed bool
}

// fill sets the defaults of zero fields and validates cfg; NewReaper sets Reaper's.
func (cfg *StoreConfig) fill() error {
	mc := &cfg.Memcached
	mc.KeyPrefix = cmp.Or(mc.KeyPrefix, "hs:")
	mc.Timeout = cmp.Or(mc.Timeout, 100*time.Millisecond)
	mc.MaxItemSize = cmp.Or(mc.MaxItemSize, 1<<20-1<<10)
	mc.BreakerThreshold = cmp.Or(mc.BreakerThreshold, 3)
	mc.BreakerCooldown = cmp.Or(mc.BreakerCooldown, 2*time.Second)
	cfg.SyncInterval = cmp.Or(cfg.SyncInterval, 2*time.Minute)
	cfg.SyncQueueSize = cmp.Or(cfg.SyncQueueSize, 100000)
	cfg.DBTimeout = cmp.Or(cfg.DBTimeout, 3*time.Second)
	cfg.Codec = cmp.Or(cfg.Codec, Msgpack)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	switch {
	case len(mc.Servers) == 0 && cfg.Durable == nil:
		return errors.New("core: no memcached servers and no durable tier configured")
	case len(mc.KeyPrefix) > 200:
		return errors.New("core: MemcachedConfig.KeyPrefix longer than 200 bytes")
	case strings.ContainsFunc(mc.KeyPrefix, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return errors.New("core: MemcachedConfig.KeyPrefix contains a space or control byte")
	case mc.Timeout < 0 || mc.BreakerCooldown < 0 || mc.MaxItemSize < 0 || mc.BreakerThreshold < 0:
		return errors.New("core: MemcachedConfig durations and counts must not be negative")
	case cfg.SyncInterval < 0 || cfg.SyncQueueSize < 0 || cfg.DBTimeout < 0 || cfg.Reaper.Batch < 0:
		return errors.New("core: StoreConfig.SyncInterval, SyncQueueSize, DBTimeout and Reaper.Batch must not be negative")
	}
	return nil
}
