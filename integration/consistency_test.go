package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// Regression tests of the invariants of docs/consistency.md (each names the
// one it checks) on real memcached and real databases, with real faults
// where a process or a proxy can inject them: a node paused, cut off or
// restarted, a connection that fails once, a database that hangs.

// rawGet reads what memcached holds for token.
func rawGet(t *testing.T, mc *memcache.Client, token string) []byte {
	t.Helper()
	it, err := mc.Get(mkey(token))
	if err != nil {
		t.Fatalf("raw get: %v", err)
	}
	return it.Value
}

// loginOn logs sessions in on m (user=alice) until one maps to node i of
// p's ring, and returns its token.
func loginOn(t *testing.T, m *core.Manager, p *placement, i int) string {
	t.Helper()
	for range 1000 {
		if tok := put(t, m, "", "user", "alice"); p.owner(tok) == i {
			return tok
		}
	}
	t.Fatalf("no session maps to node %d", i)
	return ""
}

// cutNode returns a StoreConfig modifier for an app server that reaches
// memcached through proxy only, and opens its breaker at the first failure.
func cutNode(proxy *faultProxy, cooldown time.Duration) func(*core.StoreConfig) {
	return func(c *core.StoreConfig) {
		c.Memcached.Servers = []string{proxy.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = cooldown
	}
}

// I3: memcached drops an idle session's copy at its TTL (the IdleTimeout);
// the row may serve the session for at most SyncInterval longer (the grace
// sealed into it), never after. Real time: the point is memcached's own
// expiry.
func TestIdleSessionDeadAfterCacheTTLAndGrace(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, func(c *core.StoreConfig) {
		c.Clock = time.Now
		c.SyncInterval = time.Second
	}, func(c *core.Config) {
		c.IdleTimeout = 2 * time.Second
		c.TouchInterval = 500 * time.Millisecond
	})
	created := time.Now()
	token := put(t, m, "", "user", "alice")
	time.Sleep(time.Until(created.Add(3400 * time.Millisecond))) // past IdleTimeout + SyncInterval
	raw := memcache.New(st.mc.Addr)
	waitFor(t, "memcached to drop the copy at its TTL", func() bool {
		_, err := raw.Get(mkey(token))
		return errors.Is(err, memcache.ErrCacheMiss)
	})
	if _, _, found := st.row(t, token); !found {
		t.Fatal("the row is gone: the test needs the reader to find it")
	}
	if s := load(t, m, token); !s.IsNew() {
		t.Errorf("a session idle for %v (IdleTimeout 2s, SyncInterval 1s) was served from its row: user=%v",
			time.Since(created).Round(time.Millisecond), s.Get("user"))
	}
}

// I3: a row the reaper leaves in place (its archive hook failed) stays dead
// to readers, also after memcached loses the dead copy: expiry is judged
// from the sealed envelope.
func TestReaperLeftRowStaysDead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
		token := put(t, m, "", "user", "alice")
		st.clock.Advance(time.Hour) // idle 30m + sync 1m: dead in both tiers
		got := reapOnce(t, m.Store(), core.ReaperConfig{Archive: failingArchive})
		if got.Errors != 1 || got.Deleted != 0 {
			t.Fatalf("reaper pass %+v: want the archive failure to leave the row", got)
		}
		if _, _, found := st.row(t, token); !found {
			t.Fatal("the row is gone: the test needs it left in place")
		}
		st.mc.Restart() // memcached loses the dead copy
		if s := load(t, m, token); !s.IsNew() {
			t.Errorf("a dead session came back from the row the reaper left: user=%v", s.Get("user"))
		}
	})
}

func failingArchive(context.Context, core.ArchivedSession) error { return errors.New("archive down") }

// I2 across a ring change: after AddServer, DestroySubject writes its
// tombstone on the key's new owner and in the row. When memcached's
// tombstone is gone (evicted), the row's stands, and the copy left on the
// previous owner is not read.
func TestDestroySubjectAfterAddServerHolds(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	m := st.manager(t, nil, nil)
	p := newPlacement(t, st.mc.Addr, extra.Addr)
	ctx := context.Background()
	var token string
	for i := 0; token == "" && i < 1000; i++ {
		s := load(t, m, "")
		s.SetSubject("alice")
		if err := m.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		if p.owner(s.Token()) == 1 {
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
	if err := memcache.New(extra.Addr).Delete(mkey(token)); err != nil {
		t.Fatal(err) // the tombstone on the new owner goes (eviction)
	}
	rawGet(t, memcache.New(st.mc.Addr), token) // the previous owner still holds the live copy
	if s := load(t, m, token); !s.IsNew() {
		t.Errorf("log out everywhere was undone after a ring change (subject %q)", s.Subject())
	}
}

// I4 without memcached: a read-only request whose touch is due does not
// write back what it read over a change saved meanwhile.
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
		if got := getString(load(t, m, token), "cart"); got != "book" {
			t.Errorf("cart = %q after a read-only request, want the saved change %q", got, "book")
		}
	})
}

// I5: a durable write the database does not take fails with ErrUnavailable
// and changes nothing: the session keeps its acknowledged state, and the
// write succeeds once the database answers again, carrying the changes
// memcached took meanwhile.
func TestDurableWriteFailsWhileDatabaseRefuses(t *testing.T) {
	st := newStack(t, backends(t)[0])
	mod, fd := faulty()
	m := st.manager(t, mod, func(c *core.Config) { c.DurableKeys = []string{"cart"} })
	ctx := context.Background()
	token := put(t, m, "", "n", 1)

	fd.writes.Store(true)
	s := load(t, m, token)
	s.Put("cart", "book")
	if err := m.Save(ctx, s); !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("a durable write the database refused: Save = %v, want ErrUnavailable", err)
	}
	if got := getString(load(t, m, token), "cart"); got != "" {
		t.Fatalf("cart = %q: the refused durable write is served", got)
	}
	put(t, m, token, "n", 2) // not durable: memcached takes it

	fd.writes.Store(false)
	put(t, m, token, "cart", "book")
	st.mc.Restart()
	if s := load(t, m, token); getString(s, "cart") != "book" || getInt(s, "n") != 2 {
		t.Errorf("from the row: cart=%q n=%d, want book and 2", getString(s, "cart"), getInt(s, "n"))
	}
}

// I7: a database that accepts connections and never answers costs a login
// at most DBTimeout; memcached then holds the new session, and the
// background writer brings it to the row once the database answers.
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
		Reaper: core.ReaperConfig{Interval: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := core.New(core.Config{Store: store})
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
	if err != nil {
		t.Fatalf("login with the database hung: %v after %v", err, took)
	}
	if took > 5*time.Second {
		t.Errorf("login took %v with DBTimeout 300ms: the hung database blocked it", took)
	}
	if got := getString(load(t, m, s.Token()), "user"); got != "alice" {
		t.Errorf("user = %q, want the new session from memcached", got)
	}
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer closeCancel()
	if err := store.Close(closeCtx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, found, err := d.Load(closeCtx, core.StorageKey(s.Token())); err != nil || !found {
		t.Errorf("after the database answered again and Close: row found=%v (%v), want the login's row", found, err)
	}
}

// A subject a database cannot store — over 255 bytes (here 200 two-byte
// characters), or holding a NUL byte, which PostgreSQL refuses — is refused
// with a named error before anything is written, not cut inside a character
// or retried as an outage; the stored session is untouched.
func TestUnstorableSubjectRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		for _, c := range []struct {
			cache   bool
			subject string
		}{{true, strings.Repeat("é", 200)}, {false, strings.Repeat("é", 200)}, {true, "ada\x00"}, {false, "ada\x00"}} {
			cache := c.cache
			m := st.manager(t, func(c *core.StoreConfig) {
				if !cache {
					c.Memcached = core.MemcachedConfig{}
				}
			}, nil)
			token := put(t, m, "", "user", "alice")
			s := load(t, m, token)
			s.SetSubject(c.subject)
			err := m.Save(context.Background(), s)
			if !errors.Is(err, core.ErrInvalidSubject) || errors.Is(err, core.ErrUnavailable) {
				t.Errorf("memcached=%v: Save = %v, want ErrInvalidSubject and not ErrUnavailable", cache, err)
			}
			if core.StatusCode(err) == 503 {
				t.Errorf("memcached=%v: a data error answered 503", cache)
			}
			if got := load(t, m, token); got.IsNew() || getString(got, "user") != "alice" || got.Subject() != "" {
				t.Errorf("memcached=%v: the stored session changed: new=%v subject=%q", cache, got.IsNew(), got.Subject())
			}
		}
	})
}

// "Sign out all other devices" reaches every session of a subject however
// many pages of rows they fill (the listing pages by 500), on every
// database: 1,005 sessions, 1,004 destroyed, the current one kept.
func TestDestroyOtherSessionsCoversEveryPage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		ctx := context.Background()
		tokens := make([]string, 1005)
		for i := range tokens {
			s := load(t, m, "")
			s.SetSubject("ada")
			if err := m.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			tokens[i] = s.Token()
		}
		n, err := m.DestroyOtherSessions(ctx, load(t, m, tokens[0]))
		if err != nil || n != len(tokens)-1 {
			t.Fatalf("DestroyOtherSessions = %d, %v; want %d, nil", n, err, len(tokens)-1)
		}
		for _, token := range tokens[1:] {
			if !load(t, m, token).IsNew() {
				t.Fatal("a session of the subject survived DestroyOtherSessions")
			}
		}
		if load(t, m, tokens[0]).IsNew() {
			t.Fatal("the current session was destroyed")
		}
		if list, err := m.Sessions(ctx, "ada"); err != nil || len(list) != 1 {
			t.Fatalf("Sessions = %d sessions, %v; want the current one", len(list), err)
		}
	})
}

// I2 and I4 (rule 3): app server W's memcached write fails once (a
// transient network error), so W writes its change, or its logout, around
// the node, to the row. The node keeps its older copy, which another app
// server may serve until the copy's next sync; that sync merges it with the
// row: the change is kept, the logout sticks.
func TestWriteAroundNodeMergesAtNextSync(t *testing.T) {
	for _, logout := range []bool{false, true} {
		name := map[bool]string{false: "change", true: "logout"}[logout]
		t.Run(name, func(t *testing.T) {
			st := newStack(t, backends(t)[0])
			r := st.manager(t, nil, nil)
			var dialer flakyDialer
			w := st.manager(t, func(c *core.StoreConfig) { c.Memcached.DialContext = dialer.DialContext }, nil)
			ctx := context.Background()
			raw := memcache.New(st.mc.Addr)

			token := put(t, w, "", "n", 1)
			before := rawGet(t, raw, token)
			s := load(t, w, token)
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
			if !bytes.Equal(rawGet(t, raw, token), before) {
				t.Fatal("the node's copy changed: the test needs W's write to go around it")
			}
			if _, row, _ := st.row(t, token); logout && !row.Destroyed || !logout && fmt.Sprint(row.values(t)["n"]) != "2" {
				t.Fatalf("the row (destroyed=%v, %v) does not hold W's write", row.Destroyed, row.values(t))
			}

			// R's request, past SyncInterval and TouchInterval, is served
			// from the node's copy; its touch schedules the copy's sync.
			st.clock.Advance(3 * time.Minute)
			readOnly(t, r, token)
			flush(t, r.Store(), w.Store())
			check := func(when string) {
				t.Helper()
				for i, m := range []*core.Manager{r, w} {
					if g := load(t, m, token); logout && !g.IsNew() {
						t.Errorf("%s: app server %d serves the destroyed session: n=%d", when, i, getInt(g, "n"))
					} else if !logout && getInt(g, "n") != 2 {
						t.Errorf("%s: app server %d reads n=%d, want W's 2", when, i, getInt(g, "n"))
					}
				}
			}
			check("after the copy's sync")
			st.mc.Restart()
			check("from the row")
		})
	}
}

// I6: app server A cannot reach the node and writes a change around it; the
// node then loses the session, and app server B restores it from the row
// and changes it twice, the second time in memcached only. When A reaches
// the node again, B's changes stand, and reach the row.
func TestChangeAfterWriteAroundSurvivesNodeReturn(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	minute := func(c *core.StoreConfig) { c.SyncInterval = time.Minute }
	a := st.manager(t, func(c *core.StoreConfig) { minute(c); cutNode(proxy, 20*time.Millisecond)(c) }, nil)
	b := st.manager(t, minute, nil)
	token := put(t, a, "", "n", 1)

	proxy.Cut()
	put(t, a, token, "n", 2) // around the node, to the row
	if open, _ := nodeOpen(a.Store(), proxy.Addr); !open {
		t.Fatal("A's breaker did not open: the test needs A's write to go around the node")
	}
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "2" {
		t.Fatalf("the row holds n=%v, want A's write", got)
	}
	if err := memcache.New(st.mc.Addr).Delete(mkey(token)); err != nil {
		t.Fatal(err) // the node loses the session (restart, eviction)
	}
	if got := getInt(load(t, b, token), "n"); got != 2 {
		t.Fatalf("B restored n=%d, want 2", got)
	}
	put(t, b, token, "n", 3)
	st.syncDue(t, time.Minute+time.Second, b.Store())
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "3" {
		t.Fatalf("the row holds n=%v after B's sync, want 3", got)
	}
	put(t, b, token, "n", 4) // memcached only: the next sync is a minute away
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "3" {
		t.Fatal("B's second change reached the database: the test needs it in memcached only")
	}

	proxy.Restore()
	awaitBreaker(t, a.Store(), proxy.Addr, false)
	for i, m := range []*core.Manager{a, b} {
		if got := getInt(load(t, m, token), "n"); got != 4 {
			t.Errorf("app server %d reads n=%d once A reaches the node again, want B's 4", i, got)
		}
	}
	st.syncDue(t, time.Minute+time.Second, a.Store(), b.Store())
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "4" {
		t.Errorf("the row holds n=%v, want B's 4", got)
	}
}

// I1: a request reads a session from its row, idle past IdleTimeout but
// within the row's grace, because memcached is unreachable, and its touch
// goes to the row it read. A cache loss after it does not log the user out
// minutes after their request.
func TestReadAroundNodeMovesRowAhead(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	m := st.manager(t, cutNode(proxy, 20*time.Millisecond), nil)
	token := put(t, m, "", "user", "alice")
	_, row, _ := st.row(t, token)

	// Idle until a minute before the row expires (past IdleTimeout: only
	// the row, standing in for the unreachable node, still serves it).
	st.clock.Advance(row.rowExpiresAt().Sub(st.clock.Now()) - time.Minute)
	proxy.Cut()
	s := load(t, m, token)
	if s.IsNew() {
		t.Fatal("the row did not stand in for the unreachable node")
	}
	proxy.Restore()
	awaitBreaker(t, m.Store(), proxy.Addr, false)
	if err := m.Save(context.Background(), s); err != nil { // the touch
		t.Fatal(err)
	}

	if err := memcache.New(st.mc.Addr).Delete(mkey(token)); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatal(err) // the cache loss
	}
	st.clock.Advance(2 * time.Minute) // past the row's old expiry, well within IdleTimeout of the request
	if s := load(t, m, token); s.IsNew() || getString(s, "user") != "alice" {
		t.Errorf("the user was logged out %v after their last request", 2*time.Minute)
	}
}

// I1: a touch written around an unreachable node moves the row ahead. The
// node kept its copy (a partition, not a restart), idle since before the
// touch. When the node answers again, that copy reads as idle past
// IdleTimeout: the row, which knows of later activity, serves the session.
func TestTouchAroundNodeOutlivesIdleCopy(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	m := st.manager(t, cutNode(proxy, 20*time.Millisecond), func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	token := put(t, m, "", "user", "alice")

	st.clock.Advance(29 * time.Minute)
	proxy.Cut()
	readOnly(t, m, token) // its touch goes to the row, around the node
	proxy.Restore()
	awaitBreaker(t, m.Store(), proxy.Addr, false)
	st.clock.Advance(2 * time.Minute) // 31m after the node's copy, 2m after the touch
	if s := load(t, m, token); s.IsNew() || getString(s, "user") != "alice" {
		t.Error("the user was logged out 2 minutes after their last request: the node's idle copy hid the row")
	}
}

// I4 for core.KV (fiber's Storage): a key deleted, then set again while its
// node is unreachable, is written around the node, to the row. The node's
// copy of the Delete knows of older activity than the row: when the node
// answers again, the Set is read back.
func TestKVSetAroundNodeAfterDelete(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	s := st.store(t, cutNode(proxy, 20*time.Millisecond))
	kv := core.NewKV(s, 61) // the fiber Storage's codec
	ctx := context.Background()
	if err := kvSet(ctx, kv, "k", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	st.clock.Advance(time.Second)
	proxy.Cut()
	if err := kvSet(ctx, kv, "k", []byte("two"), time.Hour); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	awaitBreaker(t, s, proxy.Addr, false)
	got, err := kvGet(ctx, kv, "k")
	if err != nil || string(got) != "two" {
		t.Errorf("after the node came back Get = %q, %v; want \"two\": the Delete's copy hides the Set", got, err)
	}
}

// I1 across ring changes: a node is added and removed again while app
// servers apply the changes one after another. An app server still on the
// old ring wrote the session's key on its old owner after another had
// moved it to the added node, where the session lives on with a durable
// change. When the node is removed, the key's old owner serves it again,
// and holds that copy, idle since: the row, which knows of later activity,
// serves the session.
func TestRemovedNodeDeadCopyCheckedAgainstRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	p := newPlacement(t, st.mc.Addr, extra.Addr)
	m := st.manager(t, nil, func(c *core.Config) {
		c.IdleTimeout = 30 * time.Minute
		c.DurableKeys = []string{"cart"}
	})
	token := loginOn(t, m, p, 1)
	old, err := memcache.New(st.mc.Addr).Get(mkey(token))
	if err != nil {
		t.Fatal(err)
	}

	if err := m.Store().AddServer(extra.Addr, 0); err != nil {
		t.Fatal(err)
	}
	readOnly(t, m, token) // moves the copy to the added node
	// An app server that has not added the node yet writes the key on its
	// old owner.
	if err := memcache.New(st.mc.Addr).Set(&memcache.Item{Key: old.Key, Value: old.Value, Expiration: 3600}); err != nil {
		t.Fatal(err)
	}
	st.clock.Advance(20 * time.Minute)
	put(t, m, token, "cart", "book") // durable: the row is newer than that copy
	st.clock.Advance(15 * time.Minute)
	readOnly(t, m, token) // active; the old owner's copy is 35 minutes idle

	if err := m.Store().RemoveServer(extra.Addr); err != nil {
		t.Fatal(err)
	}
	if s := load(t, m, token); s.IsNew() || getString(s, "cart") != "book" {
		t.Errorf("after the node was removed: new=%v cart=%q, want the active session with cart=book", s.IsNew(), getString(s, "cart"))
	}
}

// I1: app server A cannot reach the node and serves a session from its row
// (idle just past IdleTimeout, within the row's grace), moving the row
// ahead with its touch. App server B reaches the node, whose copy is idle
// since before A's request: the row, which knows of A's request, serves B.
func TestDeadCopyCheckedAgainstRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	a := st.manager(t, cutNode(proxy, 2*time.Second), func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	b := st.manager(t, nil, func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	token := put(t, a, "", "user", "alice")

	st.clock.Advance(31 * time.Minute) // the copy is dead; the row still stands
	proxy.Cut()
	readOnly(t, a, token)
	if s := load(t, b, token); s.IsNew() || getString(s, "user") != "alice" {
		t.Error("B logged out the user A served a moment ago: the node's dead copy hid the row")
	}
}

// I3 with skewed clocks: a pass leaves an expired row in place (the archive
// hook failed). An app server whose clock runs 50 ms behind the reaper's
// reads the key a moment later, after memcached lost the dead copy: the
// session, expired a second earlier by the sealed data, is not served.
func TestReaperLeftRowDeadToSlowerClock(t *testing.T) {
	st := newStack(t, backends(t)[0])
	a := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, nil)
	b := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		c.Clock = func() time.Time { return st.clock.Now().Add(-50 * time.Millisecond) }
	}, nil)
	token := put(t, a, "", "user", "alice")
	_, row, _ := st.row(t, token)
	st.clock.Advance(row.rowExpiresAt().Sub(st.clock.Now()) + time.Second) // expired a second ago
	if got := reapOnce(t, a.Store(), core.ReaperConfig{Archive: failingArchive}); got.Errors != 1 {
		t.Fatalf("reaper pass %+v: want the archive failure to leave the row", got)
	}
	st.mc.Restart() // memcached loses the dead copy
	if s := load(t, b, token); !s.IsNew() {
		t.Errorf("a session expired a second ago came back from its row on a clock 50 ms behind: user=%v", s.Get("user"))
	}
}

// I5 across a ring change: app server A writes a durable change around a
// node it cannot reach, then removes that node from its ring. App server
// B has not removed it, reaches it, and serves its older copy (until the
// copy's next sync), changing another key on it. The copy's sync merges
// with the row: A's durable change is not lost, and B's change is kept.
func TestDurableChangeAroundRemovedNodeSurvives(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	p := newPlacement(t, proxy.Addr, extra.Addr)
	durable := func(c *core.Config) { c.DurableKeys = []string{"cart"} }
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		c.Memcached.Servers = []string{proxy.Addr, extra.Addr}
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 300 * time.Millisecond
	}, durable)
	// B reaches the same memcached as A's first node, directly: every key
	// is there on its ring.
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, durable)
	token := loginOn(t, a, p, 0)
	if s := load(t, b, token); getString(s, "user") != "alice" {
		t.Fatalf("B reads user=%q, want alice", getString(s, "user"))
	}

	proxy.Cut()
	put(t, a, token, "cart", "book") // durable, written around the node
	if open, _ := nodeOpen(a.Store(), proxy.Addr); !open {
		t.Fatal("A's breaker did not open: the test needs A's write to go around the node")
	}
	if err := a.Store().RemoveServer(proxy.Addr); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()

	st.clock.Advance(2 * time.Minute)
	put(t, b, token, "page", 7) // on the node's older copy, its sync due
	flush(t, b.Store())
	for i, m := range []*core.Manager{a, b} {
		if s := load(t, m, token); getString(s, "cart") != "book" || getInt(s, "page") != 7 {
			t.Errorf("app server %d reads cart=%q page=%d, want A's durable book and B's 7", i, getString(s, "cart"), getInt(s, "page"))
		}
	}
	if vals := st.rowValues(t, token); vals["cart"] != "book" || fmt.Sprint(vals["page"]) != "7" {
		t.Errorf("the row holds %v, want cart=book and page=7", vals)
	}
}

// I5 across a ring change: after an AddServer, app server A cannot reach
// the added node and writes a durable change around it, to the row. App
// server B, which reaches the node, reads the change.
func TestDurableChangeAroundAddedNodeIsRead(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	proxy := startProxy(t, newToxiproxy(), "mc-added", extra.Addr)
	p := newPlacement(t, st.mc.Addr, proxy.Addr)
	durable := func(c *core.Config) { c.DurableKeys = []string{"cart"} }
	a := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = time.Minute
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = time.Minute // A stays away from the added node
	}, durable)
	b := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = time.Minute }, durable)
	token := loginOn(t, a, p, 1)
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

	if s := load(t, b, token); getString(s, "cart") != "book" {
		t.Errorf("B reads cart=%q, want book: A's durable change is lost", getString(s, "cart"))
	}
}

// I1: a change written around an unreachable node goes to the row; once
// the node answers again, the next changes land in memcached only. A
// memcached loss then finds the row written around the node, whose expiry
// (its activity plus IdleTimeout plus SyncInterval) outlives the
// IdleTimeout of the session's last request.
func TestRowWrittenAroundNodeOutlivesLaterChanges(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
	m := st.manager(t, func(c *core.StoreConfig) {
		c.SyncInterval = 2 * time.Minute
		cutNode(proxy, 20*time.Millisecond)(c)
	}, func(c *core.Config) { c.IdleTimeout = 30 * time.Minute })
	token := put(t, m, "", "n", 1) // inserted: synced

	st.clock.Advance(time.Second)
	proxy.Cut()
	put(t, m, token, "n", 2) // around the node, to the row
	proxy.Restore()
	awaitBreaker(t, m.Store(), proxy.Addr, false)
	st.clock.Advance(50 * time.Second)
	put(t, m, token, "n", 3) // memcached; its sync is not due yet
	flush(t, m.Store())

	st.mc.Restart() // memcached loses the session
	st.clock.Advance(30*time.Minute - 10*time.Second)
	if s := load(t, m, token); s.IsNew() {
		t.Error("a session active 29m50s ago (IdleTimeout 30m) is gone after a memcached restart")
	}
}

// I2: a logout while the database refuses connections lives in memcached
// (acknowledged), and the background writer takes it to the row once the
// database answers: a memcached loss after that does not bring the session
// back.
func TestLogoutReachesRowWhenDatabaseReturns(t *testing.T) {
	st := newStack(t, backends(t)[0])
	mod, fd := faulty()
	m := st.manager(t, mod, nil)
	ctx := context.Background()
	token := put(t, m, "", "user", "alice")

	s := load(t, m, token)
	fd.down.Store(true)
	if err := s.Destroy(ctx); err != nil {
		t.Fatalf("Destroy while the database refuses, memcached up: %v, want nil (memcached took the tombstone)", err)
	}
	if !load(t, m, token).IsNew() {
		t.Fatal("the destroyed session is served while the database refuses")
	}
	if got := m.Store().Stats().SyncPending; got != 1 {
		t.Fatalf("SyncPending = %d, want the tombstone's sync", got)
	}
	fd.down.Store(false)
	flush(t, m.Store())
	if _, row, found := st.row(t, token); !found || !row.Destroyed {
		t.Fatal("the row is not a tombstone after the database returned")
	}
	st.mc.Restart() // memcached loses the tombstone
	if s := load(t, m, token); !s.IsNew() {
		t.Errorf("the destroyed session came back from its row: user=%v", s.Get("user"))
	}
}

// heldLoad holds the result of the next Load while hold is set: the app
// server has read the row, and the rest of its request waits.
type heldLoad struct {
	durable.Tier
	hold    atomic.Bool
	reached chan struct{} // closed when a Load is held
	release chan struct{} // close to let it go on
}

func (h *heldLoad) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	rec, found, err := h.Tier.Load(ctx, key)
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

// I1: an app server that cannot reach the session's node serves the session
// from its row a moment before the row expires. Between its read and the
// end of its request, a reaper finds the row expired and leaves it (the
// archive hook failed). The request's touch writes the row it read: the
// session, served, is still there on the next request.
func TestReadAroundNodeWhileReaperLeavesRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	proxy := startProxy(t, newToxiproxy(), "mc", st.mc.Addr)
	held := &heldLoad{reached: make(chan struct{}), release: make(chan struct{})}
	short := func(c *core.StoreConfig) { c.SyncInterval = 30 * time.Second }
	idle := func(c *core.Config) { c.IdleTimeout = time.Minute }
	reader := st.manager(t, func(c *core.StoreConfig) {
		short(c)
		cutNode(proxy, 2*time.Second)(c)
		held.Tier = c.Durable
		c.Durable = held
	}, idle)
	other := st.manager(t, short, idle)
	token := put(t, other, "", "user", "alice")
	_, row, _ := st.row(t, token)
	st.clock.Advance(row.rowExpiresAt().Sub(st.clock.Now()) - time.Second) // a second before the row expires

	proxy.Cut()
	served := held.loadHeld(t, reader, token) // the reader has the live row
	st.clock.Advance(2 * time.Second)
	if got := reapOnce(t, other.Store(), core.ReaperConfig{Archive: failingArchive}); got.Errors != 1 {
		t.Fatalf("reaper pass %+v: want the archive failure to leave the row", got)
	}
	if st.liveRow(t, token) {
		t.Fatal("the row still reads as live: the test needs it expired")
	}
	close(held.release)
	s := <-served
	if s == nil || s.IsNew() {
		return // not served: the session ended with its row
	}
	if err := reader.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if again := load(t, reader, token); again.IsNew() {
		t.Errorf("the session was served from its row (user=%v), then absent on the next request", s.Get("user"))
	}
}

// I5 and I4 (rule 1): app server A cannot reach the node and writes a
// durable change around it, to the row. The node still holds the older
// copy, and app server B, which reaches it, builds on it: a renewal, a
// durable change, or a change whose sync comes due, at once or after
// others that were not synced. B's database write is refused (the row
// moved on), merged key by key with the row and written again: A's
// durable change and B's own changes are all kept.
func TestStaleCopyKeepsDurableChangeWrittenAround(t *testing.T) {
	for _, tc := range []struct {
		name string
		// build makes B's changes on its copy and returns the token to
		// read back and the keys B set to 1.
		build func(t *testing.T, st *stack, b *core.Manager, token string) (string, []string)
	}{
		{"renew", func(t *testing.T, st *stack, b *core.Manager, token string) (string, []string) {
			s := load(t, b, token)
			s.Put("x", 1)
			s.RenewToken()
			if err := b.Save(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			if !load(t, b, token).IsNew() {
				t.Error("the old token still serves the session after RenewToken")
			}
			return s.Token(), []string{"x"}
		}},
		{"durable", func(t *testing.T, st *stack, b *core.Manager, token string) (string, []string) {
			s := load(t, b, token)
			s.Put("x", 1)
			s.MarkDurable()
			if err := b.Save(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			return token, []string{"x"}
		}},
		{"sync due", func(t *testing.T, st *stack, b *core.Manager, token string) (string, []string) {
			st.clock.Advance(2 * time.Minute) // B's change is due for a sync
			put(t, b, token, "x", 1)
			flush(t, b.Store())
			return token, []string{"x"}
		}},
		{"sync due after unsynced", func(t *testing.T, st *stack, b *core.Manager, token string) (string, []string) {
			put(t, b, token, "w", 1) // memcached only
			if getInt(load(t, b, token), "w") != 1 {
				t.Fatal("B's first change did not land in memcached")
			}
			st.clock.Advance(2 * time.Minute)
			put(t, b, token, "x", 1) // due: built on a copy whose last sync predates A's change
			flush(t, b.Store())
			return token, []string{"w", "x"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStack(t, backends(t)[0])
			proxy := startProxy(t, newToxiproxy(), "mc-a", st.mc.Addr)
			minute := func(c *core.StoreConfig) { c.SyncInterval = time.Minute }
			a := st.manager(t, func(c *core.StoreConfig) { minute(c); cutNode(proxy, time.Hour)(c) }, nil)
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
			if open, _ := nodeOpen(a.Store(), proxy.Addr); !open {
				t.Fatal("A's breaker did not open: the test needs A's change to go around the node")
			}
			if row, _, _ := st.row(t, token); row.Version <= before.Version {
				t.Fatal("A's durable change did not reach the database")
			}
			if got := load(t, b, token).Get("role"); got != nil {
				t.Fatalf("B reads role=%v: the test needs the node's older copy", got)
			}

			st.clock.Advance(10 * time.Millisecond)
			tok, own := tc.build(t, st, b, token)
			if b.Store().Stats().Merges == 0 {
				t.Error("no database write of B's was merged with the row")
			}
			check := func(where string, vals map[string]any) {
				t.Helper()
				if vals["role"] != "admin" {
					t.Errorf("%s: role=%v, want admin: A's durable change is lost", where, vals["role"])
				}
				for _, k := range own {
					if fmt.Sprint(vals[k]) != "1" {
						t.Errorf("%s: %s=%v, want 1: B's own change is lost", where, k, vals[k])
					}
				}
				if fmt.Sprint(vals["n"]) != "1" {
					t.Errorf("%s: n=%v, want 1", where, vals["n"])
				}
			}
			got := load(t, b, tok)
			check("B", map[string]any{"role": got.Get("role"), "n": getInt(got, "n"), "x": getInt(got, "x"), "w": getInt(got, "w")})
			check("the row", st.rowValues(t, tok))
		})
	}
}

// I2 when a logout reads the session from its row: app server B has not
// applied an AddServer, so the session A created on the added node is not
// on B's ring; B reads it from the row and destroys it, its tombstone going
// to the wrong node. The row is then due for the reapers, whose next pass
// on a server that reaches the copy turns it into a tombstone, though no
// request writes to it again (seed 120160: the copy's own sync was lost
// with its app server's queue, restarted while the database refused).
func TestLogoutReadFromTheRowReachesTheCopyByAReaperPass(t *testing.T) {
	ctx := context.Background()
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	p := newPlacement(t, st.mc.Addr, extra.Addr)
	a := st.manager(t, nil, nil)
	b := st.manager(t, nil, nil) // never applies the AddServer
	if err := a.Store().AddServer(extra.Addr, 0); err != nil {
		t.Fatal(err)
	}
	token := loginOn(t, a, p, 1) // its copy is on the added node only
	s := load(t, b, token)
	if s.Source() != "database" {
		t.Fatalf("setup: B found the session in %q, want the database", s.Source())
	}
	if err := s.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if load(t, a, token).IsNew() {
		t.Fatal("setup: A should serve the copy B could not reach until a reaper pass")
	}
	st.clock.Advance(time.Millisecond)
	r, err := a.Store().NewReaper(core.ReaperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for i, m := range []*core.Manager{a, b} {
		if s := load(t, m, token); !s.IsNew() {
			t.Errorf("app server %d serves the destroyed session after a reaper pass (user=%v)", i, s.Get("user"))
		}
	}
}

// I2 during a rolling AddServer: app server B, which has not applied it,
// destroys a session on the key's previous owner, while app server A,
// which has, holds a live copy on the new owner that B cannot reach. A may
// serve that copy until its next sync, also while the database refuses A;
// once the database answers, the sync turns the copy into a tombstone.
func TestLogoutDuringRingChangeHoldsAfterNextSync(t *testing.T) {
	st := newStack(t, backends(t)[0])
	extra := memcachedtest.Start(t, memcachedtest.Options{})
	p := newPlacement(t, st.mc.Addr, extra.Addr)
	mod, fd := faulty()
	a := st.manager(t, mod, nil)
	b := st.manager(t, nil, nil) // never applies the AddServer
	token := loginOn(t, a, p, 1)
	if err := a.Store().AddServer(extra.Addr, 0); err != nil {
		t.Fatal(err)
	}
	put(t, a, token, "cart", "book") // moves the copy to the added node
	rawGet(t, memcache.New(extra.Addr), token)

	if err := load(t, b, token).Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, row, _ := st.row(t, token); !row.Destroyed {
		t.Fatal("B's logout did not reach the row")
	}
	fd.down.Store(true)
	st.syncDue(t, 3*time.Minute, a.Store()) // the copy's sync fails: the database refuses A
	fd.down.Store(false)
	st.syncDue(t, 10*time.Second, a.Store()) // the writer's retry
	for i, m := range []*core.Manager{a, b} {
		if s := load(t, m, token); !s.IsNew() {
			t.Errorf("app server %d serves the destroyed session after the copy's sync (cart=%v)", i, s.Get("cart"))
		}
	}
	st.mc.Restart()
	extra.Restart()
	if s := load(t, a, token); !s.IsNew() {
		t.Errorf("the destroyed session came back from its row (cart=%v)", s.Get("cart"))
	}
}
