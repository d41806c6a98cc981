package integration

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// Regression tests for the defects of the reliability issue (docs/consistency.md
// names the invariant each one breaks). Each failed on the code before its fix.

// failingDurable fails every Save while failing is set, as a database that
// refuses connections would.
type failingDurable struct {
	core.Durable
	failing atomic.Bool
}

var errRefused = errors.New("connection refused (test)")

func (f *failingDurable) Save(ctx context.Context, rec core.Record) (bool, error) {
	if f.failing.Load() {
		return false, errRefused
	}
	return f.Durable.Save(ctx, rec)
}

// downDurable is a failingDurable whose reads fail too: a database that
// refuses connections.
type downDurable struct{ *failingDurable }

func (d downDurable) Load(ctx context.Context, key string, now time.Time) (core.Record, bool, error) {
	if d.failing.Load() {
		return core.Record{}, false, errRefused
	}
	return d.Durable.Load(ctx, key, now)
}

// I3 (defect a): memcached drops an idle session's entry at its TTL; the
// next request must not read the database row — alive until last sync +
// IdleTimeout + SyncInterval — back as an active session. Real time: the
// point is memcached's own expiry.
func TestIdleSessionStaysDeadAfterCacheTTL(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, func(c *core.StoreConfig) {
		c.Clock = time.Now
		c.SyncInterval = 2 * time.Second
	}, func(c *core.Config) {
		c.IdleTimeout = 3 * time.Second
		c.TouchInterval = 500 * time.Millisecond
	})
	token := put(t, m, "", "user", "alice")
	created := time.Now()
	// Idle past IdleTimeout, but before the row's ExpiresAt (5 s): memcached
	// rounds TTLs to whole seconds, so 3.4 s is past a 3 s TTL.
	time.Sleep(time.Until(created.Add(3400 * time.Millisecond)))
	if _, _, found := st.rowAt(t, token, time.Now()); !found {
		t.Fatal("the row should still look alive: the test needs it to")
	}
	if s := load(t, m, token); !s.IsNew() {
		t.Errorf("a session idle for %v (IdleTimeout 3s) was served again: user=%v", time.Since(created).Round(time.Millisecond), s.Get("user"))
	}
}

// I3 (defect b): a row the reaper postpones (archive hook failed) must stay
// dead to readers, also after memcached loses its dead envelope.
func TestReaperPostponedRowStaysDead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
		token := put(t, m, "", "user", "alice")
		st.clock.Advance(time.Hour) // idle 30m + sync 1m: dead in both tiers
		r, err := m.Store().NewReaper(core.ReaperConfig{Archive: func(context.Context, core.ArchivedSession) error {
			return errors.New("archive down")
		}})
		if err != nil {
			t.Fatal(err)
		}
		rep, _ := r.RunOnce(context.Background())
		if rep.Errors != 1 {
			t.Fatalf("reaper report %v: want the archive failure to postpone the row", rep)
		}
		st.mc.Restart() // memcached loses the dead envelope
		if s := load(t, m, token); !s.IsNew() {
			t.Errorf("a dead session came back from its postponed row: user=%v", s.Get("user"))
		}
	})
}

// I2 (defect c): after AddServer, DestroySubject writes its tombstone on the
// key's new owner. When that tombstone is gone (evicted, expired), a miss
// must not move the previous owner's copy back.
func TestDestroySubjectAfterAddServerHolds(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	m := st.manager(t, nil, nil)
	nodes := []*faultNode{{name: "n0", proxy: &faultProxy{Addr: st.mc.Addr}}, {name: "n1", proxy: &faultProxy{Addr: extra.Addr}}}
	ctx := context.Background()
	var token string
	for i := 0; token == "" && i < 1000; i++ {
		s := load(t, m, "")
		s.SetSubject("alice")
		if err := m.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		if ownerOf(t, nodes, s.Token()) == 1 {
			token = s.Token()
		}
	}
	if token == "" {
		t.Fatal("no session maps to the added node")
	}
	if err := m.Store().AddServer(extra.Addr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.DestroySubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// The tombstone on the new owner goes (eviction); the database's stays.
	raw := memcache.New(extra.Addr)
	if err := raw.Delete("hs:" + core.StorageKey(token)); err != nil {
		t.Fatal(err)
	}
	if s := load(t, m, token); !s.IsNew() {
		t.Errorf("log out everywhere was undone: the previous owner's copy came back (subject %q)", s.Subject())
	}
}

// I4 (defect d): without memcached, a read-only request whose touch is due
// must not write back what it read over a change saved meanwhile.
func TestReadDoesNotRevertWriteWithoutMemcached(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, func(c *core.StoreConfig) { c.Memcached = core.MemcachedConfig{} }, nil)
		ctx := context.Background()
		token := put(t, m, "", "cart", "empty")
		st.clock.Advance(2 * time.Minute) // the touch is due
		writer := load(t, m, token)
		st.clock.Advance(10 * time.Millisecond)
		reader := load(t, m, token) // read after the writer's read
		writer.Put("cart", "book")
		if err := m.Save(ctx, writer); err != nil {
			t.Fatal(err)
		}
		if err := m.Save(ctx, reader); err != nil { // read-only: a touch
			t.Fatal(err)
		}
		if got := load(t, m, token).GetString("cart"); got != "book" {
			t.Errorf("cart = %q after a read-only request, want the saved change %q", got, "book")
		}
	})
}

// I5 (defect e): a durable write that the database refused is kept, never
// silently dropped: Close reports it, Stats counts it, and a full queue
// fails the request instead of dropping one.
func TestDurableWriteNeverDroppedSilently(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var fd *failingDurable
	store := st.store(t, func(c *core.StoreConfig) {
		fd = &failingDurable{Durable: c.Durable}
		c.Durable = fd
		c.SyncQueueSize = 1
	})
	m, err := core.New(core.Config{Store: store, Logger: quiet, DurableKeys: []string{"cart"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := put(t, m, "", "n", 1)
	b := put(t, m, "", "n", 1)
	fd.failing.Store(true)
	put(t, m, a, "cart", "book") // held in the background writer
	s := load(t, m, b)
	s.Put("cart", "pen")
	if err := m.Save(ctx, s); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("a durable write that no queue slot can hold: Save = %v, want ErrUnavailable", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err = store.Close(cctx)
	if !errors.Is(err, core.ErrNotSaved) {
		t.Errorf("Close = %v, want ErrNotSaved for the unsaved durable write", err)
	}
	if got := store.Stats().DurableLost; got != 1 {
		t.Errorf("Stats.DurableLost = %d, want 1", got)
	}
}

// I5: the write held while the database refused reaches it when it returns.
func TestDurableWriteHeldUntilDatabaseReturns(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var fd *failingDurable
	store := st.store(t, func(c *core.StoreConfig) {
		fd = &failingDurable{Durable: c.Durable}
		c.Durable = fd
	})
	m, err := core.New(core.Config{Store: store, Logger: quiet, DurableKeys: []string{"cart"}})
	if err != nil {
		t.Fatal(err)
	}
	token := put(t, m, "", "n", 1)
	fd.failing.Store(true)
	put(t, m, token, "cart", "book")
	fd.failing.Store(false)
	flush(t, store)
	st.mc.Restart()
	if got := load(t, m, token).GetString("cart"); got != "book" {
		t.Errorf("cart = %q after the database returned and memcached restarted, want %q", got, "book")
	}
}

// I7 (defect f): a database that accepts connections and never answers
// costs a login at most DBTimeout; memcached then holds the new session.
func TestHungDatabaseDoesNotBlockLogin(t *testing.T) {
	dsn := os.Getenv(postgresDSNEnv)
	if dsn == "" {
		requireNetworkedDB(t, faultBackend{name: "sqlite"})
	}
	upstream, rewrite, err := proxiedPostgresDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, newToxiproxy(), "pg-hang", upstream)
	db := openPostgres(t, rewrite(proxy.Addr))
	table := gormtest.UniqueTable("it_hang_")
	d, err := gormstore.New(db, gormstore.Config{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Migrator().DropTable(table) })
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
		Durable:   d, Logger: quiet, DBTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := core.New(core.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	s := load(t, m, "")
	s.Put("user", "alice")
	err = m.Save(ctx, s)
	took := time.Since(start)
	proxy.Unblackhole()
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer closeCancel()
	defer store.Close(closeCtx)
	if err != nil {
		t.Fatalf("login with the database hung: %v after %v", err, took)
	}
	if took > 5*time.Second {
		t.Errorf("login took %v with DBTimeout 300ms: the hung database blocked it", took)
	}
	if got := load(t, m, s.Token()).GetString("user"); got != "alice" {
		t.Errorf("user = %q, want the new session from memcached", got)
	}
}

// Defect g: a subject over 255 bytes (here 200 two-byte characters) is
// refused with a named error, not cut inside a character and reported as
// an outage; the stored session is untouched.
func TestLongSubjectRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		for _, cache := range []bool{true, false} {
			m := st.manager(t, func(c *core.StoreConfig) {
				if !cache {
					c.Memcached = core.MemcachedConfig{}
				}
			}, nil)
			token := put(t, m, "", "user", "alice")
			s := load(t, m, token)
			s.SetSubject(strings.Repeat("é", 200))
			err := m.Save(context.Background(), s)
			if !errors.Is(err, core.ErrInvalidSubject) || errors.Is(err, core.ErrUnavailable) {
				t.Errorf("memcached=%v: Save = %v, want ErrInvalidSubject and not ErrUnavailable", cache, err)
			}
			if core.StatusCode(err) == 503 {
				t.Errorf("memcached=%v: a data error answered 503", cache)
			}
			if got := load(t, m, token); got.IsNew() || got.GetString("user") != "alice" || got.Subject() != "" {
				t.Errorf("memcached=%v: the stored session changed: new=%v subject=%q", cache, got.IsNew(), got.Subject())
			}
		}
	})
}

// heldLoad holds the result of the next Load while hold is set: the app
// server has read the row, and the rest of its request waits.
type heldLoad struct {
	core.Durable
	hold    atomic.Bool
	reached chan struct{} // closed when a Load is held
	release chan struct{} // close to let it go on
}

func (h *heldLoad) Load(ctx context.Context, key string, now time.Time) (core.Record, bool, error) {
	rec, found, err := h.Durable.Load(ctx, key, now)
	if h.hold.CompareAndSwap(true, false) {
		close(h.reached)
		<-h.release
	}
	return rec, found, err
}

// loadHeld loads token on m in the background, with its next row read held,
// and returns once that read is held; the session arrives on the channel
// after release is closed.
func (h *heldLoad) loadHeld(t *testing.T, m *core.Manager, token string) <-chan *core.Session {
	h.hold.Store(true)
	loaded := make(chan *core.Session, 1)
	go func() {
		s, err := m.Load(context.Background(), token)
		if err != nil {
			t.Error(err)
		}
		loaded <- s
	}()
	<-h.reached
	return loaded
}

// I4 and I2 (seed 2110 of the fault-history checker): app server R restores
// a session from its row after a cache loss. Between R's read of the row
// and R's refill, app server W, whose memcached write fails once, writes a
// change (or a logout) through to the database and deletes the node's copy.
// R's refill then lands in the emptied slot: before the fix the older copy
// hid W's change, or revived the destroyed session, until memcached dropped
// it.
func TestRefillDoesNotHideWriteAround(t *testing.T) {
	for _, logout := range []bool{false, true} {
		name := map[bool]string{false: "change", true: "logout"}[logout]
		t.Run(name, func(t *testing.T) {
			st := newStack(t, backends(t)[0])
			held := &heldLoad{reached: make(chan struct{}), release: make(chan struct{})}
			r := st.manager(t, func(c *core.StoreConfig) {
				held.Durable = c.Durable
				c.Durable = held
			}, nil)
			var dialer flakyDialer
			w := st.manager(t, func(c *core.StoreConfig) { c.Memcached.DialContext = dialer.DialContext }, nil)
			ctx := context.Background()

			token := put(t, w, "", "n", 1) // the row holds n=1
			raw := memcache.New(st.mc.Addr)
			if err := raw.Delete("hs:" + core.StorageKey(token)); err != nil {
				t.Fatal(err) // the cache loss
			}

			restored := held.loadHeld(t, r, token) // R has read n=1 from the row

			s := load(t, w, token) // W restores too
			dialer.armed.Store(true)
			if logout {
				if err := s.Destroy(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				s.Put("n", 2)
				if err := w.Save(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			if dialer.armed.Load() {
				t.Fatal("W's memcached write did not fail: the test needs it to go around memcached")
			}
			if _, err := raw.Get("hs:" + core.StorageKey(token)); !errors.Is(err, memcache.ErrCacheMiss) {
				t.Fatalf("W left a copy in memcached (%v): the test needs the slot empty for R's refill", err)
			}
			close(held.release)
			got := <-restored

			for _, m := range []*core.Manager{r, w} {
				if g := load(t, m, token); logout && !g.IsNew() {
					t.Errorf("the logout was undone by R's refill: n=%d", g.GetInt("n"))
				} else if !logout && g.GetInt("n") != 2 {
					t.Errorf("after R's refill the session reads n=%d, want 2: the older copy hides W's write", g.GetInt("n"))
				}
			}
			if logout && !got.IsNew() {
				t.Errorf("R's own request served the destroyed session: n=%d", got.GetInt("n"))
			}
			if !logout && got.GetInt("n") != 2 {
				t.Errorf("R's own request read n=%d, want 2", got.GetInt("n"))
			}
		})
	}
}

// I4 (seed 2110 of the fault-history checker): app server A cannot reach
// the node and writes a change through to the database; the node loses the
// session meanwhile. App server B, which reaches the node, restores the
// session and changes it twice, the second time in memcached only (no sync
// due yet). When A's breaker closes, A purges the key it wrote around the
// node: before the fix the purge deleted B's newer copy, and B's
// acknowledged change was gone. The purge must remove only copies older
// than A's write.
func TestPurgeKeepsNewerCopy(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 20 * time.Millisecond
	}, nil)
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
	token := put(t, a, "", "n", 1)

	proxy.Cut()
	put(t, a, token, "n", 2) // written around the node, to the database
	if !a.Store().Stats().Nodes[0].Open {
		t.Fatal("A's breaker did not open: the test needs A's write to go around the node")
	}
	rowA, _, found := st.row(t, token)
	if !found {
		t.Fatal("A's write did not reach the database")
	}
	raw := memcache.New(st.mc.Addr)
	if err := raw.Delete("hs:" + core.StorageKey(token)); err != nil {
		t.Fatal(err) // the node loses the session (restart, eviction)
	}
	if got := load(t, b, token).GetInt("n"); got != 2 {
		t.Fatalf("B restored n=%d, want 2", got)
	}
	// A row written around a node is marked never synced (aroundNode), so
	// B's first change is due and the background writer takes it to the
	// database; the next one lands in memcached only.
	put(t, b, token, "n", 3)
	var synced core.Record
	waitFor(t, "B's first change to reach the database", func() bool {
		synced, _, _ = st.row(t, token)
		return synced.Version > rowA.Version
	})
	put(t, b, token, "n", 4) // memcached only: the next sync is a minute away
	if row, _, _ := st.row(t, token); row.Version != synced.Version {
		t.Fatal("B's second change reached the database: the test needs it in memcached only")
	}

	proxy.Restore()
	awaitBreakerClosed(t, a.Store())
	for _, m := range []*core.Manager{a, b} {
		if got := load(t, m, token).GetInt("n"); got != 4 {
			t.Errorf("after A's purge the session reads n=%d, want 4: B's change was purged", got)
		}
	}
}

// I1 (seed 1081 of the fault-history checker): a request reads a session
// from its row, about to expire, because memcached is unreachable (the row
// stands in: I3's overshoot), and the node answers again before the
// request's touch, which lands in memcached only. Before the fix the row
// kept its old expiry, and a cache loss after it logged the user out,
// minutes after their last request.
func TestReadAroundNodeMovesRowAhead(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	m := st.manager(t, func(c *core.StoreConfig) {
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 20 * time.Millisecond
	}, nil)
	token := put(t, m, "", "user", "alice")
	rec, _, _ := st.row(t, token)

	// Idle until a minute before the row expires (past IdleTimeout: only
	// the row, standing in for an unreachable node, still serves it).
	st.clock.Advance(rec.ExpiresAt.Sub(st.clock.Now()) - time.Minute)
	proxy.Cut()
	s := load(t, m, token)
	if s.IsNew() {
		t.Fatal("the row did not stand in for the unreachable node")
	}
	proxy.Restore()
	awaitBreakerClosed(t, m.Store())
	if err := m.Save(context.Background(), s); err != nil { // the touch
		t.Fatal(err)
	}

	raw := memcache.New(st.mc.Addr)
	if err := raw.Delete("hs:" + core.StorageKey(token)); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatal(err) // the cache loss (unless the purge removed the idle copy already)
	}
	st.clock.Advance(2 * time.Minute) // past the row's old expiry, well within IdleTimeout of the request
	if s := load(t, m, token); s.IsNew() || s.GetString("user") != "alice" {
		t.Errorf("the user was logged out %v after their last request", 2*time.Minute)
	}
}

// I1: a touch written around an unreachable node keeps the session's
// version. The node kept its copy (a partition, not a restart), idle since
// before the touch. When the node answers again, that copy must go: it is
// the same version but staler, and served as it is it reads as idle past
// IdleTimeout, logging out a user active minutes ago.
func TestPurgeRemovesSameVersionIdleCopy(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	m := st.manager(t, func(c *core.StoreConfig) {
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 20 * time.Millisecond
	}, func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	token := put(t, m, "", "user", "alice")

	st.clock.Advance(29 * time.Minute)
	proxy.Cut()
	readOnly(t, m, token) // its touch goes to the row, around the node
	proxy.Restore()
	awaitBreakerClosed(t, m.Store())
	st.clock.Advance(2 * time.Minute) // 31m after the node's copy, 2m after the touch
	if s := load(t, m, token); s.IsNew() || s.GetString("user") != "alice" {
		t.Error("the user was logged out 2 minutes after their last request: the node's idle copy outlived the purge")
	}
}

// I4 for core.KV (fiber's Storage): a key deleted, then set again while its
// node is unreachable, is written around the node. The node's tombstone of
// the Delete is older than the Set: when the node answers again the purge
// removes it, and the Set is read back.
func TestPurgeRemovesTombstoneBeforeReuse(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	s := st.store(t, func(c *core.StoreConfig) {
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 20 * time.Millisecond
	})
	kv := core.NewKV(s, time.Hour, 4)
	ctx := context.Background()
	if err := kv.Set(ctx, "k", []byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	st.clock.Advance(time.Second)
	proxy.Cut()
	if err := kv.Set(ctx, "k", []byte("two"), 0); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	awaitBreakerClosed(t, s)
	got, err := kv.Get(ctx, "k")
	if err != nil || string(got) != "two" {
		t.Errorf("after the node came back Get = %q, %v; want \"two\": the Delete's tombstone hides the Set", got, err)
	}
}

// I1 (soak seed 10175): a node is added and removed again while app
// servers apply the changes one after another. An app server still on the
// old ring wrote the session's key on its old owner after another had
// moved it to the added node; the session lives on, on the added node,
// with a durable change. When the node is removed, the key's old owner
// serves it again, and holds that copy, idle since: before the fix it read
// as expired and logged the user out. A dead copy of a key that changed
// owner is checked against the row, as a live one is.
func TestRemovedNodeDeadCopyCheckedAgainstRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	nodes := []*faultNode{{name: "n0", proxy: &faultProxy{Addr: st.mc.Addr}}, {name: "n1", proxy: &faultProxy{Addr: extra.Addr}}}
	m := st.manager(t, nil, func(c *core.Config) {
		c.IdleTimeout = 30 * time.Minute
		c.DurableKeys = []string{"cart"}
	})
	token := loginOn(t, m, nodes, 1)
	mkey := "hs:" + core.StorageKey(token)
	old, err := memcache.New(st.mc.Addr).Get(mkey)
	if err != nil {
		t.Fatal(err)
	}

	if err := m.Store().AddServer(extra.Addr, 0); err != nil {
		t.Fatal(err)
	}
	readOnly(t, m, token) // moves the copy to the added node
	// An app server that has not added the node yet writes the key on its
	// old owner.
	if err := memcache.New(st.mc.Addr).Set(&memcache.Item{Key: mkey, Value: old.Value, Expiration: 3600}); err != nil {
		t.Fatal(err)
	}
	st.clock.Advance(20 * time.Minute)
	put(t, m, token, "cart", "book") // durable: the row is newer than that copy
	st.clock.Advance(15 * time.Minute)
	readOnly(t, m, token) // active; the old owner's copy is 35 minutes idle

	if err := m.Store().RemoveServer(extra.Addr); err != nil {
		t.Fatal(err)
	}
	if s := load(t, m, token); s.IsNew() || s.GetString("cart") != "book" {
		t.Errorf("after the node was removed: new=%v cart=%q, want the active session with cart=book", s.IsNew(), s.GetString("cart"))
	}
}

// I1 (soak seed 34089): app server A cannot reach the node and serves a
// session from its row (I3's overshoot: it was idle just past IdleTimeout),
// moving the row ahead. App server B reaches the node, whose copy is the
// same version and idle since before A's request; A has not purged it yet.
// Before the fix B read it as expired: the user, served by A a moment ago,
// was logged out. A dead copy is checked against the row.
func TestDeadCopyCheckedAgainstRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	a := st.manager(t, func(c *core.StoreConfig) {
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
	}, func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	b := st.manager(t, nil, func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	token := put(t, a, "", "user", "alice")

	st.clock.Advance(31 * time.Minute) // the copy is dead; the row still stands
	proxy.Cut()
	readOnly(t, a, token)
	if s := load(t, b, token); s.IsNew() || s.GetString("user") != "alice" {
		t.Error("B logged out the user A served a moment ago: the node's dead copy hid the row")
	}
}

// I3 (soak seed 44072): a pass postpones an expired row (the archive hook
// failed) and marks it dead to readers through its Deadline column. An app
// server whose clock runs 50 ms behind the reaper's reads the key a moment
// later, after memcached lost the dead envelope: before the fix the column
// held the pass's own now, still ahead on that clock, and the session,
// expired a second earlier, was served again.
func TestPostponedRowDeadToSlowerClock(t *testing.T) {
	st := newStack(t, backends(t)[0])
	a := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
	b := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		c.Clock = func() time.Time { return st.clock.Now().Add(-50 * time.Millisecond) }
	}, nil)
	token := put(t, a, "", "user", "alice")
	rec, _, _ := st.row(t, token)
	st.clock.Advance(rec.ExpiresAt.Sub(st.clock.Now()) + time.Second) // expired a second ago
	r, err := a.Store().NewReaper(core.ReaperConfig{Archive: func(context.Context, core.ArchivedSession) error {
		return errors.New("archive down")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rep, _ := r.RunOnce(context.Background()); rep.Errors != 1 {
		t.Fatalf("reaper report %v: want the archive failure to postpone the row", rep)
	}
	st.mc.Restart() // memcached loses the dead envelope
	if s := load(t, b, token); !s.IsNew() {
		t.Errorf("a session expired a second ago came back from its postponed row on a clock 50 ms behind: user=%v", s.Get("user"))
	}
}

// awaitBreakerClosed waits until s's breaker for its first node has closed
// (the node answers again and the purge ran), for at most 5 s.
func awaitBreakerClosed(t *testing.T, s *core.Store) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Nodes[0].Open; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the breaker did not close after the node came back")
		}
	}
}

// I5 (soak seed 42320): app server A writes a durable change around a node
// it cannot reach, then removes that node from its ring before the node
// answers again. App server B has not removed it yet, and its breaker
// never opened. Before the fix A's dirty keys went with the node, so the
// node's older copy was never purged and B served it (and could renew the
// token from it, losing the change for good). Now A's probe goes on purging
// the removed node for RingChangeWindow, and tries at least once after the
// removal however short the window (here shorter than BreakerCooldown).
func TestRemovedNodeDirtyKeysPurged(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	nodes := []*faultNode{{name: "n0", proxy: proxy}, {name: "n1", proxy: &faultProxy{Addr: extra.Addr}}}
	durable := func(c *core.Config) { c.DurableKeys = []string{"cart"} }
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		c.Memcached.Servers = []string{proxy.Addr, extra.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 300 * time.Millisecond
		c.Memcached.RingChangeWindow = time.Millisecond
	}, durable)
	// B reaches the same memcached as A's first node, directly: every key
	// is there on its ring.
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, durable)
	token := loginOn(t, a, nodes, 0)
	if s := load(t, b, token); s.GetString("user") != "alice" {
		t.Fatalf("B reads user=%q, want alice", s.GetString("user"))
	}

	proxy.Cut()
	put(t, a, token, "cart", "book") // durable, written around the node
	if i := slices.IndexFunc(a.Store().Stats().Nodes, func(n core.NodeStats) bool { return n.Addr == proxy.Addr && n.Open }); i < 0 {
		t.Fatal("A's breaker did not open: the test needs A's write to go around the node")
	}
	if err := a.Store().RemoveServer(proxy.Addr); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()

	deadline := time.Now().Add(5 * time.Second)
	for load(t, b, token).GetString("cart") != "book" {
		if time.Now().After(deadline) {
			t.Fatal("B still serves the copy older than A's durable change 5 s after the node answered: A never purged the node it removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// I5 (soak seed 42320): after an AddServer, app server A cannot reach the
// added node and writes a durable change around it, to the database. The
// key's previous owner still holds the copy from before. App server B,
// whose breaker for the added node never opened, misses there and moves
// the previous owner's copy over. Before the fix B served that copy — the
// change gone, and a RenewToken from it loses it for good. A moved copy is
// now checked against the row, like a hit on a key that changed owner.
func TestPriorOwnerCopyCheckedAgainstRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	proxy := startProxy(t, newToxiproxy(), "mc-added", extra.Addr)
	nodes := []*faultNode{{name: "n0", proxy: &faultProxy{Addr: st.mc.Addr}}, {name: "n1", proxy: proxy}}
	durable := func(c *core.Config) { c.DurableKeys = []string{"cart"} }
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = time.Minute // A stays away from the added node
	}, durable)
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, durable)
	token := loginOn(t, a, nodes, 1)
	for _, m := range []*core.Manager{a, b} {
		if err := m.Store().AddServer(proxy.Addr, 0); err != nil {
			t.Fatal(err)
		}
	}

	before, _, _ := st.row(t, token)
	proxy.Cut()
	put(t, a, token, "cart", "book") // durable, written around the added node
	if row, _, _ := st.row(t, token); row.Version <= before.Version {
		t.Fatal("A's durable change did not reach the database")
	}
	proxy.Restore()

	if s := load(t, b, token); s.GetString("cart") != "book" {
		t.Errorf("B serves cart=%q from the previous owner's copy, want book: A's durable change is lost", s.GetString("cart"))
	}
}

// I1 (found by review): a change written around an unreachable node goes
// to the row with its exact idle expiry. Once the node answered, the next
// changes landed there only (the last sync was recent), and a memcached
// loss then found the row expired minutes before the session was idle for
// IdleTimeout. The row written around the node is now marked never synced
// (aroundNode), so the first write through the node again is due and moves
// the row ahead.
func TestRowWrittenAroundNodeOutlivesLaterChanges(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	m := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = 2 * time.Minute
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 20 * time.Millisecond
	}, func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	token := put(t, m, "", "n", 1) // inserted: synced

	st.clock.Advance(time.Second)
	proxy.Cut()
	put(t, m, token, "n", 2) // around the node, to the row
	proxy.Restore()
	awaitBreakerClosed(t, m.Store())
	st.clock.Advance(50 * time.Second)
	// Due (the row written around the node is marked never synced): the
	// background writer moves the row ahead of the session's expiry.
	put(t, m, token, "n", 3)
	flush(t, m.Store())

	st.mc.Restart() // memcached loses the session
	st.clock.Advance(30*time.Minute - 10*time.Second)
	if s := load(t, m, token); s.IsNew() {
		t.Error("a session active 29m50s ago (IdleTimeout 30m) is gone after a memcached restart: its row expired 30m after the write around the node")
	}
}

// I2 (soak seeds 92093 and 112301): a RenewToken while the database hung.
// The new session was stored (memcached, and the background writer), and
// the old token's tombstone reached memcached but not the database; the
// Delete failed, so the request failed and the client kept the old token,
// which memcached now reported destroyed. A memcached loss then brought
// the old token back from its row, without the changes made since. A
// tombstone that memcached holds is now kept for the database by the
// background writer, like a durable write, and the Delete succeeds.
func TestDeleteHeldUntilDatabaseReturns(t *testing.T) {
	st := newStack(t, backends(t)[0])
	var fd *failingDurable
	m := st.manager(t, func(c *core.StoreConfig) {
		fd = &failingDurable{Durable: c.Durable}
		c.Durable = fd
	}, nil)
	ctx := context.Background()
	token := put(t, m, "", "user", "alice")

	fd.failing.Store(true)
	s := load(t, m, token)
	if err := s.Destroy(ctx); err != nil {
		t.Fatalf("Destroy while the database refuses, memcached up: %v, want nil (the tombstone is held)", err)
	}
	fd.failing.Store(false)
	flush(t, m.Store())
	if _, e, found := st.row(t, token); found && !e.Destroyed() {
		t.Fatal("the row is still the live session after the database returned")
	}
	st.mc.Restart() // memcached loses the tombstone
	if s := load(t, m, token); !s.IsNew() {
		t.Errorf("the destroyed session came back from its row: user=%v", s.Get("user"))
	}
}

// loginOn logs sessions in on m (user=alice) until one maps to nodes[i],
// and returns its token.
func loginOn(t *testing.T, m *core.Manager, nodes []*faultNode, i int) string {
	t.Helper()
	for range 1000 {
		if tok := put(t, m, "", "user", "alice"); ownerOf(t, nodes, tok) == i {
			return tok
		}
	}
	t.Fatalf("no session maps to node %d", i)
	return ""
}

// I1 (soak seed 600017): an app server that cannot reach the session's node
// serves the session from its row a moment before the row expires, and
// writes the row ahead. Between its read and that write, a reaper finds the
// row expired and postpones it (the archive hook failed), so the write
// ahead loses to the postponed row. Before the fix the read served the
// session all the same, recorded nowhere, and the next request found it
// gone: served, then reported absent well within IdleTimeout.
func TestReadAroundNodeLosesToPostponedRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	held := &heldLoad{reached: make(chan struct{}), release: make(chan struct{})}
	short := func(c *core.StoreConfig) { c.SyncInterval = 30 * time.Second }
	idle := func(c *core.Config) { c.IdleTimeout = time.Minute }
	reader := st.manager(t, func(c *core.StoreConfig) {
		short(c)
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
		held.Durable = c.Durable
		c.Durable = held
	}, idle)
	other := st.manager(t, short, idle)
	ctx := context.Background()
	token := put(t, other, "", "user", "alice")
	rec, _, _ := st.row(t, token)
	st.clock.Advance(rec.ExpiresAt.Sub(st.clock.Now()) - time.Second) // a second before the row expires

	proxy.Cut()
	served := held.loadHeld(t, reader, token) // the reader has the live row
	st.clock.Advance(2 * time.Second)
	r, err := other.Store().NewReaper(core.ReaperConfig{Interval: time.Minute, Lookahead: 2 * time.Minute,
		Archive: func(context.Context, core.ArchivedSession) error { return errors.New("archive down") }})
	if err != nil {
		t.Fatal(err)
	}
	if rep, _ := r.RunOnce(ctx); rep.Errors != 1 {
		t.Fatalf("reaper report %v: want the archive failure to postpone the row", rep)
	}
	if _, _, found := st.row(t, token); found {
		t.Fatal("the postponed row still reads as live: the test needs it dead to readers")
	}
	close(held.release)
	s := <-served
	if s == nil || s.IsNew() {
		return // not served: the session ended with its row, as the reaper found
	}
	if again := load(t, reader, token); again.IsNew() {
		t.Errorf("the session was served from its row (user=%v), then absent on the next request", s.Get("user"))
	}
}

// I5 (soak seeds 2400001 and 122056): app server A cannot reach the node
// and writes a durable change around it, to the row. The node still holds
// the older copy — A's probe has not purged it yet — and app server B,
// whose breaker never opened, builds on it: a renewal, a durable change,
// or a change whose sync comes due, at once or after others that were not
// synced. Before the fix B's database write, newer by version, replaced
// the row, and A's acknowledged durable change was gone for good. Now the
// database refuses it (the row holds a change B's copy never saw), the
// row replaces the copy, and a request's own changes are re-applied to it;
// changes that had reached memcached only are lost with the fork.
func TestForkedCopyLosesToRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		// build makes B's change on its copy and returns the token to read
		// back and whether B's own change must survive.
		build func(t *testing.T, st *stack, b *core.Manager, token string) (string, bool)
	}{
		{"renew", func(t *testing.T, st *stack, b *core.Manager, token string) (string, bool) {
			s := load(t, b, token)
			s.Put("x", 1)
			s.RenewToken()
			if err := b.Save(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			if !load(t, b, token).IsNew() {
				t.Error("the old token still serves the session after RenewToken")
			}
			return s.Token(), true
		}},
		{"durable", func(t *testing.T, st *stack, b *core.Manager, token string) (string, bool) {
			s := load(t, b, token)
			s.Put("x", 1)
			s.MarkDurable()
			if err := b.Save(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			return token, true
		}},
		{"sync due", func(t *testing.T, st *stack, b *core.Manager, token string) (string, bool) {
			st.clock.Advance(2 * time.Minute) // B's change is due for a sync
			put(t, b, token, "x", 1)
			return token, false
		}},
		{"sync due after unsynced", func(t *testing.T, st *stack, b *core.Manager, token string) (string, bool) {
			put(t, b, token, "w", 1) // memcached only
			if row, _, _ := st.row(t, token); row.Version == 0 || load(t, b, token).GetInt("w") != 1 {
				t.Fatal("B's first change did not land in memcached")
			}
			st.clock.Advance(2 * time.Minute)
			put(t, b, token, "x", 1) // due: built on a copy whose last sync predates A's change
			return token, false
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStack(t, backends(t)[0])
			proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
			minute := func(c *core.StoreConfig) { c.SyncInterval = time.Minute }
			a := st.manager(t, func(c *core.StoreConfig) {
				minute(c)
				c.Memcached.Servers = []string{proxy.Addr}
				c.Memcached.BreakerThreshold = 1
				c.Memcached.BreakerCooldown = time.Hour // A's probe does not purge the node here
			}, nil)
			b := st.manager(t, minute, nil)
			ctx := context.Background()
			token := put(t, b, "", "n", 1)
			before, _, _ := st.row(t, token)

			proxy.Cut()
			st.clock.Advance(10 * time.Millisecond)
			s := load(t, a, token)
			s.Put("role", "admin")
			s.MarkDurable()
			if err := a.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			if !a.Store().Stats().Nodes[0].Open {
				t.Fatal("A's breaker did not open: the test needs A's change to go around the node")
			}
			if row, _, _ := st.row(t, token); row.Version <= before.Version {
				t.Fatal("A's durable change did not reach the database")
			}
			if got := load(t, b, token).Get("role"); got != nil {
				t.Fatalf("B reads role=%v: the test needs the node's older copy", got)
			}

			st.clock.Advance(10 * time.Millisecond)
			tok, ownKept := tc.build(t, st, b, token)
			// A sync due is written in the background: wait for its refusal
			// and the copy's repair (RowConflicts counts it after the repair).
			for deadline := time.Now().Add(5 * time.Second); b.Store().Stats().RowConflicts == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Error("no database write of B's was refused")
					break
				}
			}
			got := load(t, b, tok)
			if got.Get("role") != "admin" {
				t.Errorf("B reads role=%v, want admin: A's durable change is lost", got.Get("role"))
			}
			if ownKept && got.GetInt("x") != 1 {
				t.Errorf("B reads x=%d, want 1: the request's own change was not re-applied", got.GetInt("x"))
			}
			if got.GetInt("n") != 1 {
				t.Errorf("B reads n=%d, want 1", got.GetInt("n"))
			}
			_, row, _ := st.row(t, tok)
			if vals := decodeRow(t, row); vals["role"] != "admin" {
				t.Errorf("the row holds %v: A's durable change was overwritten", vals)
			}
		})
	}
}

// decodeRow returns the values of a row's entry, written with the Manager's
// default codec.
func decodeRow(t *testing.T, e core.Entry) map[string]any {
	t.Helper()
	if len(e.Payload) == 0 {
		return map[string]any{}
	}
	v, err := core.Msgpack.Decode(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// I2 (soak seed 60200080): during a rolling AddServer, app server B, which
// has not applied it yet, destroys a session on the key's previous owner,
// while app server A, which has, holds a live copy on the new owner. A's
// hits on a key that changed owner are checked against the row, but the
// database refuses A's read: before the fix A served the destroyed session
// from its copy, and once the ring change's window was over no read would
// have checked it again. Now the tombstone on the previous owner stands in
// for the row's.
func TestLaggardLogoutHoldsWhileDatabaseFails(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	nodes := []*faultNode{{name: "n0", proxy: &faultProxy{Addr: st.mc.Addr}}, {name: "n1", proxy: &faultProxy{Addr: extra.Addr}}}
	var fd *failingDurable
	a := st.manager(t, func(c *core.StoreConfig) {
		fd = &failingDurable{Durable: c.Durable}
		c.Durable = downDurable{fd}
	}, nil)
	b := st.manager(t, nil, nil) // never applies the AddServer
	token := loginOn(t, a, nodes, 1)
	if err := a.Store().AddServer(extra.Addr, 0); err != nil {
		t.Fatal(err)
	}
	put(t, a, token, "cart", "book") // moves the copy to the added node
	raw := memcache.New(extra.Addr)
	if _, err := raw.Get("hs:" + core.StorageKey(token)); err != nil {
		t.Fatalf("A's copy is not on the added node: %v", err)
	}

	if err := load(t, b, token).Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	fd.failing.Store(true)
	if s := load(t, a, token); !s.IsNew() {
		t.Fatalf("A served the session B destroyed (cart=%v) while the database refused", s.Get("cart"))
	}
	fd.failing.Store(false)
	if s := load(t, a, token); !s.IsNew() {
		t.Errorf("A served the destroyed session once the database answered (cart=%v)", s.Get("cart"))
	}
}
