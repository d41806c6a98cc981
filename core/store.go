package core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
	"unsafe"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/cache"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// Store is the tiered session store: memcached first, the database second. It keeps sessions under their
// tokens and knows nothing of cookies; the Manager builds sessions on it. Its rules (docs/consistency.md):
//   - the row decides whether a session exists and orders its changes: each row write is conditional on
//     the row version it was built on, and a refused one is merged key by key with the row and retried;
//   - memcached holds the row plus at most SyncInterval of changes and activity (see SyncInterval);
//   - a destroyed session is a row state (a tombstone) until its absolute deadline;
//   - what this Store cannot read (another key ring, a newer format, an unknown codec) is never overwritten.
//
// Both tiers hold SHA-256 of the token, never the token (StorageKey). A Store is safe for concurrent use.
// Close it to write pending syncs.
type Store struct {
	mc      *cache.Cache // nil: no memcached
	prefix  string       // memcached key prefix
	durable durable.Tier // nil: no durable tier
	ring    *envelope.Ring
	codec   Codec      // encodes
	codecs  [256]Codec // decode: codec and StoreConfig.Codecs
	writer  *writer    // nil without both tiers
	reaper  *Reaper    // the in-process reaper, or nil
	stats   counters
	warn    rateLimited
	now     func() time.Time

	syncInterval time.Duration
	writeThrough bool
	grace        time.Duration // how far rows may lag activity: SyncInterval, or 0 when every write goes to the row
	dbTimeout    time.Duration
	maxItem      int
	bufs         sync.Pool // *[]byte for envelopes memcached copies before returning
	closeOnce    sync.Once
	closeErr     error
}

// NewStore validates cfg, fills its defaults and returns a Store. It does not contact the servers: a
// memcached or database that is down at start-up is handled like one that goes down later. It returns an
// error when neither tier is configured.
func NewStore(cfg StoreConfig) (*Store, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	ring, err := envelope.NewRing(cfg.Seal.Keys, cfg.Seal.AcceptUnsealed)
	if err != nil {
		return nil, fmt.Errorf("core: StoreConfig.Seal.Keys: %w", err)
	}
	s := &Store{
		durable: cfg.Durable, ring: ring, codec: cfg.Codec, now: cfg.Clock,
		prefix: cfg.Memcached.KeyPrefix, maxItem: cfg.Memcached.MaxItemSize, dbTimeout: cfg.DBTimeout,
		syncInterval: cfg.SyncInterval, writeThrough: cfg.WriteThrough && cfg.Durable != nil,
		warn: rateLimited{logger: cfg.Logger, next: map[string]time.Time{}, n: map[string]int{}},
		bufs: sync.Pool{New: func() any { return new([]byte) }},
	}
	for _, c := range append(cfg.Codecs, cfg.Codec) {
		s.codecs[c.ID()] = c
	}
	if !ring.Sealed() {
		cfg.Logger.Warn("hybridsession: StoreConfig.Seal.Keys is empty, so sessions are stored in plain text: " +
			"anyone who can reach memcached (it has no authentication) or read the database can read every " +
			"session, and anyone who can write to memcached can forge any session. Set Seal.Keys (see docs/security.md)")
	}
	if m := cfg.Memcached; len(m.Servers) > 0 {
		s.mc, err = cache.New(cache.Config{
			Servers: m.Servers, Timeout: m.Timeout,
			MaxIdleConns:     64, // per node: above the usual peak of parallel requests per app server
			BreakerThreshold: m.BreakerThreshold, BreakerCooldown: m.BreakerCooldown,
			DialContext: m.DialContext, TLS: m.TLS, Tracer: m.Tracer, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("core: memcached: %w", err)
		}
	}
	if s.durable != nil && s.mc != nil {
		s.writer = newWriter(s, cfg.SyncQueueSize)
	}
	if s.mc != nil && !s.writeThrough {
		s.grace = s.syncInterval
	}
	if s.durable != nil && cfg.Reaper.Interval >= 0 {
		s.reaper, _ = s.NewReaper(cfg.Reaper)
		s.reaper.start()
	}
	return s, nil
}

// Close stops the reaper, writes every session the background writer holds, due or not, and closes the
// memcached connections (not the durable tier). It returns ctx's error when ctx ended first; what it did not
// write stays in memcached. Later calls return the first result.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.reaper != nil {
			s.reaper.stop()
		}
		if s.writer != nil {
			s.closeErr = s.writer.close(ctx)
		}
		if s.mc != nil {
			s.mc.Close()
		}
	})
	return s.closeErr
}

// Flush runs the background writer now: it writes the rows due within its tick (SyncInterval/8) and returns
// when done or, with ctx's error, when ctx ends. What it could not write stays queued.
func (s *Store) Flush(ctx context.Context) error {
	if s.writer == nil {
		return nil
	}
	return s.writer.flush(ctx, false)
}

// AddServer adds a memcached node at run time, with weight (0 means 1). About 1/N of the sessions move to
// it; their next read is served from the database and refills the new node.
func (s *Store) AddServer(addr string, weight int) error {
	if s.mc == nil {
		return errors.New("core: AddServer: the Store has no memcached tier")
	}
	return s.mc.AddServer(addr, weight)
}

// RemoveServer removes a memcached node at run time; its sessions' next reads go to the database.
func (s *Store) RemoveServer(addr string) error {
	if s.mc == nil {
		return errors.New("core: RemoveServer: the Store has no memcached tier")
	}
	return s.mc.RemoveServer(addr)
}

// StorageKey returns the key under which token is stored: its SHA-256 digest in unpadded base64url, 43 bytes.
func StorageKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// keys returns token's storage key and memcached key, the former a suffix of the latter: one allocation.
func (s *Store) keys(token string) (key, mkey string) {
	var buf [64]byte // hash a copy on the stack: []byte(token) would allocate
	sum := sha256.Sum256(append(buf[:0], token...))
	b := make([]byte, 0, len(s.prefix)+43) // 43: a storage key's length
	b = append(b, s.prefix...)
	b = base64.RawURLEncoding.AppendEncode(b, sum[:])
	mkey = unsafe.String(unsafe.SliceData(b), len(b)) // b is never written again
	return mkey[len(s.prefix):], mkey
}

// seal appends e, sealed for the memcached key mkey, to dst: bound to the storage key and prefix.
func (s *Store) seal(dst []byte, mkey string, e *envelope.Envelope) []byte {
	return s.ring.Seal(dst, unsafe.Slice(unsafe.StringData(mkey), len(mkey)), e)
}

// open opens b, read from either tier for the memcached key mkey, into e; not inPlace, it also opens
// envelopes of releases before format 3. A corrupt or unreadable envelope is counted and logged (once a
// minute per kind); both are misses, and an unreadable one must not be overwritten.
func (s *Store) open(b []byte, mkey string, e *envelope.Envelope, inPlace bool) error {
	ad := unsafe.Slice(unsafe.StringData(mkey), len(mkey))
	err := s.ring.Open(b, ad, ad[len(s.prefix):], e, inPlace)
	if err == nil && e.Lineage == 0 { // written by a release before format 3
		e.Grace = s.grace
	}
	if err == nil && !e.Destroyed && s.codecs[e.Codec] == nil && !opaqueCodec(e.Codec) {
		err = fmt.Errorf("%w: %w: id %d", envelope.ErrUnreadable, errUnknownCodec, e.Codec)
	}
	switch {
	case errors.Is(err, envelope.ErrCorrupt):
		s.stats.corrupt.Add(1)
		s.warn.log("corrupt", "hybridsession: a session envelope is corrupt or failed to authenticate; treated as a miss", err)
	case err != nil:
		s.stats.unreadable.Add(1)
		s.warn.log("unreadable", "hybridsession: a session envelope cannot be read by this server (another key ring, format or codec); treated as a miss and left in place", err)
	}
	return err
}

// buffer returns a buffer for an envelope that does not outlive its write; put it back in s.bufs.
func (s *Store) buffer() *[]byte { return s.bufs.Get().(*[]byte) }

// newLineage returns a random, non-zero lineage id (see envelope.Envelope.Lineage).
func newLineage() uint64 { return rand.Uint64() | 1 }

// rateLimited logs each kind of message at most once a minute, with its number of occurrences since.
type rateLimited struct {
	logger *slog.Logger
	mu     sync.Mutex
	next   map[string]time.Time
	n      map[string]int
}

func (r *rateLimited) log(kind, msg string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[kind]++
	now := time.Now()
	if now.Before(r.next[kind]) {
		return
	}
	r.logger.Warn(msg, "error", err, "occurrences", r.n[kind])
	r.next[kind], r.n[kind] = now.Add(time.Minute), 0
}

// copyExpiry is when memcached may drop v's copy: when its row may be reaped (a copy that idled out must
// still be there to say so when the row is read), plus a second, as memcached counts whole seconds.
func copyExpiry(v *envelope.Envelope) time.Time {
	if v.Destroyed {
		return v.Deadline
	}
	return rowExpiry(v).Add(time.Second)
}
