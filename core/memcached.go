package core

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// MemcachedConfig configures the memcached tier. The zero value means no
// memcached: every read and write goes to the durable tier.
type MemcachedConfig struct {
	// Servers lists the memcached nodes as "host:port" or, for a unix
	// socket, a path containing a slash. Optional. Empty: no memcached tier.
	// With more than one server, keys are spread with consistent hashing, so
	// adding or removing a node moves about 1/N of the sessions; their next
	// read is served from the database.
	Servers []string

	// KeyPrefix is put in front of every storage key, so several
	// applications can share one memcached. Optional. Default "hs:".
	// At most 200 bytes, with no spaces or control bytes (memcached keys are
	// at most 250 bytes; the storage key itself takes 43).
	KeyPrefix string

	// Timeout is the socket read/write timeout of each memcached operation,
	// and the dial timeout unless DialTimeout is set. Optional. Default 100ms.
	Timeout time.Duration

	// DialTimeout bounds connecting to a node. Optional. Default: Timeout.
	// A value above Timeout has no effect: gomemcache bounds every dial by
	// Timeout as well.
	DialTimeout time.Duration

	// MaxIdleConns is the number of idle connections kept per node.
	// Optional. Default 64. Keep it above your peak of parallel requests per
	// app server, or requests pay for new connections.
	MaxIdleConns int

	// MaxItemSize is the largest envelope, in bytes, the Store writes.
	// Larger sessions fail with ErrTooLarge before anything is sent.
	// Optional. Default 1 MiB minus 1 KiB, memcached's default item size
	// limit (-I 1m) less room for the item header and key. Raise it only
	// together with memcached's -I.
	MaxItemSize int

	// BreakerThreshold is how many consecutive failures (network errors,
	// timeouts) open a node's circuit breaker. While it is open, that node's
	// keys are served from the database without waiting on the node.
	// Optional. Default 3.
	BreakerThreshold int

	// DialContext, when set, opens connections to memcached nodes instead
	// of a net.Dialer with DialTimeout — to instrument connections, for
	// example. With TLS set, the TLS handshake runs over the connections it
	// returns. Optional.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// TLS, when set, speaks TLS to every node (memcached 1.5.13 and later
	// started with -Z, --enable-ssl): the connections to memcached, the
	// breaker probes and the reaper's reads are encrypted and the server's
	// certificate is verified against TLS.RootCAs (the system's roots when
	// nil). For mutual TLS, put the client certificate in
	// TLS.Certificates and start memcached with ssl_ca_cert and
	// ssl_verify_mode=2. When TLS.ServerName is empty it is the node's host.
	// Optional. Default: plain text, which anyone on the network path can
	// read and alter — sessions are still sealed (StoreConfig.Seal), but
	// their storage keys and sizes are visible.
	TLS *tls.Config

	// BreakerCooldown is how long an open breaker waits before probing the
	// node again (in the background: no request waits on the probe).
	// Optional. Default 2s.
	BreakerCooldown time.Duration

	// RingChangeWindow is how long after AddServer or RemoveServer a hit
	// on a key that changed owner is checked against the database row (one
	// database read; when the database cannot answer, one read of the
	// key's previous owner, whose tombstone then wins). Other app servers
	// apply the change at their own moment, and until they have they write
	// — and destroy — that key on its previous owner. Roll a ring change
	// out to every app server within it. Optional. Default 10s.
	RingChangeWindow time.Duration

	// Tracer, when set, is told about every memcached operation (see
	// CacheTracer). Optional. Default nil: no tracing.
	Tracer CacheTracer
}

const (
	defaultKeyPrefix        = "hs:"
	defaultMemcacheTimeout  = 100 * time.Millisecond
	defaultMaxIdleConns     = 64
	defaultMaxItemSize      = 1<<20 - 1<<10
	defaultBreakerThreshold = 3
	defaultBreakerCooldown  = 2 * time.Second
	defaultRingChangeWindow = 10 * time.Second
	maxKeyPrefixLen         = 200
	// memcached takes relative expirations up to 30 days; larger numbers are
	// read as a Unix time.
	maxRelativeExpiration = 30 * 24 * 60 * 60
)

func (c *MemcachedConfig) setDefaults() error {
	if c.KeyPrefix == "" {
		c.KeyPrefix = defaultKeyPrefix
	}
	if len(c.KeyPrefix) > maxKeyPrefixLen {
		return fmt.Errorf("core: MemcachedConfig.KeyPrefix longer than %d bytes", maxKeyPrefixLen)
	}
	for i := 0; i < len(c.KeyPrefix); i++ {
		if b := c.KeyPrefix[i]; b <= ' ' || b == 0x7f {
			return errors.New("core: MemcachedConfig.KeyPrefix contains a space or control byte")
		}
	}
	if c.Timeout == 0 {
		c.Timeout = defaultMemcacheTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = c.Timeout
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = defaultMaxIdleConns
	}
	if c.MaxItemSize == 0 {
		c.MaxItemSize = defaultMaxItemSize
	}
	if c.BreakerThreshold == 0 {
		c.BreakerThreshold = defaultBreakerThreshold
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = defaultBreakerCooldown
	}
	if c.RingChangeWindow == 0 {
		c.RingChangeWindow = defaultRingChangeWindow
	}
	switch {
	case c.Timeout < 0, c.DialTimeout < 0, c.BreakerCooldown < 0, c.RingChangeWindow < 0:
		return errors.New("core: MemcachedConfig durations must not be negative")
	case c.MaxIdleConns < 0, c.MaxItemSize < 0, c.BreakerThreshold < 0:
		return errors.New("core: MemcachedConfig counts must not be negative")
	}
	return nil
}

// memcachedTier wraps a gomemcache client with key prefixing, expiry
// arithmetic, error classification and a circuit breaker per node.
type memcachedTier struct {
	client   *memcache.Client
	selector *Ketama
	prefix   string
	maxItem  int
	cfg      MemcachedConfig
	log      *slog.Logger
	stats    *counters
	// stale reports whether value, the copy of mkey a node holds, is
	// staler than a write around the node; the Store sets it
	// (Store.staleCopy: it opens envelopes).
	stale func(mkey string, value []byte, w aroundWrite) bool

	mu    sync.RWMutex
	nodes map[net.Addr]*node // by the selector's stable addresses

	prior  atomic.Pointer[priorRing]  // nil until an AddServer
	change atomic.Pointer[ringChange] // nil until a ring change

	stop     chan struct{}
	probes   sync.WaitGroup
	stopOnce sync.Once
}

func newMemcachedTier(cfg MemcachedConfig, log *slog.Logger, stats *counters) (*memcachedTier, error) {
	servers := make([]WeightedServer, len(cfg.Servers))
	for i, s := range cfg.Servers {
		servers[i] = WeightedServer{Addr: s}
	}
	sel, err := NewKetama(servers...)
	if err != nil {
		return nil, fmt.Errorf("core: memcached servers: %w", err)
	}
	t := &memcachedTier{
		selector: sel,
		prefix:   cfg.KeyPrefix,
		maxItem:  cfg.MaxItemSize,
		cfg:      cfg,
		log:      log,
		stats:    stats,
		nodes:    map[net.Addr]*node{},
		stop:     make(chan struct{}),
	}
	t.client = memcache.NewFromSelector(sel)
	t.client.Timeout = cfg.Timeout
	t.client.MaxIdleConns = cfg.MaxIdleConns
	t.client.DialContext = cfg.DialContext
	if t.client.DialContext == nil {
		t.client.DialContext = (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext
	}
	if cfg.TLS != nil {
		t.client.DialContext = tlsDialer(t.client.DialContext, cfg.TLS)
	}
	t.syncNodes()
	return t, nil
}

// syncNodes makes t.nodes match the selector's servers.
func (t *memcachedTier) syncNodes() {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[net.Addr]bool{}
	_ = t.selector.Each(func(a net.Addr) error {
		seen[a] = true
		if t.nodes[a] == nil {
			t.nodes[a] = &node{addr: a}
		}
		return nil
	})
	for a, n := range t.nodes {
		if !seen[a] {
			// App servers that have not removed the node yet still read
			// it: its probe goes on purging the copies this one wrote
			// around it for as long as they may (RingChangeWindow).
			n.retiredUntil.Store(time.Now().Add(t.cfg.RingChangeWindow).UnixNano())
			delete(t.nodes, a)
		}
	}
}

// AddServer adds a memcached node at run time. About 1/N of the sessions
// move to it; their next read misses memcached and is served from the
// database, so nobody is logged out.
func (t *memcachedTier) addServer(addr string, weight int) error {
	before, err := t.selector.clone()
	if err != nil {
		return err
	}
	if err := t.selector.Add(WeightedServer{Addr: addr, Weight: weight}); err != nil {
		return err
	}
	t.syncNodes()
	c := memcache.NewFromSelector(before)
	c.Timeout, c.MaxIdleConns, c.DialContext = t.client.Timeout, t.client.MaxIdleConns, t.client.DialContext
	if old := t.prior.Swap(&priorRing{sel: before, client: c}); old != nil {
		_ = old.client.Close()
	}
	t.ringChanged(before)
	return nil
}

// ringChange is the ring as it was before the last AddServer or
// RemoveServer, and when the window ends in which hits on the keys that
// changed owner are checked against the database (RingChangeWindow).
type ringChange struct {
	before *Ketama
	client *memcache.Client // on before, for previousDelete and previousGet
	until  int64            // Unix nanoseconds
}

// ringChanged records a ring change from before.
func (t *memcachedTier) ringChanged(before *Ketama) {
	c := memcache.NewFromSelector(before)
	c.Timeout, c.MaxIdleConns, c.DialContext = t.client.Timeout, 2, t.client.DialContext
	rc := &ringChange{before: before, client: c, until: time.Now().Add(t.cfg.RingChangeWindow).UnixNano()}
	if old := t.change.Swap(rc); old != nil {
		_ = old.client.Close()
	}
}

// previousDelete deletes mkey from the node that owned it before the last
// ring change, while the change is recent and that node is another: app
// servers that have not applied the change yet still read the key there
// (a node being removed included). Best effort: the change's window bounds
// what a failure leaves (docs/consistency.md, I2).
func (t *memcachedTier) previousDelete(mkey string) {
	if c := t.previous(mkey); c != nil {
		_ = c.client.Delete(mkey)
	}
}

// previousGet reads mkey from the node that owned it before the last ring
// change, while the change is recent and that node is another; nil when
// there is none, or it has no copy or does not answer.
func (t *memcachedTier) previousGet(mkey string) *memcache.Item {
	c := t.previous(mkey)
	if c == nil {
		return nil
	}
	it, err := c.client.Get(mkey)
	if err != nil {
		return nil
	}
	return it
}

// previous returns the last ring change when it is less than
// RingChangeWindow old and moved mkey to another node; nil otherwise.
func (t *memcachedTier) previous(mkey string) *ringChange {
	c := t.change.Load()
	if c == nil || time.Now().UnixNano() >= c.until {
		return nil
	}
	was, err := c.before.PickServer(mkey)
	if err != nil {
		return nil
	}
	if cur, err := t.selector.PickServer(mkey); err == nil && cur.String() == was.String() {
		return nil
	}
	return c
}

// movedRecently reports whether mkey, read from n, changed owner in a ring
// change less than RingChangeWindow ago: until every app server has applied
// the change, some may still write and destroy it on its previous owner.
func (t *memcachedTier) movedRecently(mkey string, n *node) bool {
	c := t.change.Load()
	if c == nil || time.Now().UnixNano() >= c.until {
		return false
	}
	was, err := c.before.PickServer(mkey)
	return err != nil || was.String() != n.addr.String()
}

// priorRing is the ring as it was before the last AddServer. A key the new
// node took over may still have a copy on its previous owner: on a miss,
// that copy (the session's latest state) moves to the new owner and is
// deleted where it was, so that it can never come back stale — as it would
// when the new node is removed again and the key returns to its old owner.
type priorRing struct {
	sel    *Ketama
	client *memcache.Client
}

// priorOwner returns the node that owned mkey before the last AddServer,
// when that is another node than now and its breaker is closed.
func (t *memcachedTier) priorOwner(mkey string) (*priorRing, *node) {
	p := t.prior.Load()
	if p == nil {
		return nil, nil
	}
	was, err := p.sel.PickServer(mkey)
	if err != nil {
		return nil, nil
	}
	if cur, err := t.selector.PickServer(mkey); err != nil || cur.String() == was.String() {
		return nil, nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for a, n := range t.nodes {
		if a.String() == was.String() && n.state.Load() == breakerClosed {
			return p, n
		}
	}
	return nil, nil
}

// priorGet reads mkey from its previous owner; nil when there is none.
func (t *memcachedTier) priorGet(mkey string) *memcache.Item {
	p, n := t.priorOwner(mkey)
	if n == nil {
		return nil
	}
	var it *memcache.Item
	if err := t.do(n, "get", func() (err error) { it, err = p.client.Get(mkey); return err }); err != nil {
		return nil
	}
	return it
}

// priorDelete deletes mkey from its previous owner.
func (t *memcachedTier) priorDelete(mkey string) {
	if p, n := t.priorOwner(mkey); n != nil {
		_ = t.do(n, "delete", func() error { return p.client.Delete(mkey) })
	}
}

func (t *memcachedTier) removeServer(addr string) error {
	before, err := t.selector.clone()
	if err != nil {
		return err
	}
	if err := t.selector.Remove(addr); err != nil {
		return err
	}
	t.syncNodes()
	if p := t.prior.Load(); p != nil {
		_ = p.sel.Remove(addr) // its copies are gone with it
	}
	t.ringChanged(before)
	return nil
}

func (t *memcachedTier) close() {
	t.stopOnce.Do(func() { close(t.stop) })
	t.probes.Wait()
	_ = t.client.Close()
	if p := t.prior.Swap(nil); p != nil {
		_ = p.client.Close()
	}
	if c := t.change.Swap(nil); c != nil {
		_ = c.client.Close()
	}
}

func (t *memcachedTier) key(storageKey string) string { return t.prefix + storageKey }

// tokenKey returns the memcached key of token in one allocation.
func (t *memcachedTier) tokenKey(token string) string {
	var buf [maxKeyPrefixLen + storageKeyLen]byte
	b := append(buf[:0], t.prefix...)
	return string(appendStorageKey(b, token))
}

// pick returns the node for a memcached key, or ErrCacheUnavailable when its
// breaker is open.
func (t *memcachedTier) pick(mkey string) (*node, error) {
	addr, err := t.selector.PickServer(mkey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCacheUnavailable, err)
	}
	t.mu.RLock()
	n := t.nodes[addr]
	t.mu.RUnlock()
	if n == nil { // a server was added a moment ago
		t.syncNodes()
		t.mu.RLock()
		n = t.nodes[addr]
		t.mu.RUnlock()
		if n == nil {
			return nil, fmt.Errorf("%w: node %s removed", ErrCacheUnavailable, addr)
		}
	}
	if n.state.Load() != breakerClosed {
		t.stats.cacheShortCircuits.Add(1)
		return nil, fmt.Errorf("%w: %s: circuit breaker open", ErrCacheUnavailable, addr)
	}
	return n, nil
}

// done classifies err from an operation on n: protocol answers (miss, not
// stored, CAS conflict, server error) prove the node alive; anything else is
// a failure that counts toward opening its breaker. It returns err, wrapped
// in ErrCacheUnavailable when it was a failure.
func (t *memcachedTier) done(n *node, err error) error {
	if err == nil || isProtocolAnswer(err) {
		if n.failures.Load() != 0 {
			n.failures.Store(0)
		}
		return err
	}
	t.stats.cacheErrors.Add(1)
	if int(n.failures.Add(1)) >= t.cfg.BreakerThreshold && n.state.CompareAndSwap(breakerClosed, breakerOpen) {
		t.stats.breakerOpens.Add(1)
		t.log.Warn("hybridsession: memcached node unreachable; its sessions are served from the database",
			"node", n.addr.String(), "error", err)
		t.probes.Add(1)
		go t.probe(n)
	}
	return fmt.Errorf("%w: %s: %v", ErrCacheUnavailable, n.addr, err)
}

func isProtocolAnswer(err error) bool {
	// gomemcache reports SERVER_ERROR lines ("out of memory storing
	// object", "object too large for cache") as an unexpected response
	// line, not as ErrServerError: the node answered all the same.
	if err == nil {
		return false
	}
	return errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrCASConflict) ||
		errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrMalformedKey) ||
		errors.Is(err, memcache.ErrServerError) || strings.Contains(err.Error(), "SERVER_ERROR")
}

// probe runs while n's breaker is open: every BreakerCooldown it checks the
// node with a version command and closes the breaker when it answers. Once
// RemoveServer has taken n out of the ring, it goes on only to purge what
// was written around n (retiredTooLong).
func (t *memcachedTier) probe(n *node) {
	defer t.probes.Done()
	timer := time.NewTimer(t.cfg.BreakerCooldown)
	defer timer.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-timer.C:
		}
		t.mu.RLock()
		removed := t.nodes[n.addr] != n
		t.mu.RUnlock()
		if removed && !n.pending() {
			return
		}
		if t.ping(n.addr) == nil && t.reopen(n) == nil {
			if !removed {
				t.stats.breakerCloses.Add(1)
				t.log.Info("hybridsession: memcached node reachable again", "node", n.addr.String())
			}
			return
		}
		if removed && t.retiredTooLong(n) {
			return
		}
		timer.Reset(t.cfg.BreakerCooldown)
	}
}

// pending reports whether n has copies to purge.
func (n *node) pending() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.dirty) > 0 || n.flush
}

// retiredTooLong reports whether the probe of n, which RemoveServer took
// out of the ring and which failed to purge it once more, must give up.
// While app servers that have not applied the removal may still read n
// (RingChangeWindow), the copies staler than what this one wrote around n
// must still go (I4, I5); past that, what is left is logged and dropped.
// The probe tries at least once after the removal, whatever the window.
func (t *memcachedTier) retiredTooLong(n *node) bool {
	if time.Now().UnixNano() < n.retiredUntil.Load() {
		return false
	}
	n.mu.Lock()
	left := len(n.dirty)
	n.mu.Unlock()
	t.log.Warn("hybridsession: a removed memcached node stayed unreachable for RingChangeWindow; copies written around it were not purged",
		"node", n.addr.String(), "keys", left)
	return true
}

// maxDirty bounds the keys remembered per unavailable node; past it the
// node is flushed whole when it returns.
const maxDirty = 100000

// aroundWrite is what an app server wrote to the database around a node
// that could not take it. The node's copy of the key is stale unless it is
// at least as new (Store.staleCopy): a higher version, or the same version
// with activity at least as recent; a tombstone, unless the write reused
// the key after it.
type aroundWrite struct {
	version uint64
	active  int64 // ActiveAt, Unix milliseconds
	reuse   bool  // an Insert with WriteReuseKey: it replaced any tombstone
}

// merge returns the newer of w and o, reusing when either did.
func (w aroundWrite) merge(o aroundWrite) aroundWrite {
	if o.version > w.version || (o.version == w.version && o.active > w.active) {
		w.version, w.active = o.version, o.active
	}
	w.reuse = w.reuse || o.reuse
	return w
}

// markDirty records that w of mkey was written to the database while its
// node could not be reached: the node may still hold an older copy (it was
// unreachable, not necessarily restarted), which must go before the node
// serves again. If the node's breaker is closed by now, that is done at
// once. Only stale copies go: another app server that reached the node
// again sooner may have written a newer one there, perhaps its only copy
// (a change not synced yet).
func (t *memcachedTier) markDirty(mkey string, w aroundWrite) {
	addr, err := t.selector.PickServer(mkey)
	if err != nil {
		return
	}
	t.mu.RLock()
	n := t.nodes[addr]
	t.mu.RUnlock()
	if n == nil {
		return
	}
	n.mu.Lock()
	if n.state.Load() == breakerClosed {
		// The node answers again (or a blip never opened the breaker):
		// remove the older copy now. If that fails too, open the breaker
		// so the key is remembered and purged before the node serves again.
		n.mu.Unlock()
		err := t.do(n, "purge", func() error {
			_, err := t.expireStale(t.client, mkey, nil, w)
			return err
		})
		if err == nil || !errors.Is(err, ErrCacheUnavailable) {
			return
		}
		n.mu.Lock()
		if n.state.CompareAndSwap(breakerClosed, breakerOpen) {
			t.stats.breakerOpens.Add(1)
			t.log.Warn("hybridsession: memcached node unreachable; its sessions are served from the database",
				"node", n.addr.String(), "error", err)
			t.probes.Add(1)
			go t.probe(n)
		}
	}
	defer n.mu.Unlock()
	n.remember(mkey, w)
}

// remember adds w of mkey to n's dirty keys; n.mu is held.
func (n *node) remember(mkey string, w aroundWrite) {
	if v, ok := n.dirty[mkey]; ok {
		n.dirty[mkey] = v.merge(w)
		return
	}
	if len(n.dirty) >= maxDirty {
		n.flush = true
		return
	}
	if n.dirty == nil {
		n.dirty = map[string]aroundWrite{}
	}
	n.dirty[mkey] = w
}

// reopen removes the copies staler than what this app server wrote around n
// while it was unavailable (or flushes n when there were too many keys),
// then closes its breaker.
func (t *memcachedTier) reopen(n *node) error {
	for {
		n.mu.Lock()
		dirty, flush := n.dirty, n.flush
		if len(dirty) == 0 && !flush {
			n.failures.Store(0)
			// Other app servers may still write this node's sessions through
			// to the database until their own probes close their breakers:
			// until then, reads double-check the database.
			n.suspectUntil.Store(time.Now().Add(t.suspectWindow()).UnixNano())
			n.state.Store(breakerClosed) // under n.mu: markDirty sees it
			n.mu.Unlock()
			return nil
		}
		n.dirty, n.flush = nil, false
		n.mu.Unlock()
		if err := t.purge(n.addr, dirty, flush); err != nil {
			n.mu.Lock()
			n.flush = n.flush || flush
			for k, v := range dirty {
				n.remember(k, v)
			}
			n.mu.Unlock()
			return err
		}
	}
}

// purgeBatch is how many keys purge reads in one round trip, and
// purgeWorkers how many batches it works on at once.
const (
	purgeBatch   = 100
	purgeWorkers = 8
)

// purge removes from the node at addr the copies of keys staler than what
// was written around it (or flushes it whole). It uses a client of its own,
// bound to addr: the node must be reached whatever the ring says now.
// Batches run purgeWorkers at a time, one GetMulti each, then one
// compare-and-swap per stale copy.
func (t *memcachedTier) purge(addr net.Addr, keys map[string]aroundWrite, flush bool) error {
	c := memcache.NewFromSelector(oneServer{addr})
	c.Timeout, c.MaxIdleConns, c.DialContext = t.cfg.Timeout, purgeWorkers, t.client.DialContext
	defer c.Close()
	if flush {
		if err := c.FlushAll(); err != nil {
			return err
		}
		t.log.Info("hybridsession: flushed a memcached node that was unavailable while too many of its sessions changed",
			"node", addr.String(), "keys", len(keys))
		return nil
	}
	batches := make(chan []string)
	var (
		removed  atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(purgeWorkers, (len(keys)+purgeBatch-1)/purgeBatch) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				if err := t.purgeBatch(c, batch, keys, &removed); err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	batch := make([]string, 0, purgeBatch)
	for k := range keys {
		if batch = append(batch, k); len(batch) == purgeBatch {
			batches <- batch
			batch = make([]string, 0, purgeBatch)
		}
	}
	if len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	t.log.Info("hybridsession: removed copies that went stale while a memcached node was unavailable",
		"node", addr.String(), "keys", len(keys), "removed", removed.Load())
	return nil
}

func (t *memcachedTier) purgeBatch(c *memcache.Client, batch []string, keys map[string]aroundWrite, removed *atomic.Int64) error {
	items, err := c.GetMulti(batch)
	if err != nil {
		return err
	}
	for k, it := range items {
		gone, err := t.expireStale(c, k, it, keys[k])
		if err != nil {
			return err
		}
		if gone {
			removed.Add(1)
		}
	}
	return nil
}

// expireStale removes mkey's copy from c when it is staler than w (or does
// not open), and reports whether it did. it is the copy already read, or
// nil to read it. The removal is a compare-and-swap with an expiry in the
// past (memcached stores the item already expired), so a copy written
// since the read stays: it is looked at again. When the node refuses that
// store (out of memory: the swap needs a new item), the stale copy is
// deleted instead.
func (t *memcachedTier) expireStale(c *memcache.Client, mkey string, it *memcache.Item, w aroundWrite) (bool, error) {
	for range 8 {
		if it == nil {
			var err error
			if it, err = c.Get(mkey); err != nil {
				if errors.Is(err, memcache.ErrCacheMiss) {
					return false, nil
				}
				return false, err
			}
		}
		if !t.stale(mkey, it.Value, w) {
			return false, nil
		}
		err := c.CompareAndSwap(&memcache.Item{Key: mkey, Expiration: -1, CasID: it.CasID})
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, memcache.ErrCacheMiss):
			return false, nil
		case errors.Is(err, memcache.ErrCASConflict):
			it = nil // rewritten since the read: look again
			continue
		case !isProtocolAnswer(err):
			return false, err
		}
		break // refused: delete below
	}
	// Refused, or rewritten over and over with stale copies: the database
	// holds the newer session, so the node's copy goes.
	if err := c.Delete(mkey); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return false, err
	}
	return true, nil
}

// oneServer is a memcache.ServerSelector of a single node.
type oneServer struct{ addr net.Addr }

func (o oneServer) PickServer(string) (net.Addr, error) { return o.addr, nil }

func (o oneServer) Each(f func(net.Addr) error) error { return f(o.addr) }

// ping sends "version" to addr on a fresh connection and waits for the answer.
func (t *memcachedTier) ping(addr net.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.DialTimeout+t.cfg.Timeout)
	defer cancel()
	c, err := t.client.DialContext(ctx, addr.Network(), addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(t.cfg.Timeout))
	if _, err := c.Write([]byte("version\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	nr, err := c.Read(buf)
	if err != nil {
		return err
	}
	if nr < 8 || string(buf[:8]) != "VERSION " {
		return fmt.Errorf("unexpected answer %q", buf[:nr])
	}
	return nil
}

// do runs op against n. When op fails on a connection the node closed —
// reset or EOF on an idle pooled connection, as after a memcached restart —
// the idle pool is dropped and op runs once more on a fresh connection.
// Timeouts are not retried: a blackholed node must not cost two timeouts.
func (t *memcachedTier) do(n *node, name string, op func() error) (err error) {
	if t.cfg.Tracer != nil {
		end := t.cfg.Tracer.StartCacheOp(context.Background(), name, n.addr.String())
		defer func() { end(err) }()
	}
	err = op()
	if staleConn(err) {
		_ = t.client.Close() // drops idle connections; the client stays usable
		err = op()
	}
	return t.done(n, err)
}

func staleConn(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// get returns the item, nil on a miss.
func (t *memcachedTier) get(mkey string) (*memcache.Item, error) {
	it, _, err := t.getFrom(mkey)
	return it, err
}

// getFrom is get that also returns the node that answered, so the caller
// can ask about it (suspect) without hashing the key again.
func (t *memcachedTier) getFrom(mkey string) (*memcache.Item, *node, error) {
	n, err := t.pick(mkey)
	if err != nil {
		return nil, nil, err
	}
	var it *memcache.Item
	err = t.do(n, "get", func() (err error) { it, err = t.client.Get(mkey); return err })
	if err != nil {
		if errors.Is(err, memcache.ErrCacheMiss) {
			return nil, n, nil
		}
		return nil, n, err
	}
	return it, n, nil
}

// getMulti fetches keys in one round trip per node. Keys on a node that
// failed are listed in failed, so the caller can tell "absent" from "unknown".
func (t *memcachedTier) getMulti(mkeys []string) (items map[string]*memcache.Item, failed map[string]bool) {
	byNode := map[*node][]string{}
	failed = map[string]bool{}
	for _, k := range mkeys {
		n, err := t.pick(k)
		if err != nil {
			failed[k] = true
			continue
		}
		byNode[n] = append(byNode[n], k)
	}
	items = make(map[string]*memcache.Item, len(mkeys))
	for n, keys := range byNode {
		var got map[string]*memcache.Item
		err := t.do(n, "get_multi", func() (err error) { got, err = t.client.GetMulti(keys); return err })
		if err != nil {
			for _, k := range keys {
				failed[k] = true
			}
			continue
		}
		for k, it := range got {
			items[k] = it
		}
	}
	return items, failed
}

// add stores value unless the key exists (memcache.ErrNotStored then).
func (t *memcachedTier) add(mkey string, value []byte, exp int32) error {
	n, err := t.pick(mkey)
	if err != nil {
		return err
	}
	it := &memcache.Item{Key: mkey, Value: value, Expiration: exp}
	return t.do(n, "add", func() error { return t.client.Add(it) })
}

// set stores value unconditionally.
func (t *memcachedTier) set(mkey string, value []byte, exp int32) error {
	n, err := t.pick(mkey)
	if err != nil {
		return err
	}
	it := &memcache.Item{Key: mkey, Value: value, Expiration: exp}
	return t.do(n, "set", func() error { return t.client.Set(it) })
}

// cas stores value if the item still has casID. It returns
// memcache.ErrCASConflict when it changed and memcache.ErrCacheMiss when it
// is gone.
func (t *memcachedTier) cas(mkey string, value []byte, exp int32, casID uint64) error {
	n, err := t.pick(mkey)
	if err != nil {
		return err
	}
	it := &memcache.Item{Key: mkey, Value: value, Expiration: exp, CasID: casID}
	return t.do(n, "cas", func() error { return t.client.CompareAndSwap(it) })
}

// delete removes the key; a missing key is not an error.
func (t *memcachedTier) delete(mkey string) error {
	n, err := t.pick(mkey)
	if err != nil {
		return err
	}
	err = t.do(n, "delete", func() error { return t.client.Delete(mkey) })
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return err
}

// expiration converts an absolute expiry to memcached's expiration field:
// relative seconds (rounded up, at least 1) up to 30 days, a Unix time beyond.
func expiration(now, expires time.Time) int32 {
	d := expires.Sub(now)
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	if secs > maxRelativeExpiration {
		return int32(min(expires.Unix()+1, 1<<31-1))
	}
	return int32(secs)
}

// Breaker states of a node.
const (
	breakerClosed int32 = iota // requests flow
	breakerOpen                // requests skip the node; a probe runs in the background
)

// node is one memcached server and its circuit breaker.
type node struct {
	addr     net.Addr
	state    atomic.Int32
	failures atomic.Int32

	mu    sync.Mutex             // guards dirty and flush, and closing the breaker
	dirty map[string]aroundWrite // keys written to the database while unavailable, with the newest write
	flush bool                   // too many dirty keys: flush the node on return

	// suspectUntil (Unix nanoseconds) ends the window after the breaker
	// closed in which the node's copies may be older than the database's.
	suspectUntil atomic.Int64
	// retiredUntil (Unix nanoseconds), set when RemoveServer takes the
	// node out of the ring, ends the window in which its dirty keys are
	// still purged.
	retiredUntil atomic.Int64
}

// suspectWindow is how long a node's copies stay suspect after its breaker
// closes: long enough for every other app server's probe (one every
// BreakerCooldown, each taking up to DialTimeout+Timeout) to close its own
// breaker and purge the keys it wrote through meanwhile.
func (t *memcachedTier) suspectWindow() time.Duration {
	return 2 * (t.cfg.BreakerCooldown + t.cfg.DialTimeout + t.cfg.Timeout)
}

// suspect reports whether n's breaker closed less than suspectWindow ago.
func (n *node) suspect() bool {
	until := n.suspectUntil.Load()
	return until != 0 && time.Now().UnixNano() < until
}

// NodeStats describes one memcached node for Stats.
type NodeStats struct {
	// Addr is the node's address as configured.
	Addr string
	// Open is true while the node's circuit breaker is open: its sessions are
	// read from and written to the database until a probe succeeds.
	Open bool
	// ConsecutiveFailures counts failures since the last success.
	ConsecutiveFailures int
}

func (t *memcachedTier) nodeStats() []NodeStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]NodeStats, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, NodeStats{
			Addr:                n.addr.String(),
			Open:                n.state.Load() != breakerClosed,
			ConsecutiveFailures: int(n.failures.Load()),
		})
	}
	return out
}

// tlsDialer wraps dial's connections in TLS with cfg, handshaking before it
// returns so that a refused certificate is a dial error (it opens the
// breaker like an unreachable node).
func tlsDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := cfg
		if c.ServerName == "" && network != "unix" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				c = cfg.Clone()
				c.ServerName = host
			}
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return tc, nil
	}
}
