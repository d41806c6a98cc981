package cache

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
)

// Ring exposes a Cache's ring as a memcache.ServerSelector, the interface
// these tests compare it with gomemcache's ServerList through.
type Ring struct{ *Cache }

var _ memcache.ServerSelector = (*Ring)(nil)

// A node is the net.Addr of its resolved address.
func (n *node) Network() string { return n.network }
func (n *node) String() string  { return n.str }

func (r *Ring) PickServer(key string) (net.Addr, error) {
	if n := r.pick(key); n != nil {
		return n, nil
	}
	return nil, memcache.ErrNoServers
}

func (r *Ring) Add(addr string, weight int) error { return r.AddServer(addr, weight) }
func (r *Ring) Remove(addr string) error          { return r.RemoveServer(addr) }

// Each calls f for every node, in the order they were added, and returns
// the first error f returns.
func (r *Ring) Each(f func(net.Addr) error) error {
	for _, n := range r.ring.Load().servers {
		if err := f(n); err != nil {
			return err
		}
	}
	return nil
}

// testKeys returns n keys shaped like session storage keys (base64url
// of 32 random bytes), from a fixed seed so that results are reproducible.
func testKeys(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	keys := make([]string, n)
	var b [32]byte
	for i := range keys {
		for j := 0; j < len(b); j += 8 {
			binary.LittleEndian.PutUint64(b[j:], r.Uint64())
		}
		keys[i] = base64.RawURLEncoding.EncodeToString(b[:])
	}
	return keys
}

// Server is a server to add to a test ring.
type Server struct {
	Addr   string
	Weight int
}

// newRing adds servers to an empty ring, in order.
func newRing(servers ...Server) (*Ring, error) {
	c, err := New(testConfig())
	if err != nil {
		return nil, err
	}
	r := &Ring{c}
	for _, s := range servers {
		if err := r.Add(s.Addr, s.Weight); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// names returns the servers' addresses as added, in order.
func names(r *Ring) []string {
	var out []string
	for _, n := range r.ring.Load().servers {
		out = append(out, n.name)
	}
	return out
}

func plainServers(addrs ...string) []Server {
	s := make([]Server, len(addrs))
	for i, a := range addrs {
		s[i] = Server{Addr: a}
	}
	return s
}

func mustRing(t testing.TB, servers ...Server) *Ring {
	t.Helper()
	k, err := newRing(servers...)
	if err != nil {
		t.Fatalf("newRing(%v): %v", servers, err)
	}
	return k
}

// pickAll returns the server (Addr.String()) of every key.
func pickAll(t testing.TB, s memcache.ServerSelector, keys []string) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, key := range keys {
		a, err := s.PickServer(key)
		if err != nil {
			t.Fatalf("PickServer(%q): %v", key, err)
		}
		out[i] = a.String()
	}
	return out
}

func countByServer(picks []string) map[string]int {
	m := make(map[string]int)
	for _, p := range picks {
		m[p]++
	}
	return m
}

// maxMinRatio returns max/min of the counts of servers (a server with no key
// counts as 0).
func maxMinRatio(counts map[string]int, servers []string) float64 {
	lo, hi := -1, 0
	for _, s := range servers {
		c := counts[s]
		if lo < 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	if lo == 0 {
		return float64(hi) // effectively infinite imbalance
	}
	return float64(hi) / float64(lo)
}

func TestDistribution(t *testing.T) {
	const bound = 1.25
	keys := testKeys(100_000, 1)
	tests := []struct {
		name    string
		servers []string
	}{
		{"private-ips", []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"}},
		{"loopback-ports", []string{"127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"}},
		{"mixed", []string{"192.168.1.10:11211", "172.16.5.4:11211", "[::1]:11211"}},
		{"unix-sockets", []string{"/run/memcached/a.sock", "/run/memcached/b.sock", "/run/memcached/c.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := mustRing(t, plainServers(tt.servers...)...)
			var resolved []string
			k.Each(func(a net.Addr) error { resolved = append(resolved, a.String()); return nil })
			counts := countByServer(pickAll(t, k, keys))
			ratio := maxMinRatio(counts, resolved)

			// The same servers on a broken ring with a single point each,
			// to show that the bound discriminates.
			var one []*node
			for _, n := range k.ring.Load().servers {
				one = append(one, &node{name: n.name, network: n.network, str: n.str, points: n.points[:1]})
			}
			broken := build(one)
			brokenCounts := make(map[string]int)
			for _, key := range keys {
				brokenCounts[broken.owners[broken.search(keyHash(key))].str]++
			}
			brokenRatio := maxMinRatio(brokenCounts, resolved)

			t.Logf("counts %v max/min %.3f (single-point ring: %v max/min %.3f)", counts, ratio, brokenCounts, brokenRatio)
			if ratio >= bound {
				t.Errorf("max/min share = %.3f, want < %.2f", ratio, bound)
			}
			if brokenRatio < bound {
				t.Errorf("single-point ring max/min %.3f is within the bound %.2f: the bound does not discriminate", brokenRatio, bound)
			}
			if len(counts) != 3 {
				t.Errorf("keys went to %d servers, want 3", len(counts))
			}
		})
	}
}

func TestWeights(t *testing.T) {
	keys := testKeys(100_000, 2)
	tests := []struct {
		name    string
		servers []Server
		heavy   string // the weight-2 server
		light   string // a weight-1 server
	}{
		{
			name: "one-heavy-of-three",
			servers: []Server{
				{Addr: "10.0.0.1:11211", Weight: 1},
				{Addr: "10.0.0.2:11211", Weight: 2},
				{Addr: "10.0.0.3:11211"}, // default weight 1
			},
			heavy: "10.0.0.2:11211", light: "10.0.0.1:11211",
		},
		{
			name: "two-servers",
			servers: []Server{
				{Addr: "127.0.0.1:11211", Weight: 2},
				{Addr: "127.0.0.1:11212", Weight: 1},
			},
			heavy: "127.0.0.1:11211", light: "127.0.0.1:11212",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := mustRing(t, tt.servers...)
			counts := countByServer(pickAll(t, k, keys))
			ratio := float64(counts[tt.heavy]) / float64(counts[tt.light])
			t.Logf("counts %v heavy/light %.3f", counts, ratio)
			if ratio < 2*0.85 || ratio > 2*1.15 {
				t.Errorf("weight-2/weight-1 share = %.3f, want 2 ± 15%%", ratio)
			}
		})
	}
}

func TestAddMovesFewKeys(t *testing.T) {
	keys := testKeys(100_000, 3)
	three := []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"}
	const fourth = "10.0.0.4:11211"

	k := mustRing(t, plainServers(three...)...)
	before := pickAll(t, k, keys)
	if err := k.Add(fourth, 0); err != nil {
		t.Fatal(err)
	}
	after := pickAll(t, k, keys)
	moved := 0
	for i := range keys {
		if before[i] == after[i] {
			continue
		}
		moved++
		if after[i] != fourth {
			t.Fatalf("key %q moved from %s to %s, not to the new server %s", keys[i], before[i], after[i], fourth)
		}
	}
	ketamaFrac := float64(moved) / float64(len(keys))

	// The same change with gomemcache's ServerList (crc32 mod N).
	var sl memcache.ServerList
	if err := sl.SetServers(three...); err != nil {
		t.Fatal(err)
	}
	slBefore := pickAll(t, &sl, keys)
	if err := sl.SetServers(append(slices.Clone(three), fourth)...); err != nil {
		t.Fatal(err)
	}
	slAfter := pickAll(t, &sl, keys)
	modMoved := 0
	for i := range keys {
		if slBefore[i] != slAfter[i] {
			modMoved++
		}
	}
	modFrac := float64(modMoved) / float64(len(keys))

	t.Logf("3 -> 4 servers: ketama moved %.4f of keys, mod-N (ServerList) moved %.4f", ketamaFrac, modFrac)
	if ketamaFrac < 0.18 || ketamaFrac > 0.32 {
		t.Errorf("ketama moved %.4f of keys, want between 0.18 and 0.32", ketamaFrac)
	}
	if modFrac < 0.6 {
		t.Errorf("mod-N moved %.4f of keys, expected about 0.75", modFrac)
	}
}

func TestRemoveMovesOnlyItsKeys(t *testing.T) {
	keys := testKeys(50_000, 4)
	servers := []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.4:11211"}
	for _, victim := range servers {
		t.Run(victim, func(t *testing.T) {
			k := mustRing(t, plainServers(servers...)...)
			before := pickAll(t, k, keys)
			if err := k.Remove(victim); err != nil {
				t.Fatal(err)
			}
			after := pickAll(t, k, keys)
			moved := 0
			for i := range keys {
				switch {
				case before[i] == victim:
					moved++
					if after[i] == victim {
						t.Fatalf("key %q still on removed server %s", keys[i], victim)
					}
				case after[i] != before[i]:
					t.Fatalf("key %q moved from %s to %s though %s was removed", keys[i], before[i], after[i], victim)
				}
			}
			t.Logf("removing %s moved %.4f of keys", victim, float64(moved)/float64(len(keys)))
			if moved == 0 {
				t.Errorf("removed server held no keys")
			}
			if got := names(k); slices.Contains(got, victim) || len(got) != 3 {
				t.Errorf("Servers() = %v after removing %s", got, victim)
			}
		})
	}
}

func TestSearchWrapAround(t *testing.T) {
	a, b, c := &node{network: "tcp", str: "a"}, &node{network: "tcp", str: "b"}, &node{network: "tcp", str: "c"}
	cont := &continuum{
		hashes: []uint32{100, 200, 300},
		owners: []*node{a, b, c},
	}
	tests := []struct {
		h    uint32
		want int
	}{
		{0, 0},
		{99, 0},
		{100, 0}, // a point owns its own hash
		{101, 1},
		{200, 1},
		{250, 2},
		{300, 2},
		{301, 0}, // past the last point: wrap to the first
		{1 << 31, 0},
		{^uint32(0), 0},
	}
	for _, tt := range tests {
		if got := cont.search(tt.h); got != tt.want {
			t.Errorf("search(%d) = %d, want %d", tt.h, got, tt.want)
		}
	}

	// The same on a built continuum: just past its last point, and at the
	// very top of the ring, is the owner of its first point.
	k := mustRing(t, plainServers("10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211")...)
	rc := k.ring.Load()
	last := rc.hashes[len(rc.hashes)-1]
	if last == ^uint32(0) {
		t.Skip("last point at the top of the ring")
	}
	for _, h := range []uint32{last + 1, ^uint32(0)} {
		if i := rc.search(h); i != 0 || rc.owners[i] != rc.owners[0] {
			t.Errorf("search(%d) = %d (%v), want 0 (%v)", h, i, rc.owners[i], rc.owners[0])
		}
	}
	if i := rc.search(last); i != len(rc.hashes)-1 {
		t.Errorf("search(last point) = %d, want %d", i, len(rc.hashes)-1)
	}
	if i := rc.search(rc.hashes[0]); i != 0 {
		t.Errorf("search(first point) = %d, want 0", i)
	}
}

func TestPoints(t *testing.T) {
	// Points are libketama's: four little-endian uint32s of MD5("addr-i"),
	// 40 digests per unit of weight.
	k := mustRing(t, Server{Addr: "10.0.0.1:11211"}, Server{Addr: "10.0.0.2:11211", Weight: 3})
	c := k.ring.Load()
	if got, want := len(c.hashes), 4*160; got != want {
		t.Fatalf("continuum has %d points, want %d", got, want)
	}
	if !slices.IsSorted(c.hashes) {
		t.Fatal("points not sorted")
	}
	per := countByServer(func() []string {
		s := make([]string, len(c.owners))
		for i, o := range c.owners {
			s[i] = o.str
		}
		return s
	}())
	if per["10.0.0.1:11211"] != 160 || per["10.0.0.2:11211"] != 480 {
		t.Errorf("points per server = %v, want 160 and 480", per)
	}
	for _, name := range []string{"10.0.0.1:11211-0", "10.0.0.1:11211-39", "10.0.0.2:11211-119"} {
		d := md5.Sum([]byte(name))
		owner := name[:strings.LastIndexByte(name, '-')]
		for j := 0; j < 4; j++ {
			h := uint32(d[j*4]) | uint32(d[j*4+1])<<8 | uint32(d[j*4+2])<<16 | uint32(d[j*4+3])<<24
			i, found := slices.BinarySearch(c.hashes, h)
			if !found || c.owners[i].str != owner {
				t.Errorf("point %d of %q (%#x) not owned by %s", j, name, h, owner)
			}
		}
	}
	// Key hash: first four bytes of MD5(key), little-endian.
	d := md5.Sum([]byte("some-key"))
	if got, want := keyHash("some-key"), binary.LittleEndian.Uint32(d[:]); got != want {
		t.Errorf("keyHash = %#x, want %#x", got, want)
	}
	long := strings.Repeat("k", 300) // longer than the stack buffer
	d = md5.Sum([]byte(long))
	if got, want := keyHash(long), binary.LittleEndian.Uint32(d[:]); got != want {
		t.Errorf("keyHash(300 bytes) = %#x, want %#x", got, want)
	}
}

func TestEmpty(t *testing.T) {
	t.Run("no-servers", func(t *testing.T) {
		empty := mustRing(t)
		emptied := mustRing(t, Server{Addr: "10.0.0.1:11211"})
		if err := emptied.Remove("10.0.0.1:11211"); err != nil {
			t.Fatal(err)
		}
		for name, k := range map[string]*Ring{"empty": empty, "emptied": emptied} {
			if a, err := k.PickServer("key"); !errors.Is(err, memcache.ErrNoServers) || a != nil {
				t.Errorf("%s: PickServer = %v, %v; want nil, ErrNoServers", name, a, err)
			}
			n := 0
			if err := k.Each(func(net.Addr) error { n++; return nil }); err != nil || n != 0 {
				t.Errorf("%s: Each visited %d servers, err %v", name, n, err)
			}
			if s := names(k); len(s) != 0 {
				t.Errorf("%s: Servers() = %v", name, s)
			}
		}
		// An empty ring accepts Add.
		if err := empty.Add("10.0.0.1:11211", 0); err != nil {
			t.Fatal(err)
		}
		if a, err := empty.PickServer("key"); err != nil || a.String() != "10.0.0.1:11211" {
			t.Errorf("empty ring after Add: PickServer = %v, %v", a, err)
		}
	})
}

func TestInvalidServers(t *testing.T) {
	invalid := []struct {
		name string
		s    Server
	}{
		{"empty", Server{Addr: ""}},
		{"missing-port", Server{Addr: "10.0.0.9"}},
		{"port-out-of-range", Server{Addr: "10.0.0.9:99999"}},
		{"bad-port", Server{Addr: "10.0.0.9:no-such-service"}},
		{"too-many-colons", Server{Addr: "10.0.0.9:1:2"}},
		{"negative-weight", Server{Addr: "10.0.0.9:11211", Weight: -1}},
		{"weight-too-large", Server{Addr: "10.0.0.9:11211", Weight: maxWeight + 1}},
	}
	for _, tt := range invalid {
		t.Run("invalid/"+tt.name, func(t *testing.T) {
			if k, err := newRing(Server{Addr: "10.0.0.1:11211"}, tt.s); err == nil || k != nil {
				t.Errorf("newRing(%+v) = %v, %v; want an error", tt.s, k, err)
			}
			k := mustRing(t, Server{Addr: "10.0.0.1:11211"})
			if err := k.Add(tt.s.Addr, tt.s.Weight); err == nil {
				t.Errorf("Add(%+v) succeeded, want an error", tt.s)
			}
			if got := names(k); !slices.Equal(got, []string{"10.0.0.1:11211"}) {
				t.Errorf("failed Add changed the servers: %v", got)
			}
		})
	}

	duplicates := []struct {
		name        string
		first, then string
	}{
		{"same-string", "10.0.0.1:11211", "10.0.0.1:11211"},
		{"v4-mapped-ipv6", "10.0.0.1:11211", "[::ffff:10.0.0.1]:11211"},
		{"leading-zero-port", "10.0.0.1:11211", "10.0.0.1:011211"},
		{"same-ipv6", "[::1]:11211", "[0:0::1]:11211"},
		{"same-socket", "/run/memcached.sock", "/run/memcached.sock"},
	}
	for _, tt := range duplicates {
		t.Run("duplicate/"+tt.name, func(t *testing.T) {
			k := mustRing(t, Server{Addr: tt.first})
			if err := k.Add(tt.then, 0); err == nil {
				t.Errorf("Add(%q) after %q succeeded, want an error", tt.then, tt.first)
			}
			if _, err := newRing(Server{Addr: tt.first}, Server{Addr: tt.then}); err == nil {
				t.Errorf("newRing(%q, %q) succeeded, want an error", tt.first, tt.then)
			}
			if got := names(k); len(got) != 1 {
				t.Errorf("Servers() = %v, want one", got)
			}
		})
	}

}

func TestRemoveAndEach(t *testing.T) {
	t.Run("remove-unknown", func(t *testing.T) {
		k := mustRing(t, plainServers("10.0.0.1:11211", "10.0.0.2:11211")...)
		for _, addr := range []string{"10.0.0.3:11211", "", "10.0.0.1"} {
			if err := k.Remove(addr); err == nil {
				t.Errorf("Remove(%q) succeeded, want an error", addr)
			}
		}
		if got := names(k); len(got) != 2 {
			t.Errorf("Servers() = %v after failed removes", got)
		}
		if err := mustRing(t).Remove("10.0.0.1:11211"); err == nil {
			t.Error("Remove on an empty ring succeeded")
		}
	})

	t.Run("remove-by-resolved-address", func(t *testing.T) {
		k := mustRing(t, plainServers("10.0.0.1:11211", "[0:0::1]:11211")...)
		if err := k.Remove("[::1]:11211"); err != nil {
			t.Fatal(err)
		}
		if got := names(k); !slices.Equal(got, []string{"10.0.0.1:11211"}) {
			t.Errorf("Servers() = %v", got)
		}
	})

	t.Run("each-stops-at-error", func(t *testing.T) {
		k := mustRing(t, plainServers("10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211")...)
		stop := errors.New("stop")
		var seen []string
		err := k.Each(func(a net.Addr) error {
			seen = append(seen, a.String())
			if len(seen) == 2 {
				return stop
			}
			return nil
		})
		if err != stop || !slices.Equal(seen, []string{"10.0.0.1:11211", "10.0.0.2:11211"}) {
			t.Errorf("Each: err %v, visited %v", err, seen)
		}
	})
}

func TestAddrs(t *testing.T) {
	tests := []struct {
		addr, network, str string
	}{
		{"10.0.0.1:11211", "tcp", "10.0.0.1:11211"},
		{"[::1]:11212", "tcp", "[::1]:11212"},
		{"/var/run/memcached/memcached.sock", "unix", "/var/run/memcached/memcached.sock"},
		{"./memcached.sock", "unix", "./memcached.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			k := mustRing(t, Server{Addr: tt.addr}, Server{Addr: "10.9.9.9:11211"})
			var a net.Addr
			for i := 0; a == nil && i < 1000; i++ {
				p, err := k.PickServer(fmt.Sprint("key-", i))
				if err != nil {
					t.Fatal(err)
				}
				if p.String() == tt.str {
					a = p
				}
			}
			if a == nil {
				t.Fatalf("no key picked %s", tt.addr)
			}
			if a.Network() != tt.network || a.String() != tt.str {
				t.Errorf("addr = %s %s, want %s %s", a.Network(), a.String(), tt.network, tt.str)
			}
			// Stable pointers: the same value from Each and PickServer, and
			// across Add and Remove of another server.
			var fromEach net.Addr
			k.Each(func(e net.Addr) error {
				if e.String() == tt.str {
					fromEach = e
				}
				return nil
			})
			if fromEach != a {
				t.Errorf("Each gave %p, PickServer %p", fromEach, a)
			}
			if err := k.Add("10.9.9.8:11211", 0); err != nil {
				t.Fatal(err)
			}
			if err := k.Remove("10.9.9.9:11211"); err != nil {
				t.Fatal(err)
			}
			k.Each(func(e net.Addr) error {
				if e.String() == tt.str && e != a {
					t.Errorf("address of %s changed identity after Add/Remove", tt.str)
				}
				return nil
			})
			if n := testing.AllocsPerRun(100, func() { _, _ = a.String(), a.Network() }); n != 0 {
				t.Errorf("Addr.String/Network allocate %v times", n)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	keys := testKeys(20_000, 5)
	servers := []Server{
		{Addr: "10.0.0.1:11211"},
		{Addr: "10.0.0.2:11211", Weight: 2},
		{Addr: "10.0.0.3:11211"},
		{Addr: "/run/memcached.sock", Weight: 3},
		{Addr: "[::1]:11211"},
	}
	want := pickAll(t, mustRing(t, servers...), keys)
	r := rand.New(rand.NewPCG(6, 7))
	for i := 0; i < 4; i++ {
		shuffled := slices.Clone(servers)
		r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		got := pickAll(t, mustRing(t, shuffled...), keys)
		if !slices.Equal(got, want) {
			t.Fatalf("order %v: different picks than order %v", shuffled, servers)
		}
		// Built incrementally, in yet another order.
		k := mustRing(t)
		for j := len(shuffled) - 1; j >= 0; j-- {
			if err := k.Add(shuffled[j].Addr, shuffled[j].Weight); err != nil {
				t.Fatal(err)
			}
		}
		if got := pickAll(t, k, keys); !slices.Equal(got, want) {
			t.Fatalf("incremental build in reverse of %v: different picks", shuffled)
		}
	}
}

func TestConcurrent(t *testing.T) {
	stable := []string{"10.0.0.1:11211", "10.0.0.2:11211"}
	moving := []string{"10.0.0.3:11211", "10.0.0.4:11211", "10.0.0.5:11211"}
	known := make(map[string]bool)
	for _, s := range append(slices.Clone(stable), moving...) {
		known[s] = true
	}
	k := mustRing(t, plainServers(stable...)...)
	keys := testKeys(1000, 8)

	var stop atomic.Bool
	var picks atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 9)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; !stop.Load(); i++ {
				a, err := k.PickServer(keys[i%len(keys)])
				if err != nil {
					errc <- err
					return
				}
				if !known[a.String()] {
					errc <- fmt.Errorf("picked unknown server %s", a)
					return
				}
				if i%64 == 0 {
					_ = k.Each(func(net.Addr) error { return nil })
					_ = names(k)
				}
				picks.Add(1)
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stop.Store(true)
		if err := churn(k, moving, 30); err != nil {
			errc <- err
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if got := names(k); !slices.Equal(got, stable) {
		t.Errorf("Servers() = %v, want %v", got, stable)
	}
	t.Logf("%d picks during 180 Add/Remove", picks.Load())
}

// churn adds and removes servers rounds times, with varying weights.
func churn(k *Ring, servers []string, rounds int) error {
	for round := range rounds {
		for _, s := range servers {
			if err := k.Add(s, 1+round%3); err != nil {
				return err
			}
		}
		for _, s := range servers {
			if err := k.Remove(s); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestPickServerAllocs(t *testing.T) {
	k := mustRing(t, plainServers("10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211")...)
	tests := []struct {
		name string
		key  string
	}{
		{"session-key", testKeys(1, 9)[0]},
		{"short", "k"},
		{"memcached-max", strings.Repeat("x", 250)},
	}
	for _, tt := range tests {
		var sink net.Addr
		n := testing.AllocsPerRun(1000, func() {
			a, err := k.PickServer(tt.key)
			if err != nil {
				panic(err)
			}
			sink = a
		})
		if n != 0 {
			t.Errorf("%s: PickServer allocates %v times per call, want 0", tt.name, n)
		}
		_ = sink
	}
}

func BenchmarkPickServer(b *testing.B) {
	for _, n := range []int{3, 30} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			servers := make([]Server, n)
			for i := range servers {
				servers[i] = Server{Addr: fmt.Sprintf("10.0.%d.%d:11211", i/256, i%256)}
			}
			k := mustRing(b, servers...)
			keys := testKeys(1024, 10)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := k.PickServer(keys[i&1023]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPickServerParallel(b *testing.B) {
	k := mustRing(b, plainServers("10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211")...)
	keys := testKeys(1024, 11)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := k.PickServer(keys[i&1023]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
