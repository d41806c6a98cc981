package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/core"
)

// TestFault runs the fault-injection scenarios under load: 40 users on two
// app servers, three memcached nodes and a database, each behind a proxy.
// In every scenario but the last, nobody may be logged out, no request may
// fail, and no update older than SyncInterval may be lost (except to stale
// reads, in the phases where a node serves copies it kept across the
// fault, until each copy's next sync). The per-phase table (logouts, lost
// updates, 5xx, p50/p99 latency, hit ratio, database errors, merges,
// breaker opens) is logged at the end, and written to the file named by
// HYBRIDSESSION_FAULT_REPORT when it is set.
func TestFault(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection under load: not in -short mode")
	}
	rep := &faultReport{}
	t.Cleanup(func() { rep.write(t) })
	for _, b := range faultBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("RollingRestart", func(t *testing.T) { faultRollingRestart(t, b, rep) })
			t.Run("AddRemoveNode", func(t *testing.T) { faultAddRemoveNode(t, b, rep) })
			t.Run("DeadAndBlackholedNode", func(t *testing.T) { faultDeadAndBlackholedNode(t, b, rep) })
			t.Run("Eviction", func(t *testing.T) { faultEviction(t, b, rep) })
			t.Run("DatabaseOutage", func(t *testing.T) { faultDatabaseOutage(t, b, rep) })
			t.Run("EverythingDown", func(t *testing.T) { faultEverythingDown(t, b, rep) })
		})
	}
}

const (
	faultBaseline = 1500 * time.Millisecond
	faultPhase    = 2 * time.Second
)

// Every node is stopped, left down for a moment and started again (empty),
// one after another.
func faultRollingRestart(t *testing.T, b faultBackend, rep *faultReport) {
	env := newFaultEnv(t, b, rep, faultEnvOptions{})
	ld := env.startLoad()
	ld.begin("baseline")
	ld.hold(faultBaseline)
	for _, n := range env.nodes {
		// The app servers' breakers close at their own moments: for a while
		// some refill copies from the row and write them while others still
		// write around the node, and a copy may serve older data than a
		// write around it until its next sync (rule 3).
		ld.beginOldMemory("restart " + n.name)
		n.mc.Stop()
		env.waitBreaker(n, true)
		ld.hold(300 * time.Millisecond) // memcached takes a moment to come back
		n.mc.Restart()
		env.waitBreaker(n, false)
		ld.hold(faultSyncBound) // every copy refilled meanwhile has synced
	}
	ld.begin("after")
	ld.hold(faultBaseline)
	ld.stop()
	ld.expectClean()
	env.expectBreakersClosed()
}

// A fourth node joins every app server, then one of the original nodes
// leaves, then the fourth leaves again (scale out, then back in).
func faultAddRemoveNode(t *testing.T, b faultBackend, rep *faultReport) {
	env := newFaultEnv(t, b, rep, faultEnvOptions{})
	n3 := env.startNode("n3", 0)
	ld := env.startLoad()
	ld.begin("baseline")
	ld.hold(faultBaseline)

	added := ld.begin("add n3")
	for _, s := range env.stores {
		if err := s.AddServer(n3.Addr(), 0); err != nil {
			t.Fatal(err)
		}
	}
	env.nodes = append(env.nodes, n3)
	ld.hold(faultPhase)
	moved := len(ld.usersOn(env.nodes, 3))

	removed := env.nodes[0]
	ld.begin("remove n0")
	for _, s := range env.stores {
		if err := s.RemoveServer(removed.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	env.nodes = env.nodes[1:]
	ld.hold(faultPhase)

	// Scale back in: the sessions n3 took over from n1 and n2 go back
	// there, where their copies from before the scale-out may still be.
	ld.beginOldMemory("remove n3")
	for _, s := range env.stores {
		if err := s.RemoveServer(n3.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	n3Items := memcachedStat(t, n3.mc.Addr, "curr_items")
	env.nodes = env.nodes[:len(env.nodes)-1]
	ld.hold(faultPhase)
	ld.begin("after")
	ld.hold(faultBaseline)
	ld.stop()
	ld.expectClean()

	if moved == 0 || moved > faultUsers/2 {
		t.Errorf("%d of %d sessions moved to the added node, want about a quarter", moved, faultUsers)
	}
	d := added.delta()
	t.Logf("add n3: %d of %d sessions moved to n3; %d cache misses, %d database reads, %d lost recent updates", moved, faultUsers, d.CacheMisses, d.DBReads, added.lostRecent)
	for i, s := range env.stores {
		nodes := s.Stats().Nodes
		if len(nodes) != 2 {
			t.Errorf("app server %d: Stats().Nodes = %+v, want n1 and n2", i, nodes)
		}
		for addr := range nodes {
			if addr == removed.Addr() || addr == n3.Addr() {
				t.Errorf("app server %d still lists the removed node %s", i, addr)
			}
		}
	}
	if n3Items == 0 {
		t.Error("the added node held no session")
	}
}

// A node is killed (kill -9) and left dead for a while, then restarted; then
// another node is blackholed (it accepts connections and never answers) and
// brought back. Once a breaker is open, requests must not pay the node's
// timeout, and the live nodes must keep serving their sessions.
func faultDeadAndBlackholedNode(t *testing.T, b faultBackend, rep *faultReport) {
	env := newFaultEnv(t, b, rep, faultEnvOptions{})
	ld := env.startLoad()
	base := ld.begin("baseline")
	ld.hold(faultBaseline)

	n0 := env.nodes[0]
	ld.begin("n0 killed")
	n0.mc.Kill()
	env.waitBreaker(n0, true)
	dead := ld.begin("n0 dead")
	onDead := ld.usersOn(env.nodes, 0)
	ld.hold(faultPhase)
	ld.begin("n0 restarted")
	n0.mc.Restart()
	env.waitBreaker(n0, false)
	ld.hold(time.Second)

	n1 := env.nodes[1]
	ld.begin("n1 blackholed")
	n1.proxy.Blackhole()
	env.waitBreaker(n1, true)
	ld.hold(100 * time.Millisecond) // requests that met the black hole finish
	open := ld.begin("n1 blackholed, breaker open")
	onHole := ld.usersOn(env.nodes, 1)
	ld.hold(faultPhase)
	ld.beginOldMemory("n1 back")
	n1.proxy.Unblackhole()
	env.waitBreaker(n1, false)
	ld.hold(faultBaseline)
	ld.stop()
	ld.expectClean()
	env.expectBreakersClosed()

	// Per-node breaker: while n0 was dead, sessions on n1 and n2 were still
	// served by memcached.
	d := dead.delta()
	liveRequests := 0
	for id, n := range dead.perUser {
		if !slices.Contains(onDead, id) {
			liveRequests += n
		}
	}
	if len(onDead) == 0 || len(onDead) == faultUsers {
		t.Errorf("%d of %d sessions on n0: the placement is not spread", len(onDead), faultUsers)
	}
	if float64(d.CacheHits) < 0.9*float64(liveRequests) {
		t.Errorf("n0 dead: %d cache hits for %d requests of users on the live nodes, want at least 90%%", d.CacheHits, liveRequests)
	}
	if d.CacheErrors == 0 || d.DBReads == 0 {
		t.Errorf("n0 dead: %d memcached errors, %d database reads: n0's sessions did not go around it", d.CacheErrors, d.DBReads)
	}
	t.Logf("n0 dead: %d users on n0; %d hits for %d requests of users on live nodes; hit ratio %.0f%%", len(onDead), d.CacheHits, liveRequests, 100*d.hitRatio())

	// The black hole's timeout is paid until the breaker opens, not after:
	// with the breaker open, n1's users are served by the database without
	// waiting on the node, as n0's users were while n0 was dead (refusing
	// connections, its breaker open). Were the Timeout paid on their
	// requests, most would take the Timeout longer than those: their median
	// would be above n0's users' median plus the Timeout. A machine shared
	// with other work can stall every request now and then; the median
	// does not move with a few stalls.
	inHole := func(id int) bool { return slices.Contains(onHole, id) }
	inDead := func(id int) bool { return slices.Contains(onDead, id) }
	p99, p50Hole, p99Hole, p50Dead := open.percentile(0.99), open.percentileOf(inHole, 0.50), open.percentileOf(inHole, 0.99), dead.percentileOf(inDead, 0.50)
	t.Logf("n1 blackholed, breaker open: p99 %v (baseline %v); %d users on n1: p50 %v, p99 %v; n0's users while n0 was dead: p50 %v",
		p99, base.percentile(0.99), len(onHole), p50Hole, p99Hole, p50Dead)
	switch {
	case len(onHole) == 0:
		t.Error("no user on n1: the black hole tested nothing")
	case p50Hole >= p50Dead+faultTimeout:
		t.Errorf("n1 blackholed with its breaker open: median of n1's users %v, want below %v (n0's users with n0 dead) plus the memcached Timeout %v",
			p50Hole, p50Dead, faultTimeout)
	}
}

// One node has 2 MiB of memory, and a client fills it with junk keys:
// memcached evicts sessions, which come back from the database.
func faultEviction(t *testing.T, b faultBackend, rep *faultReport) {
	env := newFaultEnv(t, b, rep, faultEnvOptions{nodeMemoryMB: []int{2}})
	n0 := env.nodes[0]
	ld := env.startLoad()
	ld.begin("baseline")
	ld.hold(faultBaseline)

	// Junk of the size of a session lands in the sessions' slab class, so
	// memcached evicts sessions (LRU) to make room, not only other junk.
	size := env.sessionItemSize(ld)
	evictionsBefore := memcachedStat(t, n0.mc.Addr, "evictions")
	evicting := ld.begin("n0 evicting")
	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		filled atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := memcache.New(n0.mc.Addr) // directly, not through the proxy
		c.Timeout = time.Second
		rng := rand.New(rand.NewPCG(1, 2))
		junk := make([]byte, size+size/5) // room for the largest n below
		for i := 0; !stop.Load(); i++ {
			// About 5000 sets a second, sizes within ±10% of a session's.
			if i%25 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			key := fmt.Sprintf("junk:%041d", i) // as long as "hs:" and a storage key
			n := size - size/10 + rng.IntN(size/5+1)
			if err := c.Set(&memcache.Item{Key: key, Value: junk[:n], Expiration: 600}); err == nil {
				filled.Add(1)
			}
		}
	}()
	ld.hold(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	ld.begin("after")
	ld.hold(faultBaseline)
	ld.stop()
	ld.expectClean()

	evictions := memcachedStat(t, n0.mc.Addr, "evictions") - evictionsBefore
	d := evicting.delta()
	t.Logf("n0 evicting: %d junk items written, %d evictions, %d session misses served from the database", filled.Load(), evictions, d.CacheMisses)
	if evictions == 0 {
		t.Error("memcached evicted nothing: the scenario did not test eviction")
	}
	if d.CacheMisses == 0 {
		t.Error("no session was evicted while in use: the scenario did not test eviction of sessions")
	}
}

// The database is cut off for a few seconds, then comes back. Sessions keep
// being read and written on memcached; the syncs that fail are retried and
// reach the database afterwards.
func faultDatabaseOutage(t *testing.T, b faultBackend, rep *faultReport) {
	requireNetworkedDB(t, b)
	env := newFaultEnv(t, b, rep, faultEnvOptions{})
	ld := env.startLoad()
	ld.begin("baseline")
	ld.hold(faultBaseline)
	out := ld.begin("database cut")
	env.dbProxy.Cut()
	ld.hold(3 * time.Second)
	ld.begin("database back")
	env.dbProxy.Restore()
	ld.hold(faultPhase)
	ld.stop()
	ld.expectClean()

	if d := out.delta(); d.DBErrors == 0 {
		t.Errorf("database cut: no database write failed (%+v): the outage was not felt", d)
	}
	if c := env.counts(); c.SyncDropped != 0 {
		t.Errorf("%d syncs given up during a 3 s outage", c.SyncDropped)
	}
	env.expectRowsCurrent(ld)
}

// Every memcached node and the database go down: requests get a clear 503
// (core.ErrUnavailable through the default error handler), never a 500 or a hang,
// and everything recovers when the servers return.
func faultEverythingDown(t *testing.T, b faultBackend, rep *faultReport) {
	requireNetworkedDB(t, b)
	env := newFaultEnv(t, b, rep, faultEnvOptions{})
	ld := env.startLoad()
	base := ld.begin("baseline")
	ld.hold(faultBaseline)
	down := ld.begin("all down")
	for _, n := range env.nodes {
		n.proxy.Cut()
	}
	env.dbProxy.Cut()
	ld.hold(faultPhase)
	// The nodes come back with the memory they had (only their proxies
	// were cut): their copies may be stale until each one's next sync.
	restoring := ld.beginOldMemory("servers back")
	for _, n := range env.nodes {
		n.proxy.Restore()
	}
	env.dbProxy.Restore()
	for _, n := range env.nodes {
		env.waitBreaker(n, false)
	}
	recovered := ld.beginOldMemory("recovered")
	ld.hold(faultPhase)
	ld.stop()
	ld.expectClean(base, recovered)

	if down.status5xx == 0 {
		t.Error("all down: no request failed")
	}
	for _, p := range []*phaseStats{down, restoring} {
		if p.status5xx != p.status503 || p.netErrors != 0 {
			t.Errorf("%s: %d 5xx of which %d are 503, %d transport errors: want 503 only", p.name, p.status5xx, p.status503, p.netErrors)
		}
		lost := p.lostOld + p.phantom
		if p.oldMemory {
			lost = 0 // stale copies, allowed until their next sync (see expectClean)
		}
		if p.wrongUser+lost > 0 {
			t.Errorf("%s: %d foreign sessions, %d lost updates older than SyncInterval, %d impossible counters", p.name, p.wrongUser, p.lostOld, p.phantom)
		}
	}
	env.expectBreakersClosed()
}

// sessionItemSize returns the size of a logged-in user's session in
// memcached, read from the node that holds it.
func (env *faultEnv) sessionItemSize(ld *loadDriver) int {
	t := env.t
	t.Helper()
	tok, _ := ld.users[0].token.Load().(string)
	owner := env.nodes[ownerOf(t, env.nodes, tok)]
	it, err := memcache.New(owner.mc.Addr).Get("hs:" + core.StorageKey(tok))
	if err != nil {
		t.Fatalf("reading a session from %s: %v", owner.name, err)
	}
	return len(it.Value)
}

func (env *faultEnv) expectBreakersClosed() {
	env.t.Helper()
	for i, s := range env.stores {
		for addr, open := range s.Stats().Nodes {
			if open {
				env.t.Errorf("app server %d: breaker of %s still open at the end", i, addr)
			}
		}
	}
}

// expectRowsCurrent checks that the database caught up: once every user has
// written again, SyncInterval after its last write, and the background
// writers hold nothing more, every row holds exactly the counter the user
// last wrote.
func (env *faultEnv) expectRowsCurrent(ld *loadDriver) {
	t := env.t
	t.Helper()
	time.Sleep(faultSyncInterval)
	final := ld.begin("final sync") // after stop: not in the report
	var wg sync.WaitGroup
	for _, u := range ld.users {
		if !u.loggedIn {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); ld.click(u) }()
	}
	wg.Wait()
	if final.status5xx+final.netErrors+final.logouts > 0 {
		t.Fatalf("final clicks failed: %d 5xx, %d transport errors, %d logouts", final.status5xx, final.netErrors, final.logouts)
	}
	// The writers write each row within SyncInterval (and retry a failed
	// batch after a few seconds).
	waitFor(t, "the background writers to write every row", func() bool {
		for _, s := range env.stores {
			if s.Stats().SyncPending != 0 {
				return false
			}
		}
		return true
	})
	stale := 0
	for _, u := range ld.users {
		if !u.loggedIn {
			continue
		}
		tok, _ := u.token.Load().(string)
		want := u.hist[len(u.hist)-1].value
		got, err := env.rowClicks(tok)
		if err != nil || got != want {
			stale++
			if stale <= faultLogLimit {
				t.Errorf("%s: database row holds clicks=%d (%v), the user last wrote %d", u.name, got, err, want)
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d rows not current after the database came back", stale)
	}
}

// rowClicks reads token's "clicks" from its database row.
func (env *faultEnv) rowClicks(token string) (int, error) {
	rec, found, err := env.admin.Load(context.Background(), core.StorageKey(token))
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no row")
	}
	e, err := decodeEnvelope(rec.Payload)
	if err != nil {
		return 0, err
	}
	if e.Destroyed {
		return 0, fmt.Errorf("a tombstone")
	}
	if e.Codec != core.Msgpack.ID() {
		return 0, fmt.Errorf("codec %d", e.Codec)
	}
	values, err := core.Msgpack.Decode(e.Payload)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(fmt.Sprint(values["clicks"]))
}
