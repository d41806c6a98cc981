package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// Deterministic reproductions of the anomalies the load scenarios of
// TestFault meet at random: with several app servers, an older copy of a
// session can meet writes that were acknowledged after it.

// gatedDurable holds every Write while its gate is shut, to delay one app
// server's background writer at will.
type gatedDurable struct {
	durable.Tier
	mu   sync.Mutex
	gate chan struct{} // nil: open
	held atomic.Int32  // Writes that waited at the gate
}

func (g *gatedDurable) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.held.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Tier.Write(ctx, batch)
}

func (g *gatedDurable) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate == nil {
		g.gate = make(chan struct{})
	}
}

func (g *gatedDurable) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

// I5: app server A's background sync of a session is on its way to the
// database (slow database) when memcached loses the session. App server B
// restores the session from the row and makes a durable change, written to
// the row before the response. A's delayed sync then lands on a row that
// moved on: it is refused, and since the copy it was read from is gone
// (memcached refilled the session from the row), it is dropped — its
// changes went with the cache loss — so B's durable change stays, also
// once memcached loses the session again.
func TestFaultDelayedSyncAfterCacheLoss(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var gate *gatedDurable
	durable := func(c *core.Config) { c.DurableKeys = []string{"cart"} }
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		gate = &gatedDurable{Tier: c.Durable}
		c.Durable = gate
	}, durable)
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, durable)

	token := put(t, a, "", "n", 1) // in both tiers
	st.clock.Advance(2 * time.Minute)
	put(t, a, token, "n", 2) // due: A's writer takes it and waits at the gate
	flushed := gatedFlush(t, a.Store(), gate)
	put(t, a, token, "n", 3) // memcached only

	st.mc.Restart() // memcached loses the session; the row holds n=1
	// Time moves on while memcached restarts: B's change is made after A's.
	st.clock.Advance(time.Second)
	s := load(t, b, token)
	if s.IsNew() || getInt(s, "n") != 1 {
		t.Fatalf("after the restart B reads new=%v n=%d, want the row's n=1", s.IsNew(), getInt(s, "n"))
	}
	s.Put("cart", "book") // durable: in the database before Save returns
	if err := b.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if st.rowValues(t, token)["cart"] != "book" {
		t.Fatal("B's durable write is not in the database")
	}

	gate.open() // A's delayed sync lands
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	st.mc.Restart()
	if got := getString(load(t, b, token), "cart"); got != "book" {
		t.Errorf("B's durable write (cart=book) is lost: the row holds %v", st.rowValues(t, token))
	}
}

// I2 and I4 (rule 3): a node is cut off from both app servers (paused: it
// keeps its items) and both breakers open. App server A writes a session
// around it, to the row, and logs another out. The node comes back with
// its older copies, which may be served until their next sync; that sync
// merges each with its row: A's change stands, with B's change made on the
// stale copy meanwhile, and the logout sticks.
func TestFaultStaleCopyAfterPartitionMergesAtNextSync(t *testing.T) {
	st := newStack(t, backends(t)[0])
	breaker := func(cooldown time.Duration) func(*core.StoreConfig) {
		return func(c *core.StoreConfig) {
			c.Memcached.Timeout = 50 * time.Millisecond
			c.Memcached.BreakerThreshold = 1
			c.Memcached.BreakerCooldown = cooldown
		}
	}
	a := st.manager(t, breaker(time.Hour), nil)
	b := st.manager(t, breaker(20*time.Millisecond), nil)
	token := put(t, a, "", "n", 1)
	doomed := put(t, a, "", "user", "ada")

	st.mc.Pause()
	for _, m := range []*core.Manager{a, b} {
		// A read pays the timeout, opens the breaker and falls back to the
		// database. (SIGSTOP takes a moment to land: until then the node
		// still answers.)
		for deadline := time.Now().Add(5 * time.Second); !m.Store().Stats().Nodes[st.mc.Addr]; {
			if time.Now().After(deadline) {
				t.Fatal("breaker not open")
			}
			if s := load(t, m, token); getInt(s, "n") != 1 {
				t.Fatalf("n = %d during the partition, want 1", getInt(s, "n"))
			}
		}
	}
	put(t, a, token, "n", 2) // around the node, to the row
	if err := load(t, a, doomed).Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.mc.Resume()
	awaitBreaker(t, b.Store(), st.mc.Addr, false)

	st.clock.Advance(3 * time.Minute) // past SyncInterval and TouchInterval
	put(t, b, token, "m", "from B")   // on the node's stale copy
	readOnly(t, b, doomed)            // served from the stale copy; its touch schedules the sync
	flush(t, b.Store())
	s := load(t, b, token)
	if getInt(s, "n") != 2 || getString(s, "m") != "from B" {
		t.Errorf("after the copy's sync B reads n=%d m=%q, want A's 2 and B's change", getInt(s, "n"), getString(s, "m"))
	}
	if !load(t, b, doomed).IsNew() {
		t.Error("the session A logged out during the partition is served after its copy's sync")
	}
}

// flakyDialer opens memcached connections whose next write fails once when
// armed: one transient network error, as under a CPU or network hiccup.
type flakyDialer struct{ armed atomic.Bool }

var errNetworkBlip = errors.New("injected: network blip")

func (f *flakyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &flakyConn{Conn: c, f: f}, nil
}

type flakyConn struct {
	net.Conn
	f *flakyDialer
}

func (c *flakyConn) Write(b []byte) (int, error) {
	if c.f.armed.CompareAndSwap(true, false) {
		c.Conn.Close()
		return 0, errNetworkBlip
	}
	return c.Conn.Write(b)
}

// I7 and I6: while the database is unreachable, one memcached write fails
// transiently (the node stays up, its breaker closed). The request fails
// with 503, as it should: neither tier took its change. The session's
// memcached copy, the only one holding its changes since the last sync,
// survives the failed request.
func TestFaultFailedWriteThroughKeepsCacheCopy(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var (
		durable *faultyDurable
		dialer  flakyDialer
	)
	m := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		durable = &faultyDurable{Tier: c.Durable}
		c.Durable = durable
		c.Memcached.DialContext = dialer.DialContext
	}, nil)
	ctx := context.Background()

	token := put(t, m, "", "n", 1) // synced
	st.clock.Advance(10 * time.Second)
	put(t, m, token, "n", 2) // memcached only: the next sync is due in 50 s

	durable.down.Store(true)
	s := load(t, m, token)
	if getInt(s, "n") != 2 {
		t.Fatalf("n = %d, want 2", getInt(s, "n"))
	}
	s.Put("n", 3)
	dialer.armed.Store(true)
	if err := m.Save(ctx, s); !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("Save with memcached failing once and the database down: %v, want ErrUnavailable", err)
	}
	if m.Store().Stats().Nodes[st.mc.Addr] {
		t.Fatal("one failure opened the breaker; the test needs it closed")
	}
	durable.down.Store(false)
	if got := getInt(load(t, m, token), "n"); got != 2 {
		t.Errorf("after a failed request the session reads n=%d, want 2: its memcached copy was deleted though the database never got the change", got)
	}
}

// I4 across a scale-out and back: a node is added, sessions move to it and
// change there (synced every minute), and then it is removed again: the
// sessions move back to the nodes that held them before, which still have
// their old copies. Such a copy may be served until its next sync, which
// merges it with the row: the changes made on the added node stand, with a
// change made on the old copy meanwhile.
func TestFaultScaleOutAndBack(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	m := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
	store := m.Store()

	// A session that the added node will take over.
	p := newPlacement(t, st.mc.Addr, extra.Addr)
	var token string
	for i := 0; token == "" && i < 1000; i++ {
		tok := put(t, m, "", "n", 1)
		if p.owner(tok) == 1 {
			token = tok
		}
	}
	if token == "" {
		t.Fatal("no session maps to the added node")
	}

	if err := store.AddServer(extra.Addr, 0); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 5; i++ { // changes on the added node, synced every minute
		st.clock.Advance(40 * time.Second)
		put(t, m, token, "n", i)
		flush(t, store)
	}
	st.syncDue(t, time.Minute, store) // the last change reaches the row too
	if err := store.RemoveServer(extra.Addr); err != nil {
		t.Fatal(err)
	}
	st.clock.Advance(2 * time.Minute)
	put(t, m, token, "m", "on the old copy") // its sync is due
	flush(t, store)
	if s := load(t, m, token); getInt(s, "n") != 5 || getString(s, "m") != "on the old copy" {
		t.Errorf("after scaling back in and the old copy's sync the session reads n=%d m=%q, want 5 and the change made on the old copy (row: %v)",
			getInt(s, "n"), getString(s, "m"), st.rowValues(t, token))
	}
	st.mc.Restart()
	if s := load(t, m, token); getInt(s, "n") != 5 || getString(s, "m") != "on the old copy" {
		t.Errorf("the row reads n=%d m=%q", getInt(s, "n"), getString(s, "m"))
	}
}

// gatedFlush starts a Flush of s, whose durable tier is g, with g's gate
// shut, and returns once the background writer waits at the gate; the
// Flush's result arrives on the channel after g.open.
func gatedFlush(t *testing.T, s *core.Store, g *gatedDurable) <-chan error {
	t.Helper()
	g.shut()
	held := g.held.Load()
	done := make(chan error, 1)
	go func() { done <- s.Flush(context.Background()) }()
	waitFor(t, "the background writer to reach the database", func() bool { return g.held.Load() > held })
	return done
}

// I6 (rule 1) with two app servers' writers on one copy: B's writer reads
// the copy (n=2) and is slow to reach the database; meanwhile the user's
// next change (n=3) is synced by A's writer. B's write, built on the row
// version both started from, is refused; the row then holds a later state
// of the same copy than B's, and B's older state must not replace it: a
// cache loss after that must find n=3, a change synced before the loss.
func TestSlowWriterDoesNotUndoNewerSyncOfSameCopy(t *testing.T) {
	st := newStack(t, backends(t)[0])
	minute := func(c *core.StoreConfig) { c.SyncInterval = time.Minute }
	var gate *gatedDurable
	a := st.manager(t, minute, nil)
	b := st.manager(t, func(c *core.StoreConfig) {
		minute(c)
		gate = &gatedDurable{Tier: c.Durable}
		c.Durable = gate
	}, nil)
	token := put(t, a, "", "n", 1) // in both tiers

	st.clock.Advance(2 * time.Minute)
	put(t, b, token, "n", 2) // due on B's writer
	bFlushed := gatedFlush(t, b.Store(), gate)
	put(t, a, token, "n", 3) // due on A's writer
	flush(t, a.Store())
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "3" {
		t.Fatalf("A's sync: the row holds n=%v, want 3", got)
	}
	gate.open() // B's write of n=2 lands
	if err := <-bFlushed; err != nil {
		t.Fatal(err)
	}
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "3" {
		t.Errorf("after B's slower sync the row holds n=%v, want 3: an older state of the copy replaced a newer one", got)
	}
	st.mc.Restart()
	if got := getInt(load(t, a, token), "n"); got != 3 {
		t.Errorf("after a memcached loss the session reads n=%d, want 3 (synced before the loss)", got)
	}
}

// I5: app server A's sync of a change of n is on its way to the database
// when memcached loses the session; app server B restores the session
// from the row and makes a durable change of the same key. A's delayed
// sync, of a change made before B's, must not replace B's durable change
// (docs/consistency.md: it is replaced only by a later change of the same
// key).
func TestDelayedSyncDoesNotReplaceLaterDurableChange(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var gate *gatedDurable
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		gate = &gatedDurable{Tier: c.Durable}
		c.Durable = gate
	}, nil)
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
	token := put(t, a, "", "n", 1)

	st.clock.Advance(2 * time.Minute)
	put(t, a, token, "n", 2) // due: A's writer takes it and waits at the gate
	aFlushed := gatedFlush(t, a.Store(), gate)
	st.mc.Restart() // memcached loses the session; the row holds n=1
	st.clock.Advance(time.Second)
	s := load(t, b, token)
	s.Put("n", 5)
	s.MarkDurable()
	if err := b.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	gate.open() // A's delayed sync of n=2 lands
	if err := <-aFlushed; err != nil {
		t.Fatal(err)
	}
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "5" {
		t.Errorf("the row holds n=%v, want B's durable 5: a delayed sync of an earlier change replaced it", got)
	}
}
