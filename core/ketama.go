package core

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

// Continuum geometry, as in libketama: every unit of weight contributes 40
// MD5 digests of "addr-i" (i = 0, 1, ...), and each 16-byte digest yields
// four points (four little-endian uint32s), so 160 points per unit of weight.
const (
	ketamaDigestsPerWeight = 40
	ketamaPointsPerDigest  = md5.Size / 4
	ketamaPointsPerWeight  = ketamaDigestsPerWeight * ketamaPointsPerDigest

	// MaxKetamaWeight bounds WeightedServer.Weight, which bounds the size of
	// the continuum (160 points, 8 bytes each, per unit of weight).
	MaxKetamaWeight = 1000
)

// WeightedServer is one memcached server of a Ketama continuum.
type WeightedServer struct {
	// Addr is "host:port" for TCP, or a path containing "/" for a unix
	// socket, as for gomemcache's ServerList. The string as written here,
	// not the resolved address, is what the continuum hashes, so use the
	// same spelling everywhere (on every application instance) to get the
	// same placement.
	Addr string
	// Weight is the server's relative share of the keys. Optional: 0 means
	// 1. Must be between 0 and MaxKetamaWeight.
	Weight int
}

// Ketama is a consistent-hashing memcache.ServerSelector: a ketama
// continuum, the ring that libketama and the clients compatible with it use.
// Each server owns points on a 32-bit ring in proportion to its weight; a
// key goes to the server owning the first point at or after the key's hash,
// wrapping around past the last point. Adding or removing a server therefore
// moves only about 1/N of the keys (those the new server takes over, or those
// the removed server held), where gomemcache's ServerList (crc32 mod N)
// moves about (N-1)/N of them.
//
// Placement of the points is libketama's: point i*4+j of a server is the
// j-th little-endian uint32 of MD5(addr + "-" + i), for 40 digests per unit
// of weight. With equal weights the ring is libketama's (libketama computes
// the per-server digest count from the weight's share of the total, which
// is 40 for equal weights; with unequal weights it differs, and this type
// keeps 40 per unit of weight so that adding a server never moves the
// points of the others). Keys are hashed as libketama does too: the first
// four bytes of MD5(key), little-endian. MD5 costs about 100 ns for a
// session key where FNV-1a would cost about 20 ns, which is negligible next
// to a memcached round trip, and it keeps key placement identical to other
// ketama clients for the same server strings.
//
// PickServer is lock-free and does not allocate (for keys up to 250 bytes,
// memcached's limit): it reads an immutable snapshot through an atomic
// pointer. Add and Remove build a new snapshot and publish it; they are
// serialized by a mutex. The net.Addr values handed out are stable
// pointers (one per server, kept across Add and Remove of other servers) and
// their String and Network methods return cached strings without
// allocating.
//
// The zero value is an empty continuum, ready for Add. All methods are safe
// for concurrent use.
type Ketama struct {
	mu   sync.Mutex // serializes Add and Remove
	cont atomic.Pointer[ketamaContinuum]
}

// ketamaServer is one server of a continuum. It is immutable once built and
// shared between the continuums that contain it.
type ketamaServer struct {
	name   string      // WeightedServer.Addr as given: hashed for the points
	addr   *ketamaAddr // resolved address
	weight int
	points []uint32 // this server's points, unsorted
}

// ketamaContinuum is one immutable snapshot of the ring.
type ketamaContinuum struct {
	servers []*ketamaServer // in the order they were added
	hashes  []uint32        // the points, ascending
	owners  []*ketamaAddr   // owners[i] owns hashes[i]
}

// ketamaAddr caches the Network and String values of a resolved address,
// like gomemcache's staticAddr, so that callers (gomemcache keys its idle
// connection pool by Addr.String()) do not allocate.
type ketamaAddr struct {
	network, str string
}

func (a *ketamaAddr) Network() string { return a.network }
func (a *ketamaAddr) String() string  { return a.str }

// NewKetama returns a continuum of the given servers. It fails, and returns
// no continuum, if an address does not resolve (as gomemcache's
// ServerList.SetServers: "host:port" with net.ResolveTCPAddr, a path
// containing "/" with net.ResolveUnixAddr), if a weight is out of range, or
// if a server is listed twice. No server is contacted. With no servers the
// continuum is empty and PickServer returns memcache.ErrNoServers until a
// server is added.
func NewKetama(servers ...WeightedServer) (*Ketama, error) {
	list := make([]*ketamaServer, 0, len(servers))
	for _, s := range servers {
		srv, err := newKetamaServer(s)
		if err != nil {
			return nil, err
		}
		if err := checkKetamaDuplicate(list, srv); err != nil {
			return nil, err
		}
		list = append(list, srv)
	}
	k := &Ketama{}
	k.cont.Store(buildKetamaContinuum(list))
	return k, nil
}

// PickServer returns the server owning key, or memcache.ErrNoServers when
// the continuum is empty. It implements memcache.ServerSelector.
func (k *Ketama) PickServer(key string) (net.Addr, error) {
	c := k.cont.Load()
	if c == nil || len(c.servers) == 0 {
		return nil, memcache.ErrNoServers
	}
	if len(c.servers) == 1 {
		return c.owners[0], nil
	}
	return c.owners[c.search(ketamaKeyHash(key))], nil
}

// Each calls f for every server, in the order they were added, and stops
// at the first error, which it returns. It implements
// memcache.ServerSelector. It iterates over the snapshot current when it
// was called.
func (k *Ketama) Each(f func(net.Addr) error) error {
	c := k.cont.Load()
	if c == nil {
		return nil
	}
	for _, s := range c.servers {
		if err := f(s.addr); err != nil {
			return err
		}
	}
	return nil
}

// Add adds a server to the continuum at run time. The new server takes over
// about weight/totalWeight of the keys, all from the other servers; no other
// key moves. Add fails, leaving the continuum unchanged, if the address
// does not resolve, the weight is out of range, or the server is already in
// the continuum (the same Addr string, or another spelling that resolves to
// the same address).
func (k *Ketama) Add(s WeightedServer) error {
	srv, err := newKetamaServer(s) // resolve outside the lock: DNS may be slow
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var cur []*ketamaServer
	if c := k.cont.Load(); c != nil {
		cur = c.servers
	}
	if err := checkKetamaDuplicate(cur, srv); err != nil {
		return err
	}
	list := make([]*ketamaServer, 0, len(cur)+1)
	list = append(append(list, cur...), srv)
	k.cont.Store(buildKetamaContinuum(list))
	return nil
}

// Remove removes a server from the continuum at run time: its keys move to
// the remaining servers and no other key moves. addr is the Addr string the
// server was added with; the resolved address (as returned by
// net.Addr.String) is accepted too. Remove returns an error if no such
// server is in the continuum.
func (k *Ketama) Remove(addr string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var cur []*ketamaServer
	if c := k.cont.Load(); c != nil {
		cur = c.servers
	}
	i := slices.IndexFunc(cur, func(s *ketamaServer) bool { return s.name == addr })
	if i < 0 {
		i = slices.IndexFunc(cur, func(s *ketamaServer) bool { return s.addr.str == addr })
	}
	if i < 0 {
		return fmt.Errorf("core: ketama: server %q is not in the continuum", addr)
	}
	list := make([]*ketamaServer, 0, len(cur)-1)
	list = append(append(list, cur[:i]...), cur[i+1:]...)
	k.cont.Store(buildKetamaContinuum(list))
	return nil
}

// clone returns a new continuum of the same servers and weights.
func (k *Ketama) clone() (*Ketama, error) {
	var ws []WeightedServer
	if c := k.cont.Load(); c != nil {
		for _, s := range c.servers {
			ws = append(ws, WeightedServer{Addr: s.name, Weight: s.weight})
		}
	}
	return NewKetama(ws...)
}

// Servers returns the Addr strings of the servers, in the order they were
// added.
func (k *Ketama) Servers() []string {
	c := k.cont.Load()
	if c == nil {
		return nil
	}
	names := make([]string, len(c.servers))
	for i, s := range c.servers {
		names[i] = s.name
	}
	return names
}

// newKetamaServer validates and resolves s and computes its points.
func newKetamaServer(s WeightedServer) (*ketamaServer, error) {
	if s.Addr == "" {
		return nil, errors.New("core: ketama: empty server address")
	}
	w := s.Weight
	if w == 0 {
		w = 1
	}
	if w < 0 || w > MaxKetamaWeight {
		return nil, fmt.Errorf("core: ketama: server %q: weight %d out of range [0, %d]", s.Addr, s.Weight, MaxKetamaWeight)
	}
	var resolved net.Addr
	if strings.Contains(s.Addr, "/") {
		a, err := net.ResolveUnixAddr("unix", s.Addr)
		if err != nil {
			return nil, fmt.Errorf("core: ketama: server %q: %w", s.Addr, err)
		}
		resolved = a
	} else {
		a, err := net.ResolveTCPAddr("tcp", s.Addr)
		if err != nil {
			return nil, fmt.Errorf("core: ketama: server %q: %w", s.Addr, err)
		}
		resolved = a
	}
	srv := &ketamaServer{
		name:   s.Addr,
		addr:   &ketamaAddr{network: resolved.Network(), str: resolved.String()},
		weight: w,
		points: make([]uint32, 0, w*ketamaPointsPerWeight),
	}
	buf := make([]byte, 0, len(s.Addr)+12)
	for i := 0; i < w*ketamaDigestsPerWeight; i++ {
		buf = append(buf[:0], s.Addr...)
		buf = append(buf, '-')
		buf = strconv.AppendInt(buf, int64(i), 10)
		d := md5.Sum(buf)
		for j := 0; j < ketamaPointsPerDigest; j++ {
			srv.points = append(srv.points, binary.LittleEndian.Uint32(d[j*4:]))
		}
	}
	return srv, nil
}

// checkKetamaDuplicate returns an error if srv is already in list, under the
// same name or the same resolved address.
func checkKetamaDuplicate(list []*ketamaServer, srv *ketamaServer) error {
	for _, s := range list {
		if s.name == srv.name {
			return fmt.Errorf("core: ketama: server %q is already in the continuum", srv.name)
		}
		if *s.addr == *srv.addr {
			return fmt.Errorf("core: ketama: server %q resolves to %s, as %q already in the continuum",
				srv.name, srv.addr.str, s.name)
		}
	}
	return nil
}

// buildKetamaContinuum sorts the points of servers into a new continuum.
// Points are ordered by hash and, in the unlikely event that two servers
// share a point, by server name, so that the result does not depend on the
// order of servers.
func buildKetamaContinuum(servers []*ketamaServer) *ketamaContinuum {
	type point struct {
		hash uint32
		srv  *ketamaServer
	}
	n := 0
	for _, s := range servers {
		n += len(s.points)
	}
	points := make([]point, 0, n)
	for _, s := range servers {
		for _, h := range s.points {
			points = append(points, point{h, s})
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return strings.Compare(a.srv.name, b.srv.name)
	})
	c := &ketamaContinuum{
		servers: servers,
		hashes:  make([]uint32, n),
		owners:  make([]*ketamaAddr, n),
	}
	for i, p := range points {
		c.hashes[i] = p.hash
		c.owners[i] = p.srv.addr
	}
	return c
}

// search returns the index of the first point at or after h, wrapping
// around to the first point when h is past the last one. The continuum must
// not be empty.
func (c *ketamaContinuum) search(h uint32) int {
	lo, hi := 0, len(c.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(c.hashes) {
		return 0
	}
	return lo
}

// ketamaKeyHash is libketama's key hash: the first four bytes of the key's
// MD5, little-endian. Keys up to 250 bytes (memcached's limit, which
// gomemcache checks before calling PickServer) are copied to a stack buffer
// so that hashing does not allocate.
func ketamaKeyHash(key string) uint32 {
	var d [md5.Size]byte
	var buf [256]byte
	if len(key) <= len(buf) {
		n := copy(buf[:], key)
		d = md5.Sum(buf[:n])
	} else {
		d = md5.Sum([]byte(key))
	}
	return binary.LittleEndian.Uint32(d[:4])
}
