// Package ring is a ketama consistent-hashing memcache.ServerSelector. Each
// server owns points on a 32-bit ring in proportion to its weight, and a key
// goes to the owner of the first point at or after the key's hash, so adding
// or removing a server moves about 1/N of the keys (gomemcache's ServerList,
// crc32 mod N, moves about (N-1)/N). Points and key hashes are libketama's:
// point i*4+j of a server is the j-th little-endian uint32 of
// MD5(addr + "-" + i), 40 digests per unit of weight, and a key hashes to the
// first four bytes of MD5(key). With equal weights keys land where other
// ketama clients put them; unequal weights keep 40 digests per unit (where
// libketama scales by share) so that adding a server never moves others' points.
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
	pointsPerDigest  = md5.Size / 4
	maxWeight        = 1000 // bounds the continuum: 160 points of 8 bytes per unit
)

// Server is one memcached server of a Ring.
type Server struct {
	// Addr is "host:port" for TCP, or a path containing "/" for a unix
	// socket, as for gomemcache's ServerList. The string as written, not the
	// resolved address, is what the ring hashes: spell it the same way on
	// every application instance to get the same placement.
	Addr string
	// Weight is the server's relative share of the keys, from 1 to 1000.
	// Optional. Default (0): 1.
	Weight int
}

// Ring is a ketama continuum, a memcache.ServerSelector. The zero value is an
// empty ring. Methods are safe for concurrent use; PickServer is lock-free
// and does not allocate. Each server has one net.Addr pointer, stable across
// Add and Remove of other servers, whose String and Network do not allocate.
type Ring struct {
	mu   sync.Mutex // serializes Add and Remove
	cont atomic.Pointer[continuum]
}

// server is one server of a continuum: immutable, shared between snapshots.
// name is Server.Addr as given, which the points hash.
type server struct {
	name   string
	addr   *addr
	points []uint32
}

// continuum is one immutable snapshot of the ring.
type continuum struct {
	servers []*server // in the order they were added
	hashes  []uint32  // the points, ascending
	owners  []*addr   // owners[i] owns hashes[i]
}

// addr caches the Network and String of a resolved address, as gomemcache's
// staticAddr does, so that calling them does not allocate.
type addr struct{ network, str string }

func (a *addr) Network() string { return a.network }
func (a *addr) String() string  { return a.str }

// New returns a ring of the given servers, or an error if an address does
// not resolve (net.ResolveTCPAddr, or net.ResolveUnixAddr for a path with
// "/"), a weight is out of range, or a server is listed twice (under any
// spelling of its address). No server is contacted.
func New(servers ...Server) (*Ring, error) {
	r := &Ring{}
	for _, s := range servers {
		if err := r.Add(s); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// PickServer returns the server owning key, or memcache.ErrNoServers when
// the ring is empty.
func (r *Ring) PickServer(key string) (net.Addr, error) {
	c := r.cont.Load()
	if c == nil || len(c.servers) == 0 {
		return nil, memcache.ErrNoServers
	}
	if len(c.servers) == 1 {
		return c.owners[0], nil
	}
	return c.owners[c.search(keyHash(key))], nil
}

// Each calls f for every server of the snapshot current when it is called,
// in the order they were added, and returns the first error f returns.
func (r *Ring) Each(f func(net.Addr) error) error {
	for _, s := range r.snapshot() {
		if err := f(s.addr); err != nil {
			return err
		}
	}
	return nil
}

// Servers returns the Addr strings of the servers, in the order they were
// added.
func (r *Ring) Servers() []string {
	var names []string
	for _, s := range r.snapshot() {
		names = append(names, s.name)
	}
	return names
}

// Add adds a server at run time. It takes over about weight/totalWeight of
// the keys, all from the other servers; no other key moves. Add fails,
// leaving the ring unchanged, for the reasons New does.
func (r *Ring) Add(s Server) error {
	srv, err := newServer(s) // resolve outside the lock: DNS may be slow
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snapshot()
	if err := checkDuplicate(cur, srv); err != nil {
		return err
	}
	r.cont.Store(build(append(slices.Clip(cur), srv)))
	return nil
}

// Remove removes a server at run time: its keys move to the remaining
// servers and no other key moves. addr is the server's Addr or its resolved
// address (net.Addr.String); Remove fails if no server has it.
func (r *Ring) Remove(addr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snapshot()
	i := slices.IndexFunc(cur, func(s *server) bool { return s.name == addr || s.addr.str == addr })
	if i < 0 {
		return fmt.Errorf("ring: server %q is not in the ring", addr)
	}
	r.cont.Store(build(slices.Delete(slices.Clone(cur), i, i+1)))
	return nil
}

func (r *Ring) snapshot() []*server {
	if c := r.cont.Load(); c != nil {
		return c.servers
	}
	return nil
}

// newServer validates and resolves s and computes its points.
func newServer(s Server) (*server, error) {
	if s.Addr == "" {
		return nil, errors.New("ring: empty server address")
	}
	w := cmp.Or(s.Weight, 1)
	if w < 0 || w > maxWeight {
		return nil, fmt.Errorf("ring: server %q: weight %d out of range [0, %d]", s.Addr, s.Weight, maxWeight)
	}
	var resolved net.Addr
	var err error
	if strings.Contains(s.Addr, "/") {
		resolved, err = net.ResolveUnixAddr("unix", s.Addr)
	} else {
		resolved, err = net.ResolveTCPAddr("tcp", s.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("ring: server %q: %w", s.Addr, err)
	}
	srv := &server{
		name:   s.Addr,
		addr:   &addr{network: resolved.Network(), str: resolved.String()},
		points: make([]uint32, 0, w*digestsPerWeight*pointsPerDigest),
	}
	buf := make([]byte, 0, len(s.Addr)+12)
	for i := range w * digestsPerWeight {
		buf = strconv.AppendInt(append(append(buf[:0], s.Addr...), '-'), int64(i), 10)
		d := md5.Sum(buf)
		for j := range pointsPerDigest {
			srv.points = append(srv.points, binary.LittleEndian.Uint32(d[j*4:]))
		}
	}
	return srv, nil
}

// checkDuplicate returns an error if srv is already in list, under the same
// name or the same resolved address.
func checkDuplicate(list []*server, srv *server) error {
	for _, s := range list {
		if s.name == srv.name || *s.addr == *srv.addr {
			return fmt.Errorf("ring: server %q (%s) is already in the ring as %q", srv.name, srv.addr.str, s.name)
		}
	}
	return nil
}

// build sorts the points of servers into a new continuum. Points are
// ordered by hash and, should two servers share a point, by server name, so
// that the result does not depend on the order of servers.
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
	c := &continuum{servers: servers, hashes: make([]uint32, len(points)), owners: make([]*addr, len(points))}
	for i, p := range points {
		c.hashes[i], c.owners[i] = p.hash, p.srv.addr
	}
	return c
}

// search returns the index of the first point at or after h, wrapping
// around to the first point past the last one. c must not be empty.
func (c *continuum) search(h uint32) int {
	i, _ := slices.BinarySearch(c.hashes, h)
	return i % len(c.hashes)
}

// keyHash is libketama's key hash: the first four bytes of MD5(key),
// little-endian. Keys up to 256 bytes are copied to a stack buffer so that
// hashing does not allocate.
func keyHash(key string) uint32 {
	var buf [256]byte
	d := md5.Sum(append(buf[:0], key...))
	return binary.LittleEndian.Uint32(d[:4])
}
