// Package ring is a ketama consistent-hashing memcache.ServerSelector. Each
// server owns points on a 32-bit ring in proportion to its weight, and a key
// goes to the owner of the first point at or after the key's hash, so adding
// or removing a server moves about 1/N of the keys (gomemcache's ServerList,
// crc32 mod N, moves about (N-1)/N). Points and key hashes are libketama's:
// point 4i+j of a server is the j-th little-endian uint32 of MD5(addr+"-"+i),
// 40 digests per unit of weight, and a key hashes to the first four bytes of
// MD5(key). With equal weights keys land where other ketama clients put them;
// unequal weights keep 40 digests per unit (libketama scales by share) so that
// adding a server never moves the others' points.
package ring

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
	"sync"
	"sync/atomic"

	"github.com/bradfitz/gomemcache/memcache"
)

const (
	digestsPerWeight = 40
	maxWeight        = 1000 // bounds the continuum: 160 points of 8 bytes per unit
)

// Ring is a ketama continuum. The zero value is an empty ring. Methods are
// safe for concurrent use; PickServer is lock-free and does not allocate.
// Each server has one net.Addr, the same pointer across Add and Remove of
// other servers, whose String and Network do not allocate.
type Ring struct {
	mu   sync.Mutex // serializes Add and Remove
	cont atomic.Pointer[continuum]
}

// continuum is an immutable snapshot: the servers in the order they were
// added, and their points ascending, hashes[i] owned by owners[i].
type continuum struct {
	servers []*server
	hashes  []uint32
	owners  []*server
}

// server is one server and its net.Addr, immutable and shared between
// snapshots. Its Network and String are cached, as in gomemcache's staticAddr.
type server struct {
	name, network, str string // the address as added, which the points hash, and as resolved
	points             []uint32
}

func (s *server) Network() string { return s.network }
func (s *server) String() string  { return s.str }

// PickServer returns the server owning key, or memcache.ErrNoServers when
// the ring is empty.
func (r *Ring) PickServer(key string) (net.Addr, error) {
	c := r.cont.Load()
	if c == nil || len(c.hashes) == 0 {
		return nil, memcache.ErrNoServers
	}
	return c.owners[c.search(keyHash(key))], nil
}

// Each calls f for every server of the snapshot current when it is called,
// in the order they were added, and returns the first error f returns.
func (r *Ring) Each(f func(net.Addr) error) error {
	for _, s := range r.servers() {
		if err := f(s); err != nil {
			return err
		}
	}
	return nil
}

// Add adds the server at addr, "host:port" or a unix socket path containing
// "/", with a weight from 1 to 1000 (0 means 1). It takes over about
// weight/totalWeight of the keys, all from the other servers. The ring hashes
// addr as written, not as resolved: spell it the same way on every instance
// to get the same placement. Add fails, leaving the ring unchanged, if addr
// does not resolve, the weight is out of range, or the server is already in
// the ring under any spelling. No server is contacted.
func (r *Ring) Add(addr string, weight int) error {
	srv, err := newServer(addr, weight) // outside the lock: resolving may be slow
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.servers()
	for _, o := range cur {
		if o.name == srv.name || o.network == srv.network && o.str == srv.str {
			return fmt.Errorf("ring: server %q (%s) is already in the ring as %q", srv.name, srv.str, o.name)
		}
	}
	r.cont.Store(build(append(slices.Clip(cur), srv)))
	return nil
}

// Remove removes a server, by its address as added or as resolved, at run time:
// its keys move to the remaining servers and no other key moves.
func (r *Ring) Remove(addr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.servers()
	i := slices.IndexFunc(cur, func(s *server) bool { return s.name == addr || s.str == addr })
	if i < 0 {
		return fmt.Errorf("ring: server %q is not in the ring", addr)
	}
	r.cont.Store(build(slices.Delete(slices.Clone(cur), i, i+1)))
	return nil
}

func (r *Ring) servers() []*server {
	if c := r.cont.Load(); c != nil {
		return c.servers
	}
	return nil
}

// newServer validates and resolves addr and computes its points.
func newServer(addr string, weight int) (*server, error) {
	w := cmp.Or(weight, 1)
	if addr == "" {
		return nil, errors.New("ring: empty server address")
	} else if w < 0 || w > maxWeight {
		return nil, fmt.Errorf("ring: server %q: weight %d out of range [0, %d]", addr, weight, maxWeight)
	}
	var a net.Addr
	var err error
	if strings.Contains(addr, "/") {
		a, err = net.ResolveUnixAddr("unix", addr)
	} else {
		a, err = net.ResolveTCPAddr("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("ring: server %q: %w", addr, err)
	}
	srv := &server{name: addr, network: a.Network(), str: a.String(), points: make([]uint32, 0, w*digestsPerWeight*4)}
	buf := make([]byte, 0, len(addr)+12)
	for i := range w * digestsPerWeight {
		d := md5.Sum(strconv.AppendInt(append(append(buf[:0], addr...), '-'), int64(i), 10))
		for j := 0; j < md5.Size; j += 4 {
			srv.points = append(srv.points, binary.LittleEndian.Uint32(d[j:]))
		}
	}
	return srv, nil
}

// build sorts the points of servers into a continuum: by hash and, should
// two servers share a point, by name, so that the order of servers does not
// matter.
func build(servers []*server) *continuum {
	type point struct {
		hash uint32
		srv  *server
	}
	var points []point
	for _, s := range servers {
		for _, h := range s.points {
			points = append(points, point{h, s})
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), strings.Compare(a.srv.name, b.srv.name))
	})
	c := &continuum{servers: servers, hashes: make([]uint32, len(points)), owners: make([]*server, len(points))}
	for i, p := range points {
		c.hashes[i], c.owners[i] = p.hash, p.srv
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
