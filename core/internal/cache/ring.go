package cache

import (
	"cmp"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"
)

// The nodes sit on a ketama continuum: each owns points on a 32-bit ring in
// proportion to its weight, and a key goes to the owner of the first point at
// or after the key's hash, so adding or removing a node moves about 1/N of the
// keys (gomemcache's ServerList, crc32 mod N, moves about (N-1)/N). Points and
// key hashes are libketama's: point 4i+j of a node is the j-th little-endian
// uint32 of MD5(addr+"-"+i), 40 digests per unit of weight, and a key hashes
// to the first four bytes of MD5(key). With equal weights keys land where
// other ketama clients put them; unequal weights keep 40 digests per unit
// (libketama scales by share) so that adding a node never moves the others'.
const (
	digestsPerWeight = 40
	maxWeight        = 1000 // bounds the continuum: 160 points of 8 bytes per unit
)

// continuum is an immutable snapshot of the ring: the nodes in the order they
// were added, and their points ascending, hashes[i] owned by owners[i].
type continuum struct {
	servers []*node
	hashes  []uint32
	owners  []*node
}

// AddServer adds a node, "host:port" or a unix socket path containing "/",
// with a weight from 1 to 1000 (0 means 1): it takes over about
// weight/totalWeight of the keys, all from the other nodes. The ring hashes
// addr as written: spell it alike on every instance. It fails if addr does
// not resolve or is already a node under any spelling.
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

// RemoveServer removes a node, by its address as added or resolved, and
// closes its idle connections; only its keys move. It fails if there is no
// such node.
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

// pick returns the node owning key, or nil when the ring is empty, without
// a lock or an allocation.
func (c *Cache) pick(key string) *node {
	r := c.ring.Load()
	if len(r.hashes) == 0 {
		return nil
	}
	return r.owners[r.search(keyHash(key))]
}

// newNode resolves addr, computes its points and gives it a client on the
// resolved address (so gomemcache does no lookup). The ring hashes addr as
// written, not as resolved.
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

// build sorts the points of servers into a continuum: by hash and, should
// two nodes share a point, by name, so that the order of servers does not
// matter.
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

// search returns the index of the first point at or after h, wrapping
// around past the last one. c must not be empty.
func (c *continuum) search(h uint32) int {
	i, _ := slices.BinarySearch(c.hashes, h)
	return i % len(c.hashes)
}

// keyHash is libketama's key hash: the first four bytes of MD5(key),
// little-endian. The key is copied to a stack buffer so that hashing does
// not allocate (keys longer than 256 bytes do).
func keyHash(key string) uint32 {
	var buf [256]byte
	d := md5.Sum(append(buf[:0], key...))
	return binary.LittleEndian.Uint32(d[:4])
}
