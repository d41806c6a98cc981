package integration

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// Deterministic reproductions of the anomalies the load scenarios of
// TestFault meet at random: with several app servers, an older copy of a
// session can come back over writes that were acknowledged after it.

// gatedDurable holds every Save while its gate is shut, to delay one app
// server's background writer at will.
type gatedDurable struct {
	core.Durable
	mu   sync.Mutex
	gate chan struct{} // nil: open
	held atomic.Int32  // Saves that waited at the gate
}

func (g *gatedDurable) Save(ctx context.Context, rec core.Record) (bool, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.held.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return g.Durable.Save(ctx, rec)
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

// App server A's periodic sync of a session is still on its way to the
// database (slow database, retry backoff) when memcached loses the session.
// App server B reloads the session from the database and makes a durable
// change, written to the database before the response. A's delayed sync
// then lands and, its version number being higher, replaces B's durable
// change: the change is gone for good once memcached loses the session
// again.
//
// Cause: versions restart from the database row's version when a session is
// reloaded after a memcached loss, so the new branch reuses version numbers
// that the lost branch already handed out (here 2..4), and the database's
// "higher version wins" upsert cannot tell the branches apart.
func TestFaultDelayedSyncAfterCacheLoss(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var gate *gatedDurable
	durable := func(c *core.Config) { c.DurableKeys = []string{"cart"} }
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		gate = &gatedDurable{Durable: c.Durable}
		c.Durable = gate
	}, durable)
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, durable)

	token := put(t, a, "", "n", 1) // version 1, in both tiers
	st.clock.Advance(2 * time.Minute)
	gate.shut()
	put(t, a, token, "n", 2) // version 2: due, handed to A's background writer, held
	for deadline := time.Now().Add(5 * time.Second); gate.held.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("A's background writer never tried to sync")
		}
	}
	put(t, a, token, "n", 3) // version 3: memcached only
	st.clock.Advance(2 * time.Minute)
	put(t, a, token, "n", 4) // version 4: due, queued behind version 2

	st.mc.Restart() // memcached loses the session; the database holds version 1
	// Time moves on while memcached restarts: B's change is made after A's.
	st.clock.Advance(time.Second)
	s := load(t, b, token)
	if s.IsNew() || s.GetInt("n") != 1 {
		t.Fatalf("after the restart B reads new=%v n=%d, want the database's n=1", s.IsNew(), s.GetInt("n"))
	}
	s.Put("cart", "book") // durable: in the database before Save returns
	if err := b.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if _, e, _ := st.row(t, token); e.Version == 0 {
		t.Fatal("B's durable write is not in the database")
	}

	gate.open() // A's delayed syncs land
	flush(t, a.Store())
	st.mc.Restart()
	s = load(t, b, token)
	if got := s.GetString("cart"); got != "book" {
		_, e, _ := st.row(t, token)
		t.Errorf("B's durable write (cart=book) is lost: the database holds version %d with n=%d and no cart — A's delayed sync of the lost copy outranked it",
			e.Version, s.GetInt("n"))
	}
}

// A node is cut off from both app servers (paused: it keeps its items) and
// both breakers open. App server A writes a session through to the
// database. The node comes back, and B's breaker closes before A's: B has no
// record of A's write-through, so it serves the node's stale copy (and
// writes over it), though A will purge that key when its own breaker closes.
// In production the window is up to one BreakerCooldown (default 2s) per app
// server; here A's cooldown is long so that B's breaker surely closes first.
func TestFaultStaleCopyOnOtherAppServerAfterPartition(t *testing.T) {
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

	st.mc.Pause()
	for _, m := range []*core.Manager{a, b} {
		// A read pays the timeout, opens the breaker and falls back to the
		// database. (SIGSTOP takes a moment to land: until then the node
		// still answers.)
		for deadline := time.Now().Add(5 * time.Second); !m.Store().Stats().Nodes[0].Open; {
			if time.Now().After(deadline) {
				t.Fatal("breaker not open")
			}
			if s := load(t, m, token); s.GetInt("n") != 1 {
				t.Fatalf("n = %d during the partition, want 1", s.GetInt("n"))
			}
		}
	}
	put(t, a, token, "n", 2) // write-through to the database
	st.mc.Resume()
	deadline := time.Now().Add(5 * time.Second)
	for b.Store().Stats().Nodes[0].Open {
		if time.Now().After(deadline) {
			t.Fatal("B's breaker did not close after the node came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := load(t, b, token).GetInt("n"); got != 2 {
		t.Errorf("after the partition B reads n=%d, want 2: the node's stale copy (n=1) hides A's write-through", got)
	}
}

// switchDurable is a durable tier that can be switched off: every call then
// fails, as when the database is unreachable.
type switchDurable struct {
	core.Durable
	down atomic.Bool
}

var errDatabaseDown = errors.New("injected: database unreachable")

func (d *switchDurable) Load(ctx context.Context, key string, now time.Time) (core.Record, bool, error) {
	if d.down.Load() {
		return core.Record{}, false, errDatabaseDown
	}
	return d.Durable.Load(ctx, key, now)
}

func (d *switchDurable) Save(ctx context.Context, rec core.Record) (bool, error) {
	if d.down.Load() {
		return false, errDatabaseDown
	}
	return d.Durable.Save(ctx, rec)
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

// While the database is unreachable, one memcached write fails
// transiently (the node stays up, its breaker closed). The request fails
// with 503, as it should: neither tier took its change. But the session's
// memcached copy, the only one holding its changes since the last sync, must
// survive the failed request.
//
// Cause: Store.Update defers markDirty whenever the memcached write failed,
// and runs it even when the write-through to the database failed too; with
// the node's breaker closed, markDirty deletes the key at once.
func TestFaultFailedWriteThroughKeepsCacheCopy(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var (
		durable *switchDurable
		dialer  flakyDialer
	)
	m := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		durable = &switchDurable{Durable: c.Durable}
		c.Durable = durable
		c.Memcached.DialContext = dialer.DialContext
	}, nil)
	ctx := context.Background()

	token := put(t, m, "", "n", 1) // synced
	st.clock.Advance(10 * time.Second)
	put(t, m, token, "n", 2) // memcached only: the next sync is due in 50 s

	durable.down.Store(true)
	s := load(t, m, token)
	if s.GetInt("n") != 2 {
		t.Fatalf("n = %d, want 2", s.GetInt("n"))
	}
	s.Put("n", 3)
	dialer.armed.Store(true)
	if err := m.Save(ctx, s); !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("Save with memcached failing once and the database down: %v, want ErrUnavailable", err)
	}
	if open := m.Store().Stats().Nodes[0].Open; open {
		t.Fatal("one failure opened the breaker; the test needs it closed")
	}
	durable.down.Store(false)
	if got := load(t, m, token).GetInt("n"); got != 2 {
		t.Errorf("after a failed request the session reads n=%d, want 2: its memcached copy was deleted though the database never got the change", got)
	}
}

// A node is added (scale out), sessions move to it and change there, and
// then it is removed again (scale in): the sessions move back to the nodes
// that held them before, which still have their old copies. Those copies
// are not misses: they are served as current, hiding every change made
// while the session lived on the added node, synced or not.
func TestFaultScaleOutAndBack(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	m := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
	store := m.Store()

	// A session that the added node will take over.
	nodes := []*faultNode{{name: "n0", proxy: &faultProxy{Addr: st.mc.Addr}}, {name: "n1", proxy: &faultProxy{Addr: extra.Addr}}}
	var token string
	for i := 0; token == "" && i < 1000; i++ {
		tok := put(t, m, "", "n", 1)
		if ownerOf(t, nodes, tok) == 1 {
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
	}
	flush(t, store)
	if err := store.RemoveServer(extra.Addr); err != nil {
		t.Fatal(err)
	}
	if got := load(t, m, token).GetInt("n"); got != 5 {
		_, e, _ := st.row(t, token)
		t.Errorf("after scaling back in the session reads n=%d, want 5 (the database holds version %d): the old node's copy from before the scale-out was served", got, e.Version)
	}
}
