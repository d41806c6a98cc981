package core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/bradfitz/gomemcache/memcache"
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

	// SyncQueueSize bounds the background writer: how many sessions may wait
	// for a sync. When it is full, a periodic sync is written on the request
	// path instead (back-pressure) — or, while the database is failing,
	// dropped and counted in Stats.SyncDropped (the session is in memcached
	// and syncs again on its next write). A durable write that failed takes
	// the place of a waiting periodic sync; when only durable writes wait,
	// the request fails with ErrUnavailable rather than drop one.
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

// Flush waits until every pending background sync has been written (one
// attempt each for those waiting to retry), or ctx ends. Use it before a
// planned database maintenance or in tests; Close flushes too.
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

// ListedEntry is one session returned by Store.List.
type ListedEntry struct {
	// Key is the session's storage key (a hash of its token).
	Key string
	// Entry is the freshest live copy: memcached's when it holds a newer
	// one, the database row's otherwise.
	Entry *Entry
}

// List returns up to limit live sessions whose storage key is greater than
// after, in key order, for iteration and administration (scs's All) — not
// for the request path. memcached cannot list its keys, so List pages
// through the durable tier's live rows and overlays memcached's newer
// copies (one GetMulti per page), without refilling memcached. Sessions
// that never reached the database are not listed; every session does when
// it is created. An empty result means the end. It returns an error when
// the Store has no durable tier, and one wrapping ErrUnavailable when the
// database could not answer.
func (s *Store) List(ctx context.Context, after string, limit int) ([]ListedEntry, error) {
	if s.durable == nil {
		return nil, errors.New("core: List: the Store has no durable tier")
	}
	now := s.now()
	dctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	recs, err := s.durable.List(dctx, now, after, limit)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	return s.overlay(recs, now), nil
}

// overlay returns the live sessions among rows read from the durable tier,
// each as its freshest copy: memcached's when it holds one at least as new
// (read in one GetMulti, without refilling memcached), the row's otherwise.
// memcached's copy carries the exact idle expiry and is final when dead;
// the rows are live by their ExpiresAt, which the durable tier checked.
// Rows and copies that do not open are left out.
func (s *Store) overlay(recs []Record, now time.Time) []ListedEntry {
	var cached map[string][]byte
	if s.mc != nil && len(recs) > 0 {
		mkeys := make([]string, len(recs))
		for i := range recs {
			mkeys[i] = s.mc.key(recs[i].Key)
		}
		items, _ := s.mc.getMulti(mkeys) // unreachable nodes: the rows stand
		cached = make(map[string][]byte, len(items))
		for k, it := range items {
			cached[k[len(s.mc.prefix):]] = it.Value
		}
	}
	out := make([]ListedEntry, 0, len(recs))
	for _, rec := range recs {
		e := new(Entry)
		if s.openEnvelope(rec.Key, rec.Payload, e) != nil {
			continue
		}
		fromCache := false
		if b, ok := cached[rec.Key]; ok {
			var c Entry
			if s.openEnvelope(rec.Key, b, &c) == nil && c.Version >= e.Version {
				*e, fromCache = c, true
			}
		}
		if isTombstone(e) || !now.Before(e.Deadline) || (fromCache && !e.Alive(now)) {
			continue
		}
		out = append(out, ListedEntry{Key: rec.Key, Entry: e})
	}
	return out
}

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

// Get returns the live entry for token, or nil with a nil error when there
// is none (never stored, expired, destroyed, or corrupt in every tier).
//
// It reads memcached first. On a miss, or when memcached is unavailable, it
// reads the durable tier; a row found there is treated as active now and
// refills memcached (with add, so a newer copy written meanwhile is never
// clobbered). The error wraps ErrUnavailable when the tiers that had to be
// asked could not answer.
func (s *Store) Get(ctx context.Context, token string) (*Entry, error) {
	key, mkey := s.keys(token)
	e, err := s.get(ctx, key, mkey)
	if e != nil {
		e.token, e.key, e.mkey = token, key, mkey
	}
	return e, err
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

func (s *Store) get(ctx context.Context, key, mkey string) (*Entry, error) {
	now := s.now()
	var cacheErr error
	corrupt := false
	if s.mc != nil {
		it, n, err := s.mc.getFrom(mkey)
		switch {
		case err != nil:
			cacheErr = err
			s.stats.fallbacks.Add(1)
		case it == nil:
			if e := s.moveFromPriorOwner(mkey, now); e != nil {
				s.stats.cacheHits.Add(1)
				return e, nil
			}
			s.stats.cacheMisses.Add(1)
		default:
			e := new(Entry)
			if err := s.openEnvelopeInPlace(key, it.Value, e); err != nil {
				s.stats.cacheMisses.Add(1)
				s.stats.cacheCorrupt.Add(1)
				corrupt = true
				break
			}
			if isTombstone(e) || !e.Alive(now) {
				// memcached is never older than the database: the session is over.
				s.stats.cacheMisses.Add(1)
				return nil, nil
			}
			if s.durable != nil && (n.suspect() || s.mc.movedRecently(mkey, n)) {
				if fresh, replaced := s.checkDurable(ctx, key, mkey, e, it.CasID, now); replaced {
					return fresh, nil
				}
			}
			s.stats.cacheHits.Add(1)
			e.casID, e.cached = it.CasID, true
			return e, nil
		}
	}
	if s.durable == nil {
		if cacheErr != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, cacheErr)
		}
		return nil, nil
	}
	s.stats.dbReads.Add(1)
	rec, found, err := s.load(ctx, key, now)
	if err != nil {
		s.stats.dbReadErrors.Add(1)
		if cacheErr != nil {
			return nil, fmt.Errorf("%w: %w; database: %w", ErrUnavailable, cacheErr, err)
		}
		return nil, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	if !found {
		return nil, nil
	}
	e := new(Entry)
	if err := s.openEnvelope(key, rec.Payload, e); err != nil {
		s.stats.dbCorrupt.Add(1)
		return nil, nil
	}
	if isTombstone(e) || !now.Before(e.Deadline) {
		return nil, nil
	}
	// The row is live (its ExpiresAt covers any activity that memcached may
	// have seen since the last sync), and this request is activity. The row
	// may lag what memcached held by up to SyncInterval of changes — unless
	// there is no memcached, when every write goes through to the row.
	e.Restored = s.mc != nil
	if s.mc != nil && cacheErr == nil {
		// memcached keeps this read as activity. Without it (no memcached,
		// or memcached unavailable) the row's ActiveAt stays, so that the
		// Manager's touch comes due and writes the row: otherwise a
		// read-only user would expire at the row's expires_at.
		e.ActiveAt = now
		buf := s.sealEnvelope(key, nil, e)
		exp := s.cacheExpiration(now, e)
		var err error
		if corrupt {
			err = s.mc.set(mkey, buf, exp)
		} else {
			err = s.mc.add(mkey, buf, exp)
		}
		if err == nil && s.syncer != nil && rec.ExpiresAt.Before(now.Add(s.lookahead)) {
			// The row expires soon and its session is active again: move
			// the row ahead now rather than at the reaper's next pass, so
			// that a second cache loss before that pass logs nobody out
			// (docs/consistency.md, I1).
			s.syncLater(key, e, buf, now)
		}
	}
	return e, nil
}

// checkDurable compares a copy read from a suspect node (its breaker closed
// moments ago) with the database row. When the row is newer — another app
// server wrote the session through while the node was unreachable to it —
// it repairs memcached with the row and returns it; a destroyed row removes
// the copy. Database errors keep the cached copy.
func (s *Store) checkDurable(ctx context.Context, key, mkey string, cached *Entry, casID uint64, now time.Time) (*Entry, bool) {
	s.stats.dbReads.Add(1)
	rec, found, err := s.load(ctx, key, now)
	if err != nil {
		s.stats.dbReadErrors.Add(1)
		return nil, false
	}
	if !found || rec.Version <= cached.Version {
		return nil, false
	}
	e := new(Entry)
	if err := s.openEnvelope(key, rec.Payload, e); err != nil {
		return nil, false
	}
	if isTombstone(e) || !now.Before(e.Deadline) {
		_ = s.mc.delete(mkey)
		return nil, true
	}
	e.ActiveAt = now
	_ = s.mc.cas(mkey, s.sealEnvelope(key, nil, e), s.cacheExpiration(now, e), casID)
	return e, true
}

// moveFromPriorOwner moves mkey's copy from the node that held it before
// the last AddServer to its current node and returns it; nil when there is
// no live copy to move. The old copy is deleted in any case, so that it can
// never come back stale.
func (s *Store) moveFromPriorOwner(mkey string, now time.Time) *Entry {
	it := s.mc.priorGet(mkey)
	if it == nil {
		return nil
	}
	defer s.mc.priorDelete(mkey)
	e := new(Entry)
	if s.openEnvelope(mkey[len(s.mc.prefix):], it.Value, e) != nil || isTombstone(e) || !e.Alive(now) {
		return nil
	}
	if s.mc.add(mkey, it.Value, s.cacheExpiration(now, e)) != nil {
		return nil // refilled meanwhile (or unavailable): a miss
	}
	return e // not cached: Update compares it with the current copy
}

// WriteFlags modify Store.Update.
type WriteFlags uint8

const (
	// WriteChanged marks a write that changed Payload or Subject: the
	// version is bumped. Without it the write only refreshes activity
	// (a touch).
	WriteChanged WriteFlags = 1 << iota
	// WriteDurable sends the write to the durable tier now, on the request
	// path, whatever SyncInterval says.
	WriteDurable
	// WriteReuseKey lets Insert replace the tombstone of a destroyed
	// session: for callers that reuse keys on purpose (fiber.Storage's
	// Set after Delete), never for session tokens, where it would let a
	// request that raced a logout bring the session back.
	WriteReuseKey

	writeInsert // internal: syncNow for Insert
)

// Insert stores a new session under token, in memcached (with add) and
// synchronously in the durable tier. It sets e's Version, ActiveAt and
// SyncedAt; the caller sets Payload, Codec, Subject, Created, Deadline and
// IdleTimeout. Of flags only WriteReuseKey counts; the write is always
// durable.
//
// It returns ErrExists when a live session holds token, ErrDestroyed when a
// destroyed one does (its tombstone stands until every copy of it has
// expired) unless flags has WriteReuseKey, ErrTooLarge when the envelope
// exceeds MaxItemSize, ErrInvalidSubject for a bad Subject, and an error
// wrapping ErrUnavailable when no tier stored it. When memcached stored it
// but the database did not, the background writer keeps the write until the
// database takes it, and Insert succeeds.
func (s *Store) Insert(ctx context.Context, token string, e *Entry, flags WriteFlags) error {
	if err := s.checkSize(e); err != nil {
		return err
	}
	now := s.now()
	next := *e
	next.Version = nextVersion(0, now)
	next.ActiveAt = now
	next.Restored = false
	next.SyncedAt, next.SyncedVersion = now, next.Version
	s.noteIdle(next.IdleTimeout)
	key, mkey := s.keys(token)
	buf := s.encode(key, &next)
	defer s.putBuf(buf)

	var cacheErr error
	if s.mc != nil {
		err := s.mc.add(mkey, *buf, s.cacheExpiration(now, &next))
		switch {
		case errors.Is(err, memcache.ErrNotStored):
			// Taken — unless by a tombstone or a dead entry of a reused key.
			if err := s.replaceDead(mkey, *buf, s.cacheExpiration(now, &next), now, flags&WriteReuseKey != 0); err != nil {
				if !errors.Is(err, ErrCacheUnavailable) {
					return err
				}
				cacheErr = err
				s.stats.fallbacks.Add(1)
			}
		case err != nil:
			cacheErr = err
			s.stats.fallbacks.Add(1)
		}
	}
	if err := s.syncNow(ctx, key, &next, *buf, now, cacheErr != nil || s.mc == nil, flags|writeInsert); err != nil {
		if errors.Is(err, ErrDestroyed) && cacheErr == nil && s.mc != nil {
			_ = s.mc.delete(mkey) // the database keeps the tombstone
		}
		return err
	}
	if cacheErr != nil {
		s.mc.markDirty(mkey)
	}
	next.casID, next.cached = 0, false
	*e = next
	return nil
}

// Update writes e, read from Get under token, back. With WriteChanged the
// version is bumped; without it the write is a touch that only refreshes
// ActiveAt. The write always goes to memcached, with compare-and-swap
// against the copy Get read, and to the durable tier when the sync rule
// says so: WriteDurable, SyncInterval is EveryWrite, the entry was never
// synced, or it was last synced SyncInterval ago or more. Periodic syncs are
// handed to the background writer; the others are written before Update
// returns. While memcached is unavailable for the key every write goes to
// the durable tier synchronously.
//
// On success e holds what was written. It returns ErrConflict when the
// session changed since Get (re-read it and re-apply your change),
// ErrTooLarge when the envelope exceeds MaxItemSize (nothing is written), and
// an error wrapping ErrUnavailable when no tier accepted the write.
func (s *Store) Update(ctx context.Context, token string, e *Entry, flags WriteFlags) error {
	if err := s.checkSize(e); err != nil {
		return err
	}
	now := s.now()
	next := *e
	if flags&WriteChanged != 0 {
		next.Version = nextVersion(next.Version, now)
	}
	s.noteIdle(next.IdleTimeout)
	next.ActiveAt = now
	next.Restored = false
	// A change is due when SyncInterval has passed since the last sync. A
	// touch only when no reaper runs: otherwise the reaper keeps the row
	// ahead of the session's expiry (ReaperConfig.Lookahead).
	due := flags&WriteDurable != 0 || s.syncInterval < 0 || next.SyncedAt.IsZero() ||
		(now.Sub(next.SyncedAt) >= s.syncInterval && (flags&WriteChanged != 0 || s.touchSyncs))
	if due && s.durable != nil {
		next.SyncedAt, next.SyncedVersion = now, next.Version
	}
	key, mkey := s.entryKeys(token, e)
	buf := s.encode(key, &next)
	defer s.putBuf(buf)

	var cacheErr error
	if s.mc != nil {
		cacheErr = s.casWrite(mkey, e, *buf, s.cacheExpiration(now, &next))
		if errors.Is(cacheErr, ErrConflict) {
			s.stats.casConflicts.Add(1)
			return cacheErr
		}
		if cacheErr != nil {
			s.stats.fallbacks.Add(1)
		}
	}
	switch {
	case s.durable == nil:
		if cacheErr != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, cacheErr)
		}
	case cacheErr != nil || s.mc == nil:
		// Write-through while memcached cannot take the write.
		if err := s.saveConditional(ctx, key, &next, *buf, cacheErr); err != nil {
			return err // no tier took the change: memcached's copy is still the latest
		}
		if cacheErr != nil {
			s.mc.markDirty(mkey) // the database now holds a newer copy than the node may
		}
	case !due:
		s.stats.dbWritesSkipped.Add(1)
	case flags&WriteDurable != 0 || s.syncInterval < 0:
		if err := s.syncNow(ctx, key, &next, *buf, now, false, flags); err != nil {
			return err
		}
	default:
		s.syncLater(key, &next, *buf, now)
	}
	if flags&WriteChanged == 0 {
		s.stats.touches.Add(1)
	}
	next.casID, next.cached = 0, false
	*e = next
	return nil
}

// casWrite writes buf over the memcached copy that base was read from. It
// returns ErrConflict when that copy changed or vanished meanwhile, and an
// ErrCacheUnavailable error when memcached could not be asked.
func (s *Store) casWrite(mkey string, base *Entry, buf []byte, exp int32) error {
	if base.cached {
		err := s.mc.cas(mkey, buf, exp, base.casID)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, memcache.ErrCASConflict):
			return ErrConflict
		case errors.Is(err, memcache.ErrCacheMiss):
			// Gone since the read: evicted, expired — or destroyed and its
			// tombstone expired. Adding our copy back could revive a
			// destroyed session: let the caller re-read instead.
			return ErrConflict
		default:
			return err
		}
	}
	// base came from the durable tier (memcached missed or was down). Find
	// out what memcached holds now, and write only over the same version.
	it, err := s.mc.get(mkey)
	if err != nil {
		return err
	}
	if it == nil {
		return s.addOrConflict(mkey, buf, exp)
	}
	var cur Entry
	if err := s.openEnvelope(mkey[len(s.mc.prefix):], it.Value, &cur); err != nil {
		return s.mc.set(mkey, buf, exp) // corrupt: ours is the only good copy
	}
	if cur.Version != base.Version || isTombstone(&cur) {
		return ErrConflict
	}
	err = s.mc.cas(mkey, buf, exp, it.CasID)
	if errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrCacheMiss) {
		return ErrConflict
	}
	return err
}

// replaceDead writes buf over the entry at mkey if that entry is dead or
// corrupt, or a tombstone and reuse is set. It returns ErrExists when a live
// session holds the key and ErrDestroyed when a tombstone does (without
// reuse).
func (s *Store) replaceDead(mkey string, buf []byte, exp int32, now time.Time, reuse bool) error {
	it, err := s.mc.get(mkey)
	if err != nil {
		return err
	}
	if it == nil {
		return s.addOrExists(mkey, buf, exp)
	}
	var cur Entry
	if s.openEnvelope(mkey[len(s.mc.prefix):], it.Value, &cur) == nil {
		switch {
		case isTombstone(&cur) && !reuse:
			return ErrDestroyed
		case !isTombstone(&cur) && cur.Alive(now):
			return ErrExists
		}
	}
	err = s.mc.cas(mkey, buf, exp, it.CasID)
	if isProtocolAnswer(err) {
		return ErrExists // someone else wrote it first
	}
	return err
}

func (s *Store) addOrExists(mkey string, buf []byte, exp int32) error {
	err := s.mc.add(mkey, buf, exp)
	if errors.Is(err, memcache.ErrNotStored) {
		return ErrExists
	}
	return err
}

func (s *Store) addOrConflict(mkey string, buf []byte, exp int32) error {
	err := s.mc.add(mkey, buf, exp)
	if errors.Is(err, memcache.ErrNotStored) {
		return ErrConflict
	}
	return err
}

// record builds the durable row for e. ExpiresAt is chosen so that losing
// memcached can never log out a user who was active within the idle
// timeout: after a sync through memcached, activity is recorded only in
// memcached for less than SyncInterval (the next change after that syncs
// again; the reaper extends the rows of sessions that only read), so
// ActiveAt + IdleTimeout + SyncInterval bounds the session's true expiry.
// The overshoot — a session read back from the database after a real
// memcached loss may outlive its idle timeout by up to SyncInterval — is
// the documented price (docs/consistency.md, I3). A write that does not go
// through memcached (write-through while it is unavailable, or a Store
// without it) leaves nothing newer behind: its row expires exactly.
func (s *Store) record(key string, e *Entry, payload []byte, throughCache bool) Record {
	exp := e.ActiveAt.Add(e.IdleTimeout)
	if throughCache && s.mc != nil {
		exp = exp.Add(s.rowSlack())
	}
	if exp.After(e.Deadline) {
		exp = e.Deadline
	}
	return Record{
		Key:       key,
		Payload:   payload,
		Version:   e.Version,
		ExpiresAt: exp.Truncate(time.Millisecond),
		Deadline:  e.Deadline.Truncate(time.Millisecond),
		Subject:   e.Subject,
	}
}

// rowSlack is how far a row's ExpiresAt may run past the session's idle
// expiry: SyncInterval, or nothing when every write is synced.
func (s *Store) rowSlack() time.Duration { return max(s.syncInterval, 0) }

// cacheExpiration is memcached's TTL for e written at now. The entry
// outlives the session's idle expiry by rowSlack, capped at the deadline:
// as long as the database row may still look alive, memcached keeps the
// dead envelope, so a read finds it dead there instead of reading the row
// back as a live session. Only a real cache loss (restart, eviction) falls
// through to the row (docs/consistency.md, I3).
//
// One second more covers memcached's clock, which ticks once a second and
// may expire an item up to a second before its TTL has passed in real time.
func (s *Store) cacheExpiration(now time.Time, e *Entry) int32 {
	until := e.ExpiresAt().Add(s.rowSlack())
	if until.After(e.Deadline) {
		until = e.Deadline
	}
	return expiration(now, until.Add(time.Second))
}

// syncNow writes e, a durable write, to the durable tier on the request
// path. When memcached holds the write (cacheDown false) a database failure
// hands it to the background writer, which keeps it until the database
// takes it (retryLater); the request fails only when it cannot be held.
//
// For Insert (writeInsert in flags) a refused save means the key has a
// row with a higher version: a tombstone, or the row of a dead session not
// reaped yet (its clock ran ahead). A tombstone stands — ErrDestroyed —
// unless WriteReuseKey says the caller reuses keys on purpose; anything
// else is replaced, as Insert found no live session under the key.
func (s *Store) syncNow(ctx context.Context, key string, e *Entry, buf []byte, now time.Time, cacheDown bool, flags WriteFlags) error {
	if s.durable == nil {
		if cacheDown {
			return fmt.Errorf("%w: memcached unavailable and no durable tier", ErrUnavailable)
		}
		return nil
	}
	rec := s.record(key, e, bytesClone(buf), !cacheDown)
	applied, err := s.save(ctx, rec)
	if err == nil && !applied && flags&writeInsert != 0 {
		var old Record
		var found bool
		if old, found, err = s.load(ctx, key, now); err == nil && found &&
			old.Version >= tombstoneVersion && flags&WriteReuseKey == 0 {
			return ErrDestroyed
		}
		if err == nil {
			s.syncer.forget(key)
			err = s.deleteRows(ctx, key)
		}
		if err == nil {
			applied, err = s.save(ctx, rec)
		}
		if err == nil && !applied {
			err = errors.New("a concurrent writer took the key")
		}
	}
	if err != nil {
		s.stats.dbWriteErrors.Add(1)
		switch {
		case s.mc == nil:
			return fmt.Errorf("%w: database: %w", ErrUnavailable, err)
		case cacheDown:
			return fmt.Errorf("%w: memcached unavailable; database: %w", ErrUnavailable, err)
		}
		return s.retryLater(rec, err)
	}
	s.stats.dbWrites.Add(1)
	return nil
}

// saveConditional is the write-through path while memcached is unavailable:
// the durable tier's version check stands in for CAS.
func (s *Store) saveConditional(ctx context.Context, key string, e *Entry, buf []byte, cacheErr error) error {
	s.syncer.forget(key) // an older pending sync must not follow this write
	applied, err := s.save(ctx, s.record(key, e, bytesClone(buf), false))
	if err != nil {
		s.stats.dbWriteErrors.Add(1)
		if cacheErr != nil {
			return fmt.Errorf("%w: %w; database: %w", ErrUnavailable, cacheErr, err)
		}
		return fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	s.stats.dbWrites.Add(1)
	if !applied {
		s.stats.casConflicts.Add(1)
		return ErrConflict
	}
	return nil
}

// retryLater hands a durable write that failed on the request path to the
// background writer, which retries it until the database takes it. When
// the writer cannot hold it (its queue is full of durable writes, or the
// Store is closing) the request fails with an error wrapping
// ErrUnavailable: acknowledging the write would promise what a memcached
// loss could undo.
func (s *Store) retryLater(rec Record, err error) error {
	if s.syncer.enqueue(rec, true) {
		s.log.Warn("hybridsession: database write failed; memcached holds the session, retrying in the background", "error", err)
		return nil
	}
	return fmt.Errorf("%w: database: %w; the background writer is full", ErrUnavailable, err)
}

// syncLater hands a due periodic sync to the background writer. When the
// writer's queue is full it writes the sync now (back-pressure) — unless the
// database is failing, where that would make every request wait for
// DBTimeout: then the sync is dropped and counted, as in retryLater.
func (s *Store) syncLater(key string, e *Entry, buf []byte, now time.Time) {
	rec := s.record(key, e, bytesClone(buf), true)
	if s.syncer.enqueue(rec, false) {
		return
	}
	if s.syncer.isFailing() {
		s.stats.syncDropped.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.dbTimeout)
	defer cancel()
	if _, err := s.durable.Save(ctx, rec); err != nil {
		s.stats.dbWriteErrors.Add(1)
		s.log.Warn("hybridsession: database sync failed with the background queue full", "error", err)
		return
	}
	s.stats.dbWrites.Add(1)
}

// Delete removes the session stored under token from both tiers. A missing
// session is not an error. In the database the row is replaced by a
// tombstone that no delayed sync from another app server can overwrite; the
// reaper removes tombstones once they expire.
//
// It returns an error wrapping ErrUnavailable when a tier that holds the
// session could not be reached: the caller must not assume the session is
// gone (a row left in the database would revive it after a memcached loss).
func (s *Store) Delete(ctx context.Context, token string) error {
	return s.deleteKey(ctx, StorageKey(token))
}

// tombstoneVersion outranks every real version, so the durable tier's
// conditional save refuses any later sync of a destroyed session.
const tombstoneVersion = 1 << 62

// versionShift splits a version into a time (the high bits: Unix
// milliseconds) and a count of changes within that millisecond (the low 20
// bits). See nextVersion.
const versionShift = 20

// nextVersion returns the version of a change made at now to a session at
// version v: above v, and at least now's millisecond shifted left by
// versionShift. Versions are thus hybrid logical clocks: they grow with
// every change, and a change made later (on any app server, in any branch
// of the session) outranks one made earlier. So a delayed or retried sync
// of a copy that memcached lost can never overwrite what was written after
// it, and a read never bumps a version: only changes do. App servers whose
// clocks differ by d may order two changes made within d of each other
// either way. Versions stay below tombstoneVersion until the year 2109.
func nextVersion(v uint64, now time.Time) uint64 {
	return max(v+1, uint64(max(now.UnixMilli(), 0))<<versionShift)
}

func isTombstone(e *Entry) bool { return e.Version >= tombstoneVersion }

func (s *Store) deleteKey(ctx context.Context, key string) error {
	var errs []error
	var cacheErr error
	now := s.now()
	tomb := Entry{Version: tombstoneVersion, Created: now, ActiveAt: now, Deadline: now.Add(s.tombstoneLife())}
	if s.mc != nil {
		// A tombstone, not a delete: a request that read the session before
		// it was destroyed must find its compare-and-swap refused, not an
		// empty slot to add its copy back into.
		mkey := s.mc.key(key)
		cacheErr = s.mc.set(mkey, s.sealEnvelope(key, nil, &tomb), expiration(now, tomb.Deadline))
		// After an AddServer the key's previous owner may still hold a
		// copy that a later miss would move back (moveFromPriorOwner):
		// it goes too, whether or not this request read the session.
		s.mc.priorDelete(mkey)
	}
	if s.durable != nil {
		s.syncer.forget(key)
		rec := Record{
			Key:       key,
			Payload:   s.sealEnvelope(key, nil, &tomb),
			Version:   tombstoneVersion,
			ExpiresAt: tomb.Deadline.Truncate(time.Millisecond),
			Deadline:  tomb.Deadline.Truncate(time.Millisecond),
		}
		if _, err := s.save(ctx, rec); err != nil {
			s.stats.dbWriteErrors.Add(1)
			errs = append(errs, fmt.Errorf("database: %w", err))
		} else {
			s.stats.dbWrites.Add(1)
			if cacheErr != nil {
				// The tombstone holds; the node's copy is deleted before
				// the node serves again.
				s.mc.markDirty(s.mc.key(key))
				cacheErr = nil
			}
		}
	}
	if cacheErr != nil {
		errs = append(errs, cacheErr)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: delete: %w", ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

// tombstoneLife is how long a tombstone stands in both tiers: as long as
// any copy of the session it replaces could still be served or synced — a
// copy written just before the Delete lives IdleTimeout in memcached plus
// rowSlack, and a sync of it still waiting in some app server's background
// writer carries a row that expires no later — plus a minute for clock
// skew and scheduling. Until the Store has seen a session it uses the
// default idle timeout.
func (s *Store) tombstoneLife() time.Duration {
	idle := time.Duration(s.maxIdle.Load())
	if idle <= 0 {
		idle = defaultIdleTimeout
	}
	return idle + s.rowSlack() + time.Minute
}

// noteIdle records the longest idle timeout of the sessions this Store
// writes, for tombstoneLife.
func (s *Store) noteIdle(d time.Duration) {
	for {
		cur := s.maxIdle.Load()
		if int64(d) <= cur || s.maxIdle.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// DeleteSubject removes every session of subject from both tiers ("log out
// everywhere") and returns how many it removed. Only sessions whose subject
// reached the database are found: the Manager writes subject changes as
// durable. An empty subject removes nothing.
func (s *Store) DeleteSubject(ctx context.Context, subject string) (int, error) {
	if subject == "" || s.durable == nil {
		return 0, nil
	}
	dctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	keys, err := s.durable.DeleteSubject(dctx, subject)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	var errs []error
	for _, k := range keys {
		if err := s.deleteKey(ctx, k); err != nil {
			errs = append(errs, err)
		}
	}
	return len(keys), errors.Join(errs...)
}

func (s *Store) checkSize(e *Entry) error {
	if len(e.Subject) > maxSubjectLen || !utf8.ValidString(e.Subject) {
		return fmt.Errorf("%w: %d bytes (at most %d of UTF-8)", ErrInvalidSubject, len(e.Subject), maxSubjectLen)
	}
	if n := EnvelopeSize(e) + 12 + s.envelopeOverhead(); n > s.maxItem { // +12: version and sync-time varints may grow
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, s.maxItem)
	}
	return nil
}

func (s *Store) encode(key string, e *Entry) *[]byte {
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = s.sealEnvelope(key, (*bp)[:0], e)
	return bp
}

func (s *Store) putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 { // do not pin huge buffers
		s.bufs.Put(bp)
	}
}

// load, save and deleteRows are the request path's calls to the durable
// tier, each bounded by DBTimeout within the request's own context: a
// database that accepts connections and never answers costs a request at
// most DBTimeout, then counts as unavailable (docs/consistency.md, I7).
func (s *Store) load(ctx context.Context, key string, now time.Time) (Record, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.durable.Load(ctx, key, now)
}

func (s *Store) save(ctx context.Context, rec Record) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.durable.Save(ctx, rec)
}

func (s *Store) deleteRows(ctx context.Context, keys ...string) error {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.durable.Delete(ctx, keys...)
}

func bytesClone(b []byte) []byte { return append([]byte(nil), b...) }
