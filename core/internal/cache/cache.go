// Package cache is the memcached tier: a gomemcache client and a circuit breaker per node, nodes on a
// ketama ring, TLS, tracing and counters.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// ErrUnavailable marks a failed operation: a network error or timeout (the cause is wrapped too), an open
// circuit breaker, or no server on the ring.
var ErrUnavailable = errors.New("cache: memcached unavailable")

// Config configures a Cache. The caller applies defaults; New rejects a zero or negative Timeout,
// DialTimeout, BreakerThreshold or BreakerCooldown.
type Config struct {
	Servers          []string      // "host:port", or a unix socket path containing "/"
	Timeout          time.Duration // deadline of each network read and write, and of a dial
	DialTimeout      time.Duration // bounds connecting to a node when DialContext is nil
	MaxIdleConns     int           // idle connections kept per node; 0 means gomemcache's default, 2
	BreakerThreshold int           // failures in a row that open a node's breaker
	BreakerCooldown  time.Duration // how long an open breaker waits between probes
	DialContext      dialFunc      // when set, opens the connections instead of a net.Dialer
	TLS              *tls.Config   // when set, TLS to every node (memcached -Z); empty ServerName: the host
	Tracer           Tracer        // when set, called before every operation sent to a node
	Logger           *slog.Logger  // when set, told when a breaker opens (Warn) and closes (Info)
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Tracer is called, concurrently and without blocking, with the caller's ctx before op ("get", "get_multi",
// "add", "set", "cas" or "delete") on the node at addr (resolved). end is called once with the result: nil,
// a protocol answer such as memcache.ErrCacheMiss, or an error wrapping ErrUnavailable.
type Tracer = func(ctx context.Context, op, addr string) (end func(err error))

// NodeStats describes one node: its resolved address, as RemoveServer accepts it, and whether its circuit
// breaker is open.
type NodeStats struct {
	Addr string
	Open bool
}

// Counters count since New the operations that failed on the network or timed out, and those refused by an
// open breaker.
type Counters struct{ Errors, ShortCircuits uint64 }

// Cache is the memcached tier. Protocol answers (miss, not stored, CAS conflict, a SERVER_ERROR line, a
// malformed key) are returned as gomemcache reports them and prove the node alive. Network errors and
// timeouts are failures: after BreakerThreshold in a row a node's breaker opens, its operations fail at once
// with ErrUnavailable, and a background probe pings it every BreakerCooldown until it answers. Methods are
// safe for concurrent use; ctx is handed to the Tracer only (gomemcache cannot be cancelled).
type Cache struct {
	cfg                   Config                    // with defaults: Logger, DialContext (wrapped in TLS)
	ring                  atomic.Pointer[continuum] // replaced whole under mu
	mu                    sync.Mutex                // serializes ring changes; guards closed
	closed                bool
	stop                  chan struct{} // closed by Close: stops the probes
	probes                sync.WaitGroup
	errors, shortCircuits atomic.Uint64
}

// node is one memcached server, with its own client and breaker. epoch counts the times the node was seen
// closing pooled connections, as a restart does; it tags the node's CAS ids, which a restart renumbers.
type node struct {
	name, network, str string // the address as added (the points hash it), and as resolved
	points             []uint32
	client             *memcache.Client
	open               atomic.Bool
	failures           atomic.Int32
	epoch              atomic.Uint32
}

func (n *node) Network() string { return n.network }
func (n *node) String() string  { return n.str }

const casMask = 1<<48 - 1 // memcached's part of a tagged CAS id; the epoch takes the top 16 bits

func (n *node) tag(id uint64) uint64 { return id&casMask | uint64(n.epoch.Load()&0xffff)<<48 }

// untag returns memcached's CAS id, and false when it was read in another epoch of the node.
func (n *node) untag(id uint64) (uint64, bool) {
	return id & casMask, id>>48 == uint64(n.epoch.Load()&0xffff)
}

// New returns a Cache of cfg.Servers. It fails if a setting is out of range or a server address does not
// resolve; no server is contacted.
func New(cfg Config) (*Cache, error) {
	if cfg.Timeout <= 0 || cfg.DialTimeout <= 0 || cfg.BreakerThreshold <= 0 || cfg.BreakerCooldown <= 0 {
		return nil, errors.New("cache: Timeout, DialTimeout, BreakerThreshold and BreakerCooldown must be positive")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.DialContext == nil {
		cfg.DialContext = (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext
	}
	if cfg.TLS != nil {
		cfg.DialContext = tlsDialer(cfg.DialContext, cfg.TLS)
	}
	c := &Cache{cfg: cfg, stop: make(chan struct{})}
	c.ring.Store(&continuum{})
	for _, s := range cfg.Servers {
		if err := c.AddServer(s, 0); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// do runs op f on n; a failure, a nil n (an empty ring) or an open breaker gives an error wrapping
// ErrUnavailable. When f fails on a connection the node closed (as after a memcached restart), the node's
// epoch moves on, its idle connections are dropped and f runs once more, except a compare-and-swap, whose
// CAS id belongs to the epoch before: a conflict. Timeouts are not retried: a dead node costs one Timeout.
func (c *Cache) do(ctx context.Context, n *node, op string, f func(*node) error) (err error) {
	if n == nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, memcache.ErrNoServers)
	} else if n.open.Load() {
		c.shortCircuits.Add(1)
		return fmt.Errorf("%w: %s: circuit breaker open", ErrUnavailable, n)
	}
	if c.cfg.Tracer != nil {
		end := c.cfg.Tracer(ctx, op, n.str)
		defer func() { end(err) }()
	}
	if err = f(n); staleConn(err) {
		n.epoch.Add(1)
		_ = n.client.Close()
		if op == "cas" {
			return memcache.ErrCASConflict
		}
		err = f(n)
	}
	if err == nil || isProtocolAnswer(err) {
		if n.failures.Load() != 0 {
			n.failures.Store(0)
		}
		return err
	}
	c.errors.Add(1)
	if int(n.failures.Add(1)) >= c.cfg.BreakerThreshold && n.open.CompareAndSwap(false, true) {
		c.cfg.Logger.Warn("hybridsession: memcached node unreachable; circuit breaker open", "node", n.str, "error", err)
		c.mu.Lock() // orders probes.Add before Close's probes.Wait
		if !c.closed {
			c.probes.Add(1)
			go c.probe(n)
		}
		c.mu.Unlock()
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, n, err)
}

// isProtocolAnswer reports whether err is an answer from the node, not a failure to reach it; gomemcache
// reports some SERVER_ERROR lines (out of memory, too large) as an unexpected response line.
func isProtocolAnswer(err error) bool {
	return errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrCASConflict) ||
		errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrMalformedKey) ||
		errors.Is(err, memcache.ErrServerError) || strings.Contains(err.Error(), "SERVER_ERROR")
}

// staleConn reports whether err is a connection the peer closed, not a timeout or a refused dial.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// probe runs while n's breaker is open: every BreakerCooldown it pings n on a fresh connection and closes
// the breaker when it answers. It stops on Close and when n leaves the ring.
func (c *Cache) probe(n *node) {
	defer c.probes.Done()
	for {
		select {
		case <-c.stop:
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
func (c *Cache) Get(ctx context.Context, key string) (*memcache.Item, error) {
	var it *memcache.Item
	err := c.do(ctx, c.pick(key), "get", func(n *node) (err error) {
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

// GetMulti returns the items found under keys, in one round trip per node owning some of them. When a node
// fails or its breaker is open, the error wraps ErrUnavailable and the items of the nodes that answered are
// still returned: a key absent from the map is then unknown rather than missing.
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

// Add stores value under key unless the key exists, when it returns memcache.ErrNotStored. exp is
// memcached's exptime (see Expiration).
func (c *Cache) Add(ctx context.Context, key string, value []byte, exp int32) error {
	return c.do(ctx, c.pick(key), "add", func(n *node) error {
		return n.client.Add(&memcache.Item{Key: key, Value: value, Expiration: exp})
	})
}

// Set stores value under key. exp is memcached's exptime (see Expiration).
func (c *Cache) Set(ctx context.Context, key string, value []byte, exp int32) error {
	return c.do(ctx, c.pick(key), "set", func(n *node) error {
		return n.client.Set(&memcache.Item{Key: key, Value: value, Expiration: exp})
	})
}

// CompareAndSwap stores value under key if the item still has casID (from Get or GetMulti), or returns
// memcache.ErrCASConflict if it changed or the node restarted since, memcache.ErrCacheMiss or ErrNotStored
// if it is gone. exp is memcached's exptime (see Expiration).
func (c *Cache) CompareAndSwap(ctx context.Context, key string, value []byte, exp int32, casID uint64) error {
	return c.do(ctx, c.pick(key), "cas", func(n *node) error {
		id, ok := n.untag(casID)
		if !ok {
			return memcache.ErrCASConflict
		}
		return n.client.CompareAndSwap(&memcache.Item{Key: key, Value: value, Expiration: exp, CasID: id})
	})
}

// Delete removes key; a key that is not there is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	err := c.do(ctx, c.pick(key), "delete", func(n *node) error { return n.client.Delete(key) })
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return err
}

// Nodes returns the state of every node, sorted by Addr.
func (c *Cache) Nodes() []NodeStats {
	var out []NodeStats
	for _, n := range c.ring.Load().servers {
		out = append(out, NodeStats{n.str, n.open.Load()})
	}
	slices.SortFunc(out, func(a, b NodeStats) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// Counters returns the cumulative counters.
func (c *Cache) Counters() Counters { return Counters{c.errors.Load(), c.shortCircuits.Load()} }

// Close stops the probes, waiting up to about DialTimeout plus Timeout for one in progress, and closes idle
// connections. It is idempotent. Do not use the Cache after Close: an open breaker would stay open.
func (c *Cache) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.stop)
	}
	c.mu.Unlock()
	c.probes.Wait()
	for _, n := range c.ring.Load().servers {
		_ = n.client.Close()
	}
}

// Expiration returns memcached's exptime for an item that must live until expires, seen at now: the seconds
// until then, rounded up, when that is at most 30 days, or else (memcached reads a larger exptime as a Unix
// time) the Unix time of expires plus one second, at most math.MaxInt32. It is never 0, which memcached
// reads as "never expire": an expiry at or before now gives 1, which expires within a second.
func Expiration(now, expires time.Time) int32 {
	d := expires.Sub(now)
	if d > 30*24*time.Hour {
		return int32(min(expires.Unix()+1, math.MaxInt32))
	}
	return int32(max((d+time.Second-1)/time.Second, 1))
}

// tlsDialer wraps dial's connections in TLS, handshaking before it returns so that a refused certificate
// counts toward the breaker as a dial error.
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

// The nodes sit on a ketama continuum: each owns points on a 32-bit ring in proportion to its weight, and a
// key goes to the owner of the first point at or after the key's hash, so adding or removing a node moves
// about 1/N of the keys (gomemcache's crc32 mod N moves (N-1)/N). Points and key hashes are libketama's:
// point 4i+j of a node is the j-th little-endian uint32 of MD5(addr+"-"+i), 40 digests per unit of weight,
// and a key hashes to the first four bytes of MD5(key). With equal weights keys land where other ketama
// clients put them; unequal weights keep 40 digests per unit (libketama scales by share) so that adding a
// node never moves the others' keys.
const (
	digestsPerWeight = 40
	maxWeight        = 1000 // bounds the continuum: 160 points of 8 bytes per unit
)

// continuum is an immutable snapshot of the ring: the nodes in the order they were added, and their points
// ascending, hashes[i] owned by owners[i].
type continuum struct {
	servers []*node
	hashes  []uint32
	owners  []*node
}

// AddServer adds a node, "host:port" or a unix socket path containing "/", with a weight from 1 to 1000
// (0 means 1): it takes over about weight/totalWeight of the keys, all from the other nodes. The ring hashes
// addr as written: spell it alike on every instance. It fails if addr does not resolve or is already a node
// under any spelling.
func (c *Cache) AddServer(addr string, weight int) error {
	n, err := c.newNode(addr, weight) // outside the lock: resolving may be slow
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.ring.Load().servers
	for _, o := range cur {
		if o.name == n.name || o.network == n.network && o.str == n.str {
			return fmt.Errorf("cache: server %q (%s) is already in the ring as %q", n.name, n.str, o.name)
		}
	}
	c.ring.Store(build(append(slices.Clip(cur), n)))
	return nil
}

// RemoveServer removes a node, by its address as added or resolved, and closes its idle connections; only
// its keys move. It fails if there is no such node.
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

// newNode resolves addr and gives the node a client on the resolved address (so gomemcache does no lookup)
// and its points, which hash addr as written.
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
	buf := make([]byte, 0, len(addr)+12)
	for i := range w * digestsPerWeight {
		d := md5.Sum(strconv.AppendInt(append(append(buf[:0], addr...), '-'), int64(i), 10))
		for j := 0; j < md5.Size; j += 4 {
			n.points = append(n.points, binary.LittleEndian.Uint32(d[j:]))
		}
	}
	return n, nil
}

// build sorts the points of servers into a continuum: by hash and, should two nodes share a point, by name,
// so that the order of servers does not matter.
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

// search returns the index of the first point at or after h, wrapping around past the last one. c must not
// be empty.
func (c *continuum) search(h uint32) int {
	i, _ := slices.BinarySearch(c.hashes, h)
	return i % len(c.hashes)
}

// keyHash is libketama's key hash: the first four bytes of MD5(key), little-endian. The stack buffer keeps
// it from allocating for keys up to 256 bytes.
func keyHash(key string) uint32 {
	var buf [256]byte
	d := md5.Sum(append(buf[:0], key...))
	return binary.LittleEndian.Uint32(d[:4])
}
