// Package cache is the memcached tier: gomemcache clients with circuit breakers on a ketama ring, TLS, tracing.
package cache

import (
	"cmp"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// ErrUnavailable wraps a network error or timeout, and marks an open circuit breaker or an empty ring.
var ErrUnavailable = errors.New("cache: memcached unavailable")

// Config configures a Cache. The caller applies defaults; New rejects a non-positive duration or threshold.
type Config struct {
	Servers          []string      // "host:port", or a unix socket path containing "/"
	Timeout          time.Duration // deadline of each network read and write, and of a dial
	MaxIdleConns     int           // idle connections kept per node; 0 means gomemcache's default, 2
	BreakerThreshold int           // failures in a row that open a node's breaker
	BreakerCooldown  time.Duration // how long an open breaker waits between probes
	DialContext      dialFunc      // when set, opens the connections instead of a net.Dialer
	TLS              *tls.Config   // when set, TLS to every node (memcached -Z); empty ServerName: the host
	Logger           *slog.Logger  // when set, told when a breaker opens (Warn) and closes (Info)
	// Tracer, when set, must not block; it is called concurrently before op ("get", "get_multi", "add", "set", "cas")
	// on the node at resolved addr, and end once after: nil, a protocol answer or an error wrapping ErrUnavailable.
	Tracer func(ctx context.Context, op, addr string) (end func(err error))
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Cache is the memcached tier; protocol answers (miss, not stored, CAS conflict, SERVER_ERROR, malformed key) come
// as gomemcache reports them. BreakerThreshold network errors or timeouts in a row open a node's breaker: its
// operations fail at once with ErrUnavailable, and a probe pings it every BreakerCooldown until it answers. Safe
// for concurrent use; ctx goes to the Tracer only.
type Cache struct {
	cfg    Config                    // with defaults: Logger, DialContext (wrapped in TLS)
	ring   atomic.Pointer[continuum] // replaced whole under mu
	mu     sync.Mutex                // serializes ring changes, and Close with starting a probe
	stop   context.Context           // canceled by Close: stops the probes
	cancel context.CancelFunc
	probes sync.WaitGroup
	errors atomic.Uint64 // failed operations, those an open breaker refused included
}

// node is one memcached server, with its own client and breaker. epoch counts the times it was seen closing pooled
// connections, as a restart does; tag puts it in the top 16 bits of CAS ids, which restarts renumber; untag checks it.
type node struct {
	name, network, str string // the address as added (the points hash it), and as resolved
	points             []uint32
	client             *memcache.Client
	open               atomic.Bool
	failures           atomic.Int32
	epoch              atomic.Uint32
}

func (n *node) tag(id uint64) uint64           { return id&casMask | uint64(n.epoch.Load()&0xffff)<<48 }
func (n *node) untag(id uint64) (uint64, bool) { return id & casMask, n.tag(id) == id }

const casMask = 1<<48 - 1

// New returns a Cache of cfg.Servers, contacting none; it fails for a bad setting or an unresolvable address.
func New(cfg Config) (*Cache, error) {
	if cfg.Timeout <= 0 || cfg.BreakerThreshold <= 0 || cfg.BreakerCooldown <= 0 {
		return nil, errors.New("cache: Timeout, BreakerThreshold and BreakerCooldown must be positive")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.DialContext == nil {
		cfg.DialContext = (&net.Dialer{Timeout: cfg.Timeout}).DialContext
	}
	if cfg.TLS != nil {
		cfg.DialContext = tlsDialer(cfg.DialContext, cfg.TLS)
		if cfg.TLS.InsecureSkipVerify {
			cfg.Logger.Warn("hybridsession: MemcachedConfig.TLS.InsecureSkipVerify is set: memcached's certificates are not " +
				"verified, so anyone on the network path can read and alter its traffic (docs/security.md)")
		}
	}
	c := &Cache{cfg: cfg}
	c.stop, c.cancel = context.WithCancel(context.Background())
	c.ring.Store(&continuum{})
	for _, s := range cfg.Servers {
		if err := c.AddServer(s, 0); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// do runs op f on n; a failure, a nil n (an empty ring) or an open breaker gives an error wrapping
// ErrUnavailable. Timeouts are not retried: a node that does not answer costs one Timeout.
func (c *Cache) do(ctx context.Context, n *node, op string, f func(*node) error) (err error) {
	if n == nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, memcache.ErrNoServers)
	} else if n.open.Load() {
		c.errors.Add(1)
		return fmt.Errorf("%w: %s: circuit breaker open", ErrUnavailable, n.str)
	}
	if c.cfg.Tracer != nil {
		end := c.cfg.Tracer(ctx, op, n.str)
		defer func() { end(err) }()
	}
	if err = f(n); isAny(err, io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.EPIPE, net.ErrClosed) {
		// The node closed a pooled connection, as a restart does: a new epoch, and f once more on a fresh connection,
		// except a compare-and-swap, whose CAS id belongs to the epoch before: a conflict.
		n.epoch.Add(1)
		_ = n.client.Close()
		if op == "cas" {
			return memcache.ErrCASConflict
		}
		err = f(n)
	}
	// Answers prove the node alive; gomemcache reports some SERVER_ERROR lines as unexpected response lines.
	if err == nil || isAny(err, memcache.ErrCacheMiss, memcache.ErrCASConflict, memcache.ErrNotStored,
		memcache.ErrMalformedKey, memcache.ErrServerError) || strings.Contains(err.Error(), "SERVER_ERROR") {
		if n.failures.Load() != 0 {
			n.failures.Store(0)
		}
		return err
	}
	c.errors.Add(1)
	if int(n.failures.Add(1)) >= c.cfg.BreakerThreshold && n.open.CompareAndSwap(false, true) {
		c.cfg.Logger.Warn("hybridsession: memcached node unreachable; circuit breaker open", "node", n.str, "error", err)
		c.mu.Lock() // orders probes.Add before Close's probes.Wait
		if c.stop.Err() == nil {
			c.probes.Add(1)
			go c.probe(n)
		}
		c.mu.Unlock()
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, n.str, err)
}

func isAny(err error, targets ...error) bool {
	return slices.ContainsFunc(targets, func(t error) bool { return errors.Is(err, t) })
}

// probe pings n every BreakerCooldown while its breaker is open, until it answers, n leaves the ring or Close.
func (c *Cache) probe(n *node) {
	defer c.probes.Done()
	for {
		select {
		case <-c.stop.Done():
			return
		case <-time.After(c.cfg.BreakerCooldown):
		}
		if !slices.Contains(c.ring.Load().servers, n) {
			return
		}
		_ = n.client.Close() // idle connections from before the failure
		if err := n.client.Ping(); err == nil {
			n.epoch.Add(1) // it may have restarted while it was away
			n.failures.Store(0)
			n.open.Store(false)
			c.cfg.Logger.Info("hybridsession: memcached node reachable again; circuit breaker closed", "node", n.str)
			return
		}
	}
}

// Get returns the item stored under key, with its CasID, or nil and no error on a miss.
func (c *Cache) Get(ctx context.Context, key string) (it *memcache.Item, err error) {
	err = c.do(ctx, c.pick(key), "get", func(n *node) (err error) {
		if it, err = n.client.Get(key); it != nil {
			it.CasID = n.tag(it.CasID)
		}
		return err
	})
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, nil
	}
	return it, err
}

// GetMulti returns the items found under keys, one round trip per node. When a node fails, the error wraps
// ErrUnavailable and the others' items are still returned: a key absent is unknown, not missing.
func (c *Cache) GetMulti(ctx context.Context, keys []string) (map[string]*memcache.Item, error) {
	items := make(map[string]*memcache.Item, len(keys))
	byNode := map[*node][]string{} // nil: no node
	for _, k := range keys {
		n := c.pick(k)
		byNode[n] = append(byNode[n], k)
	}
	var errs []error
	for n, ks := range byNode {
		errs = append(errs, c.do(ctx, n, "get_multi", func(n *node) error {
			got, err := n.client.GetMulti(ks)
			for k, it := range got {
				it.CasID = n.tag(it.CasID)
				items[k] = it
			}
			return err
		}))
	}
	return items, errors.Join(errs...)
}

// Add stores value under key unless it exists (memcache.ErrNotStored); exp is memcached's exptime (Expiration).
func (c *Cache) Add(ctx context.Context, key string, value []byte, exp int32) error {
	it := &memcache.Item{Key: key, Value: value, Expiration: exp}
	return c.do(ctx, c.pick(key), "add", func(n *node) error { return n.client.Add(it) })
}

// Set stores value under key; exp is memcached's exptime (see Expiration).
func (c *Cache) Set(ctx context.Context, key string, value []byte, exp int32) error {
	it := &memcache.Item{Key: key, Value: value, Expiration: exp}
	return c.do(ctx, c.pick(key), "set", func(n *node) error { return n.client.Set(it) })
}

// CompareAndSwap stores value under key if the item still has casID (from Get or GetMulti), or returns
// memcache.ErrCASConflict if it changed or the node restarted since, ErrCacheMiss or ErrNotStored if gone.
func (c *Cache) CompareAndSwap(ctx context.Context, key string, value []byte, exp int32, casID uint64) error {
	return c.do(ctx, c.pick(key), "cas", func(n *node) error {
		if id, ok := n.untag(casID); ok {
			return n.client.CompareAndSwap(&memcache.Item{Key: key, Value: value, Expiration: exp, CasID: id})
		}
		return memcache.ErrCASConflict
	})
}

// Nodes maps every node's resolved address, as RemoveServer accepts it, to whether its breaker is open.
func (c *Cache) Nodes() map[string]bool {
	servers := c.ring.Load().servers
	out := make(map[string]bool, len(servers))
	for _, n := range servers {
		out[n.str] = n.open.Load()
	}
	return out
}

// Errors returns how many operations failed since New, on the network or refused by an open breaker.
func (c *Cache) Errors() uint64 { return c.errors.Load() }

// Close stops the probes, waiting up to about twice Timeout for one in progress, and closes idle
// connections. It is idempotent. Do not use the Cache after Close: an open breaker would stay open.
func (c *Cache) Close() {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.probes.Wait()
	for _, n := range c.ring.Load().servers {
		_ = n.client.Close()
	}
}

// Expiration returns memcached's exptime for an item that must live until expires, seen at now: the seconds until
// then, rounded up, up to 30 days; past that (read as a Unix time) expires' Unix time plus one second, at most
// math.MaxInt32. Never 0 ("never expire"): an expiry at or before now gives 1.
func Expiration(now, expires time.Time) int32 {
	d := expires.Sub(now)
	if d > 30*24*time.Hour {
		return int32(min(expires.Unix()+1, math.MaxInt32))
	}
	return int32(max((d+time.Second-1)/time.Second, 1))
}

// tlsDialer wraps dial's connections in TLS; it handshakes at once, so a refused certificate is a dial error.
func tlsDialer(dial dialFunc, cfg *tls.Config) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil && c.ServerName == "" && network != "unix" {
			c.ServerName = host
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return tc, nil
	}
}

// The nodes sit on a ketama continuum: a key goes to the owner of the first point at or after its hash, so adding
// or removing a node moves about 1/N of the keys (crc32 mod N moves (N-1)/N). As in libketama, point 4i+j of a node
// is the j-th little-endian uint32 of MD5(addr+"-"+i), a key hashes to the first four bytes of MD5(key); each unit
// of weight is 40 digests (libketama scales by share), so adding a node never moves keys between the others.
const (
	digestsPerWeight = 40
	maxWeight        = 1000 // bounds the continuum: 160 points of 8 bytes per unit
)

// continuum is an immutable snapshot of the ring: the nodes as added, and their points ascending.
type continuum struct {
	servers, owners []*node // owners[i] owns hashes[i]
	hashes          []uint32
}

// AddServer adds a node, "host:port" or a unix socket path containing "/", of weight 1 to 1000 (0 means 1), hashed
// as written: spell addr alike on every instance. It fails if addr does not resolve or is a node under any spelling.
func (c *Cache) AddServer(addr string, weight int) error {
	n, err := c.newNode(addr, weight) // outside the lock: resolving may be slow
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.ring.Load().servers
	dup := func(o *node) bool { return o.name == addr || o.network == n.network && o.str == n.str }
	if i := slices.IndexFunc(cur, dup); i >= 0 {
		return fmt.Errorf("cache: server %q (%s) is already in the ring as %q", addr, n.str, cur[i].name)
	}
	c.ring.Store(build(append(slices.Clip(cur), n)))
	return nil
}

// RemoveServer removes the node added or resolved as addr and closes its idle connections, or fails if none.
func (c *Cache) RemoveServer(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.ring.Load().servers
	i := slices.IndexFunc(cur, func(n *node) bool { return n.name == addr || n.str == addr })
	if i < 0 {
		return fmt.Errorf("cache: server %q is not in the ring", addr)
	}
	c.ring.Store(build(slices.Delete(slices.Clone(cur), i, i+1)))
	_ = cur[i].client.Close()
	return nil
}

// pick returns the node owning key, or nil when the ring is empty, without a lock or an allocation.
func (c *Cache) pick(key string) *node {
	r := c.ring.Load()
	if len(r.hashes) == 0 {
		return nil
	}
	return r.owners[r.search(keyHash(key))]
}

// newNode resolves addr, so that gomemcache does no lookup, and hashes addr as written into points.
func (c *Cache) newNode(addr string, weight int) (*node, error) {
	w := cmp.Or(weight, 1)
	if addr == "" {
		return nil, errors.New("cache: empty server address")
	} else if w < 0 || w > maxWeight {
		return nil, fmt.Errorf("cache: server %q: weight %d out of range [0, %d]", addr, weight, maxWeight)
	}
	var a net.Addr = &net.UnixAddr{Name: addr, Net: "unix"} // as net.ResolveUnixAddr returns it
	var err error
	if !strings.Contains(addr, "/") {
		a, err = net.ResolveTCPAddr("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: server %q: %w", addr, err)
	}
	n := &node{name: addr, network: a.Network(), str: a.String(), client: memcache.New(a.String())}
	n.client.Timeout, n.client.MaxIdleConns, n.client.DialContext = c.cfg.Timeout, c.cfg.MaxIdleConns, c.cfg.DialContext
	n.points = make([]uint32, 0, w*digestsPerWeight*4)
	for i := range w * digestsPerWeight {
		d := md5.Sum(fmt.Appendf(nil, "%s-%d", addr, i))
		for j := 0; j < md5.Size; j += 4 {
			n.points = append(n.points, binary.LittleEndian.Uint32(d[j:]))
		}
	}
	return n, nil
}

// build sorts the points of servers by hash, then name, so that the order of servers does not matter.
func build(servers []*node) *continuum {
	type point struct {
		hash uint32
		n    *node
	}
	var points []point
	for _, n := range servers {
		for _, h := range n.points {
			points = append(points, point{h, n})
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), strings.Compare(a.n.name, b.n.name))
	})
	c := &continuum{servers: servers, hashes: make([]uint32, len(points)), owners: make([]*node, len(points))}
	for i, p := range points {
		c.hashes[i], c.owners[i] = p.hash, p.n
	}
	return c
}

// search returns the index of the first point at or after h, wrapping around; c must not be empty.
func (c *continuum) search(h uint32) int {
	i, _ := slices.BinarySearch(c.hashes, h)
	return i % len(c.hashes)
}

// keyHash is libketama's key hash; the stack buffer keeps it from allocating for keys up to 256 bytes.
func keyHash(key string) uint32 {
	var buf [256]byte
	d := md5.Sum(append(buf[:0], key...))
	return binary.LittleEndian.Uint32(d[:4])
}
