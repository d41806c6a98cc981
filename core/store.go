package core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ReapMode, as StoreConfig.ReapMode, says where the reaper of a Store's
// durable tier runs. Every mode is safe; they differ in database load.
type ReapMode uint8

const (
	// ReapInProcess, the default, starts a reaper in every Store with a
	// durable tier; the reapers of many app servers share the work (each
	// row goes to one of them at a time). Close stops it.
	ReapInProcess ReapMode = iota
	// ReapExternal starts none: a reaper runs elsewhere, at least every
	// StoreConfig.Reaper.Interval — the operations command's reap as a
	// service or a cron job, or Store.NewReaper in another process. If it
	// stops, the rows of sessions that are only read expire under them
	// and a memcached loss then logs those users out: monitor it.
	ReapExternal
	// ReapNone assumes no reaper anywhere: a request that only reads
	// writes its session's row once per SyncInterval (with its throttled
	// touch), and rows of dead sessions stay until deleted by other means.
	ReapNone
)

// EveryWrite, as StoreConfig.SyncInterval, sends every write to the durable
// tier synchronously: write-through, the behaviour of Django's cached_db.
const EveryWrite time.Duration = -1

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

	// Durable is the database tier (see the gormstore module). Optional, but
	// without it a memcached restart or eviction logs users out. The Store
	// never closes it.
	Durable Durable

	// SyncInterval is how long a session may go without being written to
	// the durable tier while it keeps changing: a write reaches the database
	// when the session has not been synced for SyncInterval (and always when
	// it is new, renewed, destroyed or written as durable). The database
	// copy may therefore lag memcached by up to SyncInterval of changes.
	// Optional. Default 2m. EveryWrite (-1) syncs every write, synchronously.
	SyncInterval time.Duration

	// SyncQueueSize bounds the background writer: how many sessions it may
	// hold, waiting for a sync or being written. When it is full, a periodic
	// sync is written on the request path instead (back-pressure) — or,
	// while the database is failing, dropped and counted in
	// Stats.SyncDropped (the session is in memcached and syncs again on its
	// next write). A durable write that failed takes the place of a waiting
	// periodic sync; when only durable writes are held, the request fails
	// with ErrUnavailable rather than drop one.
	// Optional. Default 10000.
	SyncQueueSize int

	// SyncWorkers is the number of background writer goroutines.
	// Optional. Default 2.
	SyncWorkers int

	// DBTimeout bounds every call to the durable tier: each read and write
	// on the request path (within the request's own context), each
	// background write and each reaper batch. A database that hangs — accepts
	// connections and never answers — then costs a request at most
	// DBTimeout before it is treated like one that refuses connections.
	// Optional. Default 3s.
	DBTimeout time.Duration

	// ReapMode says where the reaper runs. The reaper extends the rows of
	// live sessions ahead of their expiry (ReaperConfig.Lookahead), so a
	// request that only reads refreshes memcached alone; without a reaper,
	// such a request writes the session's row once per SyncInterval
	// instead, so that a memcached loss cannot log its user out.
	// Optional. Default ReapInProcess.
	ReapMode ReapMode

	// Reaper configures the in-process reaper (ReapInProcess), and tells
	// the Store the Interval of the reaper that runs elsewhere
	// (ReapExternal). Optional: see ReaperConfig for its defaults.
	Reaper ReaperConfig

	// Logger receives breaker transitions and background failures.
	// Optional. Default slog.Default().
	Logger *slog.Logger

	// Clock returns the current time. Optional. Default time.Now. Set it to
	// drive simulations with a virtual clock; all app servers sharing the
	// tiers must agree on time to within a small fraction of TouchInterval.
	Clock func() time.Time
}

const (
	defaultSyncInterval  = 2 * time.Minute
	defaultSyncQueueSize = 10000
	defaultSyncWorkers   = 2
	defaultDBTimeout     = 3 * time.Second
)

// Store is the tiered byte store: memcached first, the durable tier second,
// with the sync rule, fallbacks, circuit breakers and statistics. It stores
// Entries (an envelope around opaque bytes) under session tokens; it knows
// nothing of cookies or codecs. The Manager builds sessions on it; scsstore
// uses it directly.
//
// Keys: the Store hashes every token with SHA-256 and uses the base64url
// digest as the storage key, so neither memcached nor the database ever
// holds a live token.
//
// A Store is safe for concurrent use. Close it to flush pending syncs.
type Store struct {
	mc      *memcachedTier // nil: no memcached
	durable Durable        // nil: no durable tier
	syncer  *syncer        // nil: no durable tier
	seal    *sealer        // seals and opens envelopes (plain without keys)
	stats   counters
	log     *slog.Logger
	now     func() time.Time

	syncInterval time.Duration // < 0: every write, synchronously
	touchSyncs   bool          // no reaper runs: touches sync when due
	reaper       *Reaper       // the in-process reaper, or nil
	lookahead    time.Duration // the reaper's Lookahead
	maxItem      int
	dbTimeout    time.Duration

	bufs sync.Pool // *[]byte envelope buffers

	maxIdle atomic.Int64 // longest IdleTimeout written, for tombstoneLife

	closeOnce sync.Once
	closeErr  error
}

// NewStore validates cfg, fills its defaults and returns a Store. It does not
// contact the servers: a memcached or database that is down at start-up is
// handled like one that goes down later. It returns ErrNoStore when neither
// tier is configured.
func NewStore(cfg StoreConfig) (*Store, error) {
	if len(cfg.Memcached.Servers) == 0 && cfg.Durable == nil {
		return nil, ErrNoStore
	}
	if err := cfg.Memcached.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = defaultSyncInterval
	}
	if cfg.SyncInterval < 0 && cfg.SyncInterval != EveryWrite {
		return nil, errors.New("core: StoreConfig.SyncInterval must be positive, zero (default) or EveryWrite")
	}
	if cfg.SyncQueueSize == 0 {
		cfg.SyncQueueSize = defaultSyncQueueSize
	}
	if cfg.SyncWorkers == 0 {
		cfg.SyncWorkers = defaultSyncWorkers
	}
	if cfg.DBTimeout == 0 {
		cfg.DBTimeout = defaultDBTimeout
	}
	if cfg.SyncQueueSize < 0 || cfg.SyncWorkers < 0 || cfg.DBTimeout < 0 {
		return nil, errors.New("core: StoreConfig.SyncQueueSize, SyncWorkers and DBTimeout must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	s := &Store{
		durable:      cfg.Durable,
		log:          cfg.Logger,
		now:          cfg.Clock,
		syncInterval: cfg.SyncInterval,
		maxItem:      cfg.Memcached.MaxItemSize,
		dbTimeout:    cfg.DBTimeout,
	}
	seal, err := newSealer(cfg.Seal, cfg.Logger, &s.stats)
	if err != nil {
		return nil, err
	}
	s.seal = seal
	if !seal.sealed() {
		s.log.Warn(warnUnsealed)
	}
	if len(cfg.Memcached.Servers) > 0 {
		mc, err := newMemcachedTier(cfg.Memcached, cfg.Logger, &s.stats)
		if err != nil {
			return nil, err
		}
		s.mc = mc
		mc.stale = s.staleCopy
	}
	if cfg.ReapMode > ReapNone {
		return nil, errors.New("core: StoreConfig.ReapMode is not a ReapMode")
	}
	s.touchSyncs = cfg.ReapMode == ReapNone
	if s.durable != nil {
		r, err := s.NewReaper(cfg.Reaper)
		if err != nil {
			return nil, err
		}
		if cfg.ReapMode == ReapInProcess {
			s.reaper = r
		}
		s.lookahead = r.cfg.Lookahead
	}
	if s.durable != nil {
		maxAge := max(cfg.SyncInterval, time.Minute)
		s.syncer = newSyncer(s.durable, s.now, cfg.SyncWorkers, cfg.SyncQueueSize, maxAge, cfg.DBTimeout, &s.stats, s.log)
		s.syncer.refused, s.syncer.synced = s.refused, s.promote
	}
	if s.reaper != nil {
		s.reaper.Start()
	}
	return s, nil
}

// Close writes the pending background syncs (one attempt each, waiting at
// most until ctx ends), stops the breaker probes and closes memcached
// connections. It does not close the durable tier. It returns an error
// wrapping ErrNotSaved, with their count, when durable writes were left
// unsaved (the database failed or ctx ended; each is counted in
// Stats.DurableLost and logged), and ctx's error when ctx ended first.
// Calls after the first return the first result.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.reaper != nil {
			s.reaper.Stop()
		}
		if s.syncer != nil {
			s.closeErr = s.syncer.close(ctx)
		}
		if s.mc != nil {
			s.mc.close()
		}
	})
	return s.closeErr
}

// Flush waits until every background sync pending or being written when it
// is called has been written, or attempted once more after the call (those
// waiting to retry are tried at once: call Flush when the database is back
// to write what an outage held), or ctx ends, and then returns ctx's error.
// A sync that fails again is retried in the background as before. Use it
// before a planned database maintenance or in tests; Close flushes too.
func (s *Store) Flush(ctx context.Context) error {
	if s.syncer == nil {
		return nil
	}
	return s.syncer.flush(ctx)
}

// SyncInterval returns the configured SyncInterval after defaults: how far
// the database copy of a session may lag memcached. EveryWrite (-1) means
// every write is synced.
func (s *Store) SyncInterval() time.Duration { return s.syncInterval }

// Now returns the Store's clock reading (StoreConfig.Clock).
func (s *Store) Now() time.Time { return s.now() }

// Stats returns a snapshot of the Store's counters.
func (s *Store) Stats() Stats {
	st := s.stats.snapshot()
	if s.syncer != nil {
		st.SyncPending = s.syncer.pendingCount()
	}
	if s.mc != nil {
		st.Nodes = s.mc.nodeStats()
		sortNodes(st.Nodes)
	}
	return st
}

// AddServer adds a memcached node at run time, with weight (0 means 1).
// With consistent hashing about 1/N of sessions move to it; their next read
// is served from the database and refills the new node.
func (s *Store) AddServer(addr string, weight int) error {
	if s.mc == nil {
		return errors.New("core: AddServer: the Store has no memcached tier")
	}
	return s.mc.addServer(addr, weight)
}

// RemoveServer removes a memcached node at run time. Its sessions are read
// from the database on their next request.
func (s *Store) RemoveServer(addr string) error {
	if s.mc == nil {
		return errors.New("core: RemoveServer: the Store has no memcached tier")
	}
	return s.mc.removeServer(addr)
}

// StorageKey returns the key under which token is stored: the unpadded
// base64url SHA-256 digest of the token, 43 bytes.
func StorageKey(token string) string {
	var buf [storageKeyLen]byte
	return string(appendStorageKey(buf[:0], token))
}

// storageKeyLen is the length of a storage key: base64 of 32 bytes, unpadded.
const storageKeyLen = 43

func appendStorageKey(dst []byte, token string) []byte {
	var sum [sha256.Size]byte
	if len(token) <= 64 {
		// Hash a copy on the stack: []byte(token) allocates for strings
		// longer than 32 bytes, and tokens are 43.
		var b [64]byte
		sum = sha256.Sum256(b[:copy(b[:], token)])
	} else {
		sum = sha256.Sum256([]byte(token))
	}
	return base64.RawURLEncoding.AppendEncode(dst, sum[:])
}

// entryKeys returns token's keys: e's when e was read under token, so that
// Update does not hash the token a second time.
func (s *Store) entryKeys(token string, e *Entry) (key, mkey string) {
	if e.key != "" && e.token == token {
		return e.key, e.mkey
	}
	return s.keys(token)
}

// keys returns token's storage key and memcached key, in one allocation
// (the storage key is a suffix of the memcached key).
func (s *Store) keys(token string) (key, mkey string) {
	if s.mc == nil {
		return StorageKey(token), ""
	}
	mkey = s.mc.tokenKey(token)
	return mkey[len(s.mc.prefix):], mkey
}
