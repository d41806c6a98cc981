package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// Two app servers behind a load balancer share sessions.
func TestTwoAppServersShareSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		a := st.manager(t, nil, nil)
		bm := st.manager(t, nil, nil)

		token := put(t, a, "", "user", "ada")
		if !validToken(token) {
			t.Fatalf("token %q is not a valid token", token)
		}
		if got := getString(load(t, bm, token), "user"); got != "ada" {
			t.Fatalf("server B reads user %q, want ada", got)
		}
		put(t, bm, token, "cart", 3)
		s := load(t, a, token)
		if getString(s, "user") != "ada" || getInt(s, "cart") != 3 {
			t.Fatalf("server A reads %v, want user=ada cart=3", s.Keys())
		}
	})
}

// With SyncInterval 2m, 100 writes within a minute reach the database once
// (the insert); the first background pass after the interval writes the
// latest state, once.
func TestSyncIntervalBoundsDatabaseWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, func(c *core.StoreConfig) { c.SyncInterval = 2 * time.Minute }, nil)
		store := m.Store()

		token := put(t, m, "", "n", 0)
		inserted, _, _ := st.row(t, token)
		for i := 1; i <= 100; i++ {
			st.clock.Advance(500 * time.Millisecond) // 100 writes in 50 s
			put(t, m, token, "n", i)
		}
		flush(t, store)
		stats := store.Stats()
		if stats.DBWrites != 1 {
			t.Fatalf("DB writes after 101 writes in 50s = %d, want 1 (the insert)", stats.DBWrites)
		}
		if stats.SyncPending != 1 {
			t.Fatalf("SyncPending = %d, want the session's sync", stats.SyncPending)
		}
		if rec, _, _ := st.row(t, token); rec.Version != inserted.Version {
			t.Fatalf("database holds version %d, want the insert's %d", rec.Version, inserted.Version)
		}

		st.syncDue(t, 2*time.Minute, store)
		if got := store.Stats().DBWrites; got != 2 {
			t.Fatalf("DB writes after the interval = %d, want 2", got)
		}
		if vals := st.rowValues(t, token); fmt.Sprint(vals["n"]) != "100" {
			t.Fatalf("database holds n=%v, want the latest 100", vals["n"])
		}
		if got := store.Stats().SyncPending; got != 0 {
			t.Fatalf("SyncPending = %d after the sync, want 0", got)
		}
		flush(t, store)
		if got := store.Stats().DBWrites; got != 2 {
			t.Fatalf("DB writes after a second pass with nothing due = %d, want 2", got)
		}
	})
}

// After memcached restarts empty, users stay logged in and see data at most
// SyncInterval old; durable keys are never lost.
func TestMemcachedRestartKeepsUsersLoggedIn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, func(c *core.Config) { c.DurableKeys = []string{"cart"} })

		token := put(t, m, "", "user", "ada")
		st.clock.Advance(30 * time.Second)
		put(t, m, token, "theme", "dark") // cosmetic: memcached only for now
		put(t, m, token, "cart", "book")  // durable: database at once
		flush(t, m.Store())

		st.mc.Restart()

		s := load(t, m, token)
		if s.IsNew() {
			t.Fatal("user logged out by a memcached restart")
		}
		if getString(s, "user") != "ada" || getString(s, "cart") != "book" {
			t.Fatalf("after restart: user=%q cart=%q, want ada and book", getString(s, "user"), getString(s, "cart"))
		}
		// "theme" was written within SyncInterval before the durable write,
		// which carried it along: the durable write syncs the whole session.
		if getString(s, "theme") != "dark" {
			t.Fatalf("theme %q lost although a later durable write synced the session", getString(s, "theme"))
		}

		// Changes after the last sync and younger than SyncInterval may be
		// lost; nothing older.
		st.clock.Advance(10 * time.Second)
		put(t, m, token, "theme", "light")
		st.mc.Restart()
		s = load(t, m, token)
		if s.IsNew() || getString(s, "user") != "ada" {
			t.Fatal("user logged out by the second restart")
		}
		if got := getString(s, "theme"); got != "dark" && got != "light" {
			t.Fatalf("theme = %q", got)
		}
		// The database read refilled memcached: the next read is a hit.
		hits := m.Store().Stats().CacheHits
		load(t, m, token)
		if m.Store().Stats().CacheHits != hits+1 {
			t.Fatal("memcached was not refilled from the database")
		}
	})
}

// 16 concurrent requests, each putting a different key into one session,
// all keep their key.
func TestConcurrentRequestsKeepEveryKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		mux := http.NewServeMux()
		mux.HandleFunc("/put/{k}", func(w http.ResponseWriter, r *http.Request) {
			core.FromContext(r.Context()).Put(r.PathValue("k"), true)
		})
		mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, strings.Join(core.FromContext(r.Context()).Keys(), ","))
		})
		srv := serve(t, m.Handler(mux))
		c := client(t)
		if code, _ := get(t, c, srv.URL+"/put/start"); code != 200 {
			t.Fatalf("status %d", code)
		}
		for round := 0; round < 3; round++ {
			var wg sync.WaitGroup
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := c.Get(fmt.Sprintf("%s/put/r%dk%02d", srv.URL, round, i))
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("status %d", resp.StatusCode)
					}
				}()
			}
			wg.Wait()
			_, body := get(t, c, srv.URL+"/keys")
			keys := strings.Split(body, ",")
			want := 1 + 16*(round+1)
			if len(keys) != want {
				t.Fatalf("round %d: %d keys survive, want %d: %v", round, len(keys), want, keys)
			}
		}
		if m.Store().Stats().Conflicts == 0 {
			t.Log("no compare-and-swap conflict happened; the re-application path was not exercised in this run")
		}
	})
}

// Idle timeout and absolute lifetime are enforced on the server.
func TestTimeoutsEnforced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, func(c *core.Config) {
			c.IdleTimeout = 10 * time.Minute
			c.Lifetime = time.Hour
			c.TouchInterval = time.Minute
		})
		token := put(t, m, "", "k", "v")

		// Reading every 5 minutes slides the idle expiry, even read-only.
		for i := 0; i < 4; i++ {
			st.clock.Advance(5 * time.Minute)
			if load(t, m, token).IsNew() {
				t.Fatalf("session idle-expired after %d read-only visits 5 minutes apart", i)
			}
			s := load(t, m, token)
			if err := m.Save(context.Background(), s); err != nil {
				t.Fatal(err)
			}
		}
		// Idle for longer than the timeout: gone.
		st.clock.Advance(11 * time.Minute)
		if !load(t, m, token).IsNew() {
			t.Fatal("session alive after 11 idle minutes with a 10-minute idle timeout")
		}

		// Absolute lifetime: active every 5 minutes, still gone after an hour.
		token = put(t, m, "", "k", "v")
		for elapsed := 5 * time.Minute; elapsed < time.Hour; elapsed += 5 * time.Minute {
			st.clock.Advance(5 * time.Minute)
			put(t, m, token, "k", elapsed.String())
		}
		st.clock.Advance(5 * time.Minute)
		if !load(t, m, token).IsNew() {
			t.Fatal("session alive past its absolute lifetime")
		}
	})
}

// Read-only requests refresh activity at most once per TouchInterval: one
// memcached write each.
func TestTouchThrottled(t *testing.T) {
	st := newStack(t, backends(t)[0])
	tr := &opTracer{}
	m := st.manager(t, func(c *core.StoreConfig) { c.Memcached.Tracer = tr.StartCacheOp }, func(c *core.Config) { c.TouchInterval = time.Minute })
	token := put(t, m, "", "k", "v")
	writes := func() int { return tr.count("cas") + tr.count("set") + tr.count("add") }
	before := writes()
	for i := 0; i < 24; i++ { // 2 minutes of clicks every 5 s
		st.clock.Advance(5 * time.Second)
		s := load(t, m, token)
		_ = getString(s, "k")
		if err := m.Save(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	if got := writes() - before; got != 2 {
		t.Fatalf("memcached writes in 2 minutes of read-only clicks = %d, want 2 touches", got)
	}
	if got := m.Store().Stats().DBWrites; got != 1 {
		t.Fatalf("database writes = %d, want 1 (the insert): touches reach the row through the writer", got)
	}
}

func TestRenewTokenAndDestroy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		ctx := context.Background()
		old := put(t, m, "", "cart", "book")

		s := load(t, m, old)
		s.Put("user", "ada")
		s.RenewToken()
		c := saveCookie(t, m, s)
		renewed := s.Token()
		if renewed == old || !validToken(renewed) {
			t.Fatalf("token not renewed: %q", renewed)
		}
		if c == nil || c.Value != renewed || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("renewal cookie %v", c)
		}
		if !load(t, m, old).IsNew() {
			t.Fatal("old token still valid after RenewToken")
		}
		if _, e, found := st.row(t, old); !found || !e.Destroyed {
			t.Fatalf("old token's row: found=%v destroyed=%v, want a tombstone", found, e.Destroyed)
		}
		if s := load(t, m, renewed); getString(s, "cart") != "book" || getString(s, "user") != "ada" {
			t.Fatal("values lost by RenewToken")
		}

		s = load(t, m, renewed)
		if err := s.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		if c := saveCookie(t, m, s); c == nil || c.MaxAge >= 0 {
			t.Fatalf("destroy must expire the cookie, got %v", c)
		}
		st.mc.Restart() // nothing may come back from the database
		if !load(t, m, renewed).IsNew() {
			t.Fatal("destroyed session came back from the database")
		}
	})
}

// Bad input gets a fresh session or a named error, never a panic, and
// never loses what is stored.
func TestBadInput(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, nil, nil)
	ctx := context.Background()
	token := put(t, m, "", "user", "ada")

	t.Run("garbage cookies", func(t *testing.T) {
		for _, v := range []string{"", "x", strings.Repeat("a", 42), strings.Repeat("a", 44),
			strings.Repeat("a", 4096), token[:42] + "=", token[:42] + "\x00", "../../etc/passwd",
			strings.Repeat("é", 22), core.NewToken()} {
			s, err := m.Load(ctx, v)
			if err != nil || !s.IsNew() || s.Token() != "" {
				t.Fatalf("cookie %q: err=%v new=%v token=%q", v, err, s.IsNew(), s.Token())
			}
		}
	})
	t.Run("oversized session", func(t *testing.T) {
		s := load(t, m, token)
		s.Put("blob", strings.Repeat("x", 2<<20))
		if err := m.Save(ctx, s); !errors.Is(err, core.ErrTooLarge) {
			t.Fatalf("Save of a 2 MiB session: %v, want ErrTooLarge", err)
		}
		if s := load(t, m, token); getString(s, "user") != "ada" || s.Get("blob") != nil {
			t.Fatal("stored session changed by a refused write")
		}
	})
	t.Run("unencodable value", func(t *testing.T) {
		s := load(t, m, token)
		s.Put("ch", make(chan int))
		if err := m.Save(ctx, s); !errors.Is(err, core.ErrEncode) {
			t.Fatalf("Save of a channel: %v, want ErrEncode", err)
		}
		if s := load(t, m, token); getString(s, "user") != "ada" {
			t.Fatal("stored session lost")
		}
	})
	t.Run("corrupt memcached entry", func(t *testing.T) {
		st.mc.Restart()
		mc := newRawMemcached(t, st.mc.Addr)
		mc.set(t, "hs:"+core.StorageKey(token), []byte("\xff\x00garbage"))
		s := load(t, m, token)
		if getString(s, "user") != "ada" {
			t.Fatal("corrupt cache entry not replaced by the database copy")
		}
		if m.Store().Stats().Corrupt == 0 {
			t.Fatal("corrupt entry not counted")
		}
		if s := load(t, m, token); getString(s, "user") != "ada" {
			t.Fatal("cache not repaired")
		}
	})
}

// A codec change, the documented way: the new codec is listed in Codecs
// everywhere first, then made Codec. A session written with one codec stays
// readable by a Store that lists it, and is rewritten with the Store's
// Codec on its next change; a Store that does not list it neither serves
// nor overwrites it.
func TestCodecChange(t *testing.T) {
	st := newStack(t, backends(t)[0])
	codecs := []core.Codec{core.JSON, core.Gob, core.Msgpack}
	for _, from := range codecs {
		for _, to := range codecs {
			t.Run(fmt.Sprintf("%d-to-%d", from.ID(), to.ID()), func(t *testing.T) {
				a := st.manager(t, func(c *core.StoreConfig) { c.Codec, c.Codecs = from, []core.Codec{to} }, nil)
				b := st.manager(t, func(c *core.StoreConfig) { c.Codec, c.Codecs = to, []core.Codec{from} }, nil)
				token := put(t, a, "", "n", 42)
				s := load(t, b, token)
				if getInt(s, "n") != 42 {
					t.Fatalf("n = %v after codec change", s.Get("n"))
				}
				put(t, b, token, "m", "x")
				if got := load(t, a, token); getInt(got, "n") != 42 || getString(got, "m") != "x" {
					t.Fatal("session unreadable after being rewritten with the new codec")
				}
				if from == to {
					return
				}
				// Once the row holds the rewritten session too, a Store
				// configured with the old codec only cannot read it in
				// either tier: a new session, and the stored one untouched.
				st.syncDue(t, 3*time.Minute, a.Store(), b.Store())
				old := st.manager(t, func(c *core.StoreConfig) { c.Codec = from }, nil)
				if !load(t, old, token).IsNew() {
					t.Fatal("a Store without the session's codec served it")
				}
				put(t, old, token, "m", "overwritten?")
				if got := load(t, b, token); getInt(got, "n") != 42 || getString(got, "m") != "x" {
					t.Fatalf("the unreadable session was changed: n=%v m=%q", got.Get("n"), getString(got, "m"))
				}
				st.mc.Restart()
				if got := load(t, b, token); getInt(got, "n") != 42 || getString(got, "m") != "x" {
					t.Fatalf("the unreadable session's row was changed: n=%v m=%q", got.Get("n"), getString(got, "m"))
				}
				if old.Store().Stats().Unreadable == 0 {
					t.Error("Stats.Unreadable did not count the session of an unknown codec")
				}
			})
		}
	}
}

// A node that was unreachable without losing its items (a partition, not a
// restart) comes back with copies older than the writes that went around
// it, to the rows. A copy is built on its row and merged into it at its
// next sync: the change written around the node survives, the session
// destroyed meanwhile is not brought back, and a change made on the stale
// copy before its sync is kept too.
func TestNodeBackFromPartitionMergesAtNextSync(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, func(c *core.StoreConfig) {
		c.Memcached.Timeout = 50 * time.Millisecond
		c.Memcached.BreakerThreshold = 1
		c.Memcached.BreakerCooldown = 20 * time.Millisecond
	}, nil)
	store := m.Store()
	token := put(t, m, "", "n", 1)
	doomed := put(t, m, "", "user", "ada")

	st.mc.Pause()
	// A read pays the timeout, opens the breaker and falls back to the
	// database. (SIGSTOP takes a moment to land: until then the node still
	// answers.)
	for deadline := time.Now().Add(5 * time.Second); !store.Stats().Nodes[st.mc.Addr]; {
		if time.Now().After(deadline) {
			t.Fatal("breaker not open")
		}
		load(t, m, token)
	}
	put(t, m, token, "n", 3) // around the node, to the row
	s := load(t, m, doomed)
	if err := s.Destroy(context.Background()); err != nil {
		t.Fatalf("Destroy while a node is unreachable: %v", err)
	}
	if got := st.rowValues(t, token)["n"]; fmt.Sprint(got) != "3" {
		t.Fatalf("the row holds n=%v, want the change written around the node", got)
	}
	st.mc.Resume()
	awaitBreaker(t, store, st.mc.Addr, false)

	// Until its next sync the node's copy may be served (docs/consistency.md,
	// I2 and rule 3); a change made on it is a change of another key.
	st.clock.Advance(3 * time.Minute) // past SyncInterval and TouchInterval
	put(t, m, token, "m", "on the stale copy")
	readOnly(t, m, doomed) // its touch schedules the copy's sync
	flush(t, store)

	got := load(t, m, token)
	if getInt(got, "n") != 3 || getString(got, "m") != "on the stale copy" {
		t.Errorf("after the sync: n=%d m=%q, want 3 (written around the node) and the change made on the copy", getInt(got, "n"), getString(got, "m"))
	}
	if !load(t, m, doomed).IsNew() {
		t.Error("a session destroyed during the partition came back with the node")
	}
	st.mc.Restart() // the rows alone
	if got := load(t, m, token); getInt(got, "n") != 3 || getString(got, "m") != "on the stale copy" {
		t.Errorf("the row: n=%d m=%q", getInt(got, "n"), getString(got, "m"))
	}
	if !load(t, m, doomed).IsNew() {
		t.Error("the destroyed session came back from its row")
	}
	if store.Stats().Merges == 0 {
		t.Error("Stats.Merges = 0: the stale copy's sync did not merge with the row")
	}
}

// KV.List pages through live values with memcached's newer copies laid
// over the rows, in key order, and leaves deleted ones out.
func TestKVList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		store := st.store(t, nil)
		kv := core.NewKV(store, 61)
		ctx := context.Background()
		set := func(tok, v string) {
			if err := kvSet(ctx, kv, tok, []byte(v), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]string{}
		for i := 0; i < 7; i++ {
			tok := core.NewToken()
			set(tok, fmt.Sprint(i))
			want[core.StorageKey(tok)] = fmt.Sprint(i)
			if i == 0 { // changed in memcached only: List must see 101
				set(tok, "100")
				set(tok, "101")
				want[core.StorageKey(tok)] = "101"
			}
			if i == 1 {
				if err := store.Delete(ctx, tok); err != nil {
					t.Fatal(err)
				}
				delete(want, core.StorageKey(tok))
			}
		}
		got := map[string]string{}
		last := ""
		err := kv.List(ctx, func(key string, val []byte, _ time.Duration) {
			if key <= last {
				t.Fatalf("keys out of order: %q after %q", key, last)
			}
			last = key
			got[key] = string(val)
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("List = %v, want %v", got, want)
		}
	})
}

// A key reused after a Delete (fiber.Storage users do this, through
// core.KV) is stored again, in memcached and in the database.
func TestKVSetAfterDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		store := st.store(t, nil)
		kv := core.NewKV(store, 61)
		ctx := context.Background()
		const key = "limiter:1.2.3.4"
		if err := kvSet(ctx, kv, key, []byte("old"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if v, err := kvGet(ctx, kv, key); err != nil || v != nil {
			t.Fatalf("Get after Delete = %q, %v; want nothing", v, err)
		}
		if err := kvSet(ctx, kv, key, []byte("new"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if v, err := kvGet(ctx, kv, key); err != nil || string(v) != "new" {
			t.Fatalf("Get after the second Set = %q, %v; want \"new\"", v, err)
		}
		st.syncDue(t, 3*time.Minute, store)
		st.mc.Restart() // only the database can answer now
		if v, err := kvGet(ctx, kv, key); err != nil || string(v) != "new" {
			t.Fatalf("after a memcached loss: %q, %v; want \"new\"", v, err)
		}
	})
}

// saveCookie saves s with m.SaveTo and returns the session cookie it set,
// nil when none.
func saveCookie(t *testing.T, m *core.Manager, s *core.Session) *http.Cookie {
	t.Helper()
	h := http.Header{}
	if err := m.SaveTo(context.Background(), s, true, h.Add); err != nil {
		t.Fatal(err)
	}
	if v := h.Get("Set-Cookie"); v != "" {
		c, err := http.ParseSetCookie(v)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return nil
}

// validToken reports whether s has the shape of the Manager's tokens: 43
// characters of the unpadded base64url alphabet (32 random bytes).
func validToken(s string) bool {
	return len(s) == 43 && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}
