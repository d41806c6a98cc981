package core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
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
	// for their periodic sync. When it is full, syncs are written on the
	// request path instead (back-pressure, nothing is dropped).
	// Optional. Default 10000.
	SyncQueueSize int

	// SyncWorkers is the number of background writer goroutines.
	// Optional. Default 2.
	SyncWorkers int

	// DBTimeout bounds each background write and each reaper batch.
	// Request-path database calls use the request's context instead.
	// Optional. Default 5s.
	DBTimeout time.Duration

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
	defaultDBTimeout     = 5 * time.Second
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
	maxItem      int
	dbTimeout    time.Duration

	bufs sync.Pool // *[]byte envelope buffers

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
	if s.durable != nil {
		maxAge := max(cfg.SyncInterval, time.Minute)
		s.syncer = newSyncer(s.durable, cfg.SyncWorkers, cfg.SyncQueueSize, maxAge, cfg.DBTimeout, &s.stats, s.log)
	}
	return s, nil
}

// Close writes the pending background syncs (waiting at most until ctx
// ends), stops the breaker probes and closes memcached connections. It does
// not close the durable tier. Calls after the first return the first result.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
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
	recs, err := s.durable.List(ctx, now, after, limit)
	if err != nil {
		return nil, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
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
		// memcached's copy carries the exact idle expiry; the row is live
		// by its ExpiresAt, which the durable tier checked.
		if isTombstone(e) || !now.Before(e.Deadline) || (fromCache && !e.Alive(now)) {
			continue
		}
		out = append(out, ListedEntry{Key: rec.Key, Entry: e})
	}
	return out, nil
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
			if s.durable != nil && n.suspect() {
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
	rec, found, err := s.durable.Load(ctx, key, now)
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
	// have seen since the last sync), and this request is activity.
	e.Restored = true
	// The row starts a new branch of the session: memcached lost (or could
	// not serve) the copy the row was synced from, and that copy may still
	// surface — another app server's pending or retried sync, a node that
	// was unreachable rather than empty. Every version that branch handed
	// out is below restoredVersion, so the durable tier's version check
	// refuses it from now on.
	e.Version = restoredVersion(e.Version, now)
	if s.mc != nil && cacheErr == nil {
		// memcached keeps this read as activity. Without it (no memcached,
		// or memcached unavailable) the row's ActiveAt stays, so that the
		// Manager's touch comes due and writes the row: otherwise a
		// read-only user would expire at the row's expires_at.
		e.ActiveAt = now
		buf := s.sealEnvelope(key, nil, e)
		exp := expiration(now, e.ExpiresAt())
		if corrupt {
			_ = s.mc.set(mkey, buf, exp)
		} else {
			_ = s.mc.add(mkey, buf, exp)
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
	rec, found, err := s.durable.Load(ctx, key, now)
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
	_ = s.mc.cas(mkey, s.sealEnvelope(key, nil, e), expiration(now, e.ExpiresAt()), casID)
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
	if s.mc.add(mkey, it.Value, expiration(now, e.ExpiresAt())) != nil {
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
)

// Insert stores a new session under token, in memcached (with add) and
// synchronously in the durable tier. It sets e's Version to 1 and its
// ActiveAt and SyncedAt to now; the caller sets Payload, Codec, Subject,
// Created, Deadline and IdleTimeout.
//
// It returns ErrExists when token is taken, ErrTooLarge when the envelope
// exceeds MaxItemSize, and an error wrapping ErrUnavailable when no tier
// stored it. When memcached stored it but the database did not, the sync is
// retried in the background and Insert succeeds.
func (s *Store) Insert(ctx context.Context, token string, e *Entry) error {
	if err := s.checkSize(e); err != nil {
		return err
	}
	now := s.now()
	next := *e
	next.Version = 1
	next.ActiveAt = now
	next.Restored = false
	next.SyncedAt, next.SyncedVersion = now, 1
	key, mkey := s.keys(token)
	buf := s.encode(key, &next)
	defer s.putBuf(buf)

	var cacheErr error
	if s.mc != nil {
		err := s.mc.add(mkey, *buf, expiration(now, next.ExpiresAt()))
		switch {
		case errors.Is(err, memcache.ErrNotStored):
			// Taken — unless by a tombstone or a dead entry of a reused key.
			if err := s.replaceDead(mkey, *buf, expiration(now, next.ExpiresAt()), now); err != nil {
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
	if err := s.syncNow(ctx, key, &next, *buf, now, cacheErr != nil || s.mc == nil, true); err != nil {
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
		next.Version++
	}
	next.ActiveAt = now
	next.Restored = false
	due := flags&WriteDurable != 0 || s.syncInterval < 0 || next.SyncedAt.IsZero() ||
		now.Sub(next.SyncedAt) >= s.syncInterval
	if due && s.durable != nil {
		next.SyncedAt, next.SyncedVersion = now, next.Version
	}
	key, mkey := s.entryKeys(token, e)
	buf := s.encode(key, &next)
	defer s.putBuf(buf)

	var cacheErr error
	if s.mc != nil {
		cacheErr = s.casWrite(mkey, e, *buf, expiration(now, next.ExpiresAt()))
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
		if err := s.saveConditional(ctx, key, &next, *buf, now, cacheErr); err != nil {
			return err // no tier took the change: memcached's copy is still the latest
		}
		if cacheErr != nil {
			s.mc.markDirty(mkey) // the database now holds a newer copy than the node may
		}
	case !due:
		s.stats.dbWritesSkipped.Add(1)
	case flags&WriteDurable != 0 || s.syncInterval < 0:
		if err := s.syncNow(ctx, key, &next, *buf, now, false, false); err != nil {
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

// replaceDead writes buf over the entry at mkey if that entry is a
// tombstone, dead, or corrupt; it returns ErrExists when a live session
// holds the key.
func (s *Store) replaceDead(mkey string, buf []byte, exp int32, now time.Time) error {
	it, err := s.mc.get(mkey)
	if err != nil {
		return err
	}
	if it == nil {
		return s.addOrExists(mkey, buf, exp)
	}
	var cur Entry
	if s.openEnvelope(mkey[len(s.mc.prefix):], it.Value, &cur) == nil && !isTombstone(&cur) && cur.Alive(now) {
		return ErrExists
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

// record builds the durable row for e written at now. ExpiresAt is chosen so
// that losing memcached can never log out a user who was active within the
// idle timeout: until the next sync, activity can only be recorded in
// memcached for less than SyncInterval, so last sync + IdleTimeout +
// SyncInterval bounds the session's true expiry. The overshoot — a session
// read back from the database after a memcached loss may outlive its idle
// timeout by up to SyncInterval — is the documented price.
func (s *Store) record(key string, e *Entry, payload []byte, now time.Time) Record {
	exp := now.Add(e.IdleTimeout)
	if s.syncInterval > 0 {
		exp = exp.Add(s.syncInterval)
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

// syncNow writes e to the durable tier on the request path. When memcached
// holds the write (cacheDown false) a database failure is logged, counted and
// retried in the background instead of failing the request.
//
// With replace (a new session) a refused save deletes the old row and
// saves again. The key may still have one: a tombstone, or a dead session
// whose row was not reaped yet, when a caller reuses keys (fiber.Storage
// users do; the Manager never does). Both carry a higher version than the
// new session's 1; as Insert is only called when no live session exists
// under the key, replacing the row is right.
func (s *Store) syncNow(ctx context.Context, key string, e *Entry, buf []byte, now time.Time, cacheDown, replace bool) error {
	if s.durable == nil {
		if cacheDown {
			return fmt.Errorf("%w: memcached unavailable and no durable tier", ErrUnavailable)
		}
		return nil
	}
	rec := s.record(key, e, bytesClone(buf), now)
	applied, err := s.durable.Save(ctx, rec)
	if err == nil && !applied && replace {
		s.syncer.forget(key)
		if err = s.durable.Delete(ctx, key); err == nil {
			applied, err = s.durable.Save(ctx, rec)
		}
		if err == nil && !applied {
			err = errors.New("a concurrent writer took the key")
		}
	}
	if err != nil {
		s.stats.dbWriteErrors.Add(1)
		if cacheDown {
			return fmt.Errorf("%w: memcached unavailable; database: %w", ErrUnavailable, err)
		}
		s.retryLater(rec, err)
		return nil
	}
	s.stats.dbWrites.Add(1)
	return nil
}

// saveConditional is the write-through path while memcached is unavailable:
// the durable tier's version check stands in for CAS.
func (s *Store) saveConditional(ctx context.Context, key string, e *Entry, buf []byte, now time.Time, cacheErr error) error {
	s.syncer.forget(key) // an older pending sync must not follow this write
	applied, err := s.durable.Save(ctx, s.record(key, e, bytesClone(buf), now))
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

// retryLater hands a sync that failed on the request path to the
// background writer. The session is in memcached; when the queue is full
// too, the sync is dropped and counted, and the session's next write after
// SyncInterval (or the reaper) syncs it.
func (s *Store) retryLater(rec Record, err error) {
	if s.syncer.enqueue(rec) {
		s.log.Warn("hybridsession: database write failed; memcached holds the session, retrying in the background", "error", err)
		return
	}
	s.stats.syncDropped.Add(1)
	s.log.Warn("hybridsession: database write failed and the background queue is full; dropped (the session is in memcached)", "error", err)
}

// syncLater hands a due periodic sync to the background writer. When the
// writer's queue is full it writes the sync now (back-pressure) — unless the
// database is failing, where that would make every request wait for
// DBTimeout: then the sync is dropped and counted, as in retryLater.
func (s *Store) syncLater(key string, e *Entry, buf []byte, now time.Time) {
	rec := s.record(key, e, bytesClone(buf), now)
	if s.syncer.enqueue(rec) {
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

// epochShift splits a version into an epoch (the high bits: the time in
// milliseconds when the session was last restored from the durable tier)
// and a count of changes since (the low 20 bits).
const epochShift = 20

// restoredVersion returns the version of a session restored from the
// durable tier at now with version v: the start of a new epoch, above v and
// above every version that a branch restored earlier (a millisecond or more
// before) can have reached with fewer than 2^20 changes. App servers whose
// clocks differ by d can still collide within d. Epochs stay below
// tombstoneVersion until 2109.
func restoredVersion(v uint64, now time.Time) uint64 {
	epoch := uint64(max(now.UnixMilli(), 0)) << epochShift
	return max(epoch, (v>>epochShift+1)<<epochShift)
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
		cacheErr = s.mc.set(s.mc.key(key), s.sealEnvelope(key, nil, &tomb), expiration(now, tomb.Deadline))
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
		if _, err := s.durable.Save(ctx, rec); err != nil {
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

// tombstoneLife outlasts any sync still retrying in another process's
// background writer (they give up after max(SyncInterval, 1m)).
func (s *Store) tombstoneLife() time.Duration {
	return max(s.syncInterval, time.Minute) + time.Minute
}

// DeleteSubject removes every session of subject from both tiers ("log out
// everywhere") and returns how many it removed. Only sessions whose subject
// reached the database are found: the Manager writes subject changes as
// durable. An empty subject removes nothing.
func (s *Store) DeleteSubject(ctx context.Context, subject string) (int, error) {
	if subject == "" || s.durable == nil {
		return 0, nil
	}
	keys, err := s.durable.DeleteSubject(ctx, subject)
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

func bytesClone(b []byte) []byte { return append([]byte(nil), b...) }
