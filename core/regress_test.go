package core_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// blackholeProxy forwards TCP to upstream; while blackholed it swallows bytes in
// both directions (a network partition, not a process freeze).
type blackholeProxy struct {
	ln       net.Listener
	upstream string
	black    atomic.Bool
}

func startBlackholeProxy(t *testing.T, upstream string) *blackholeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, upstream: upstream}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	return p
}

func (p *blackholeProxy) pipe(src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.black.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func hybrid(t *testing.T, addr string, mod func(*core.StoreConfig)) (*core.Store, *core.Manager, *durabletest.Memory) {
	t.Helper()
	db := durabletest.NewMemory()
	cfg := core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{addr}, Timeout: 50 * time.Millisecond, BreakerCooldown: 50 * time.Millisecond},
		Durable:   db,
		Logger:    quiet,
	}
	if mod != nil {
		mod(&cfg)
	}
	st, err := core.NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	m, err := core.New(core.Config{Store: st, Logger: quiet, Cookie: core.CookieConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return st, m, db
}

func newSession(t *testing.T, m *core.Manager, k string, v any) string {
	ctx := context.Background()
	s, err := m.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Put(k, v)
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s.Token()
}

// Regression tests from a review of the core: each failed before its fix.

// A request that loaded the session before another request destroyed it
// saves a change: its compare-and-swap must not add the session back.
func TestDestroyNotRevivedByConcurrentSave(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	_, m, _ := hybrid(t, mc.Addr, nil)
	ctx := context.Background()
	tok := newSession(t, m, "user", "alice")

	a, _ := m.Load(ctx, tok)
	b, _ := m.Load(ctx, tok)
	if err := a.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	b.Put("cart", "x")
	if err := m.Save(ctx, b); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Load(ctx, tok)
	if !c.IsNew() {
		t.Errorf("destroyed session is alive again: user=%v cart=%v", c.Get("user"), c.Get("cart"))
	}
}

// Same with a read-only request whose throttled touch is due.
func TestDestroyNotRevivedByTouch(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	_, m, _ := hybrid(t, mc.Addr, func(c *core.StoreConfig) { c.Clock = clock })
	ctx := context.Background()
	tok := newSession(t, m, "user", "alice")
	now.Add(int64(2 * time.Minute)) // touch due
	a, _ := m.Load(ctx, tok)
	b, _ := m.Load(ctx, tok)
	if err := a.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	_ = m.Save(ctx, a)
	_ = m.Save(ctx, b) // touch
	c, _ := m.Load(ctx, tok)
	if !c.IsNew() {
		t.Errorf("destroyed session revived by a touch: user=%v", c.Get("user"))
	}
}

// RenewToken (login) while a parallel request with the old token saves.
func TestRenewTokenNotRevivedByParallelRequest(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	_, m, _ := hybrid(t, mc.Addr, nil)
	ctx := context.Background()
	old := newSession(t, m, "csrf", "1")
	a, _ := m.Load(ctx, old)
	b, _ := m.Load(ctx, old)
	a.Put("user", "alice")
	a.RenewToken()
	if err := m.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	b.Put("theme", "dark")
	if err := m.Save(ctx, b); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Load(ctx, old)
	if !c.IsNew() {
		t.Errorf("old token alive after RenewToken: theme=%v", c.Get("theme"))
	}
}

// A partition shorter than BreakerThreshold failures: Destroy's memcached
// write fails; the node must not serve the session after the partition.
func TestDestroyDuringBlipHolds(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	p := startBlackholeProxy(t, mc.Addr)
	_, m, _ := hybrid(t, p.ln.Addr().String(), nil)
	ctx := context.Background()
	tok := newSession(t, m, "user", "alice")
	s, _ := m.Load(ctx, tok)
	p.black.Store(true)
	err := s.Destroy(ctx)
	p.black.Store(false)
	c, err := m.Load(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsNew() {
		t.Errorf("Destroy returned %v but the session is alive: user=%v", err, c.Get("user"))
	}
}

// The same blip during an update: the database gets v2, and memcached must
// not serve its v1 afterwards.
func TestUpdateDuringBlipNotLost(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	p := startBlackholeProxy(t, mc.Addr)
	_, m, _ := hybrid(t, p.ln.Addr().String(), nil)
	ctx := context.Background()
	tok := newSession(t, m, "n", "1")
	s, _ := m.Load(ctx, tok)
	p.black.Store(true)
	s.Put("n", "2")
	err := m.Save(ctx, s)
	p.black.Store(false)
	c, _ := m.Load(ctx, tok)
	if got := c.GetString("n"); err == nil && got != "2" {
		t.Errorf("Save succeeded with n=2, the next request reads n=%q", got)
	}
}

// WriteHeader(103) must not commit the session: later changes are saved.
func TestInformationalResponseDoesNotCommit(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	_, m, _ := hybrid(t, mc.Addr, nil)
	var tok string
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Put("a", "1")
		w.Header().Set("Link", "</x.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		s.Put("b", "2")
		w.WriteHeader(200)
		io.WriteString(w, "ok")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			tok = c.Value
		}
	}
	if tok == "" {
		t.Fatalf("no session cookie in final response; headers=%v", resp.Header)
	}
	s, _ := m.Load(context.Background(), tok)
	if s.GetString("b") != "2" {
		t.Errorf("value put after 103 Early Hints lost: a=%v b=%v", s.Get("a"), s.Get("b"))
	}
}

// failingDurable stands in for an unreachable database (core's tests have
// no real one; the integration module cuts real ones with a proxy).
type failingDurable struct {
	core.Durable
	fail  atomic.Bool
	saves atomic.Int64
}

func (f *failingDurable) Save(ctx context.Context, r core.Record) (bool, error) {
	f.saves.Add(1)
	if f.fail.Load() {
		return false, errors.New("db down")
	}
	return f.Durable.Save(ctx, r)
}

// Flush makes one attempt for each sync waiting to retry, then returns,
// even while the database keeps failing.
func TestFlushMakesOneAttempt(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	fd := &failingDurable{Durable: durabletest.NewMemory()}
	st, m, _ := hybrid(t, mc.Addr, func(c *core.StoreConfig) { c.Durable = fd; c.Clock = clock })
	ctx := context.Background()
	tok := newSession(t, m, "n", 1)
	now.Add(int64(3 * time.Minute))
	fd.fail.Store(true)
	s, _ := m.Load(ctx, tok)
	s.Put("n", 2)
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	// Before the fix Flush waited for max(SyncInterval, 1m): a bound far
	// below that tells the two apart.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := st.Flush(fctx); err != nil {
		t.Fatalf("Flush did not return after one attempt: %v", err)
	}
	if st.Stats().DBWriteErrors == 0 {
		t.Fatal("Flush returned without attempting the pending sync")
	}
}

// With the database failing and the background queue full, due syncs are
// dropped and counted rather than written on the request path.
func TestFullQueueWhileDatabaseFailsDropsSyncs(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	fd := &failingDurable{Durable: durabletest.NewMemory()}
	st, m, _ := hybrid(t, mc.Addr, func(c *core.StoreConfig) {
		c.Durable = fd
		c.Clock = clock
		c.SyncQueueSize = 1
		c.SyncWorkers = 1
	})
	ctx := context.Background()
	var toks []string
	for i := 0; i < 4; i++ {
		toks = append(toks, newSession(t, m, "n", i))
	}
	now.Add(int64(3 * time.Minute)) // every session's sync is due
	fd.fail.Store(true)
	save := func(tok string, v int) {
		s, _ := m.Load(ctx, tok)
		s.Put("n", v)
		if err := m.Save(ctx, s); err != nil {
			t.Fatalf("Save with the database down: %v", err)
		}
	}
	save(toks[0], 100) // queued; the worker's attempt fails
	deadline := time.Now().Add(10 * time.Second)
	for st.Stats().DBWriteErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the background writer never tried")
		}
		time.Sleep(time.Millisecond)
	}
	before := fd.saves.Load()
	for i, tok := range toks[1:] {
		save(tok, 101+i)
	}
	if got := st.Stats().SyncDropped; got < 3 {
		t.Fatalf("SyncDropped = %d, want 3 syncs dropped with the queue full", got)
	}
	// The background writer may retry its one queued sync; the three
	// requests themselves must not have called the database.
	if n := fd.saves.Load() - before; n > 1 {
		t.Fatalf("%d database saves during three requests", n)
	}
	for i, tok := range toks[1:] { // memcached still serves the latest data
		if got := load(t, m, tok).GetInt("n"); got != 101+i {
			t.Fatalf("n = %d, want %d", got, 101+i)
		}
	}
}

func load(t *testing.T, m *core.Manager, tok string) *core.Session {
	t.Helper()
	s, err := m.Load(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A read-only user of a database-only Store (or of one whose memcached is
// down) stays logged in: reads must let the touch come due, so that the
// row's expiry keeps moving.
func TestReadOnlyUserStaysLoggedInWithoutMemcached(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	st, err := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory(), Logger: quiet, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	m, err := core.New(core.Config{Store: st, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := newSession(t, m, "user", "ada")
	for i := 0; i < 720; i++ { // an hour of read-only clicks, 5 s apart
		now.Add(int64(5 * time.Second))
		s := load(t, m, tok)
		if s.GetString("user") != "ada" {
			t.Fatalf("logged out after %v of read-only use", time.Duration(i+1)*5*time.Second)
		}
		if err := m.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.Stats().Touches; got < 55 || got > 65 {
		t.Fatalf("touches in an hour = %d, want about one a minute", got)
	}
}

// The cookie's Max-Age after RenewToken is rounded up: a browser must not
// drop the cookie before the session's absolute deadline.
func TestCookieMaxAgeNotBeforeDeadline(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	_, m, _ := hybrid(t, mc.Addr, func(c *core.StoreConfig) { c.Clock = clock })
	ctx := context.Background()
	s, _ := m.Load(ctx, "")
	s.Put("user", "alice")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	deadline := m.Cookie(s).Expires // the session's deadline
	s, _ = m.Load(ctx, s.Token())
	now.Add(int64(1600 * time.Millisecond))
	s.RenewToken()
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	c := m.Cookie(s)
	if left := deadline.Sub(clock()); time.Duration(c.MaxAge)*time.Second < left {
		t.Errorf("Max-Age %ds, but the session lives %v more", c.MaxAge, left)
	}
}

// A write whose basis does not cover the row is refused; only a row written
// around a memcached node (its envelope was never synced) is a fork that
// wins. A newer row of another kind — a sync that landed after a cache loss
// separated the copy from it — is decided by version, as before bases
// existed: the request's newer change is saved.
func TestRefusedWriteForkOnlyAroundNode(t *testing.T) {
	for _, around := range []bool{false, true} {
		name := map[bool]string{false: "synced row", true: "row written around the node"}[around]
		t.Run(name, func(t *testing.T) {
			mc := memcachedtest.Start(t, memcachedtest.Options{})
			now := time.Now().Truncate(time.Millisecond)
			var clock atomic.Int64
			clock.Store(now.UnixMilli())
			st, _, db := hybrid(t, mc.Addr, func(c *core.StoreConfig) {
				c.SyncInterval = core.EveryWrite // the write reaches the row before Update returns
				c.Clock = func() time.Time { return time.UnixMilli(clock.Load()) }
			})
			ctx := context.Background()
			if err := st.Insert(ctx, "tok", &core.Entry{Created: now, Deadline: now.Add(time.Hour), IdleTimeout: time.Hour}, 0); err != nil {
				t.Fatal(err)
			}
			cur, err := st.Get(ctx, "tok")
			if err != nil || cur == nil {
				t.Fatalf("Get: %v %v", cur, err)
			}
			// The row moves on without this copy: one version up, with
			// other values.
			row := *cur
			row.Version, row.Payload = cur.Version+1, []byte("row")
			if !around {
				row.SyncedAt, row.SyncedVersion = now, row.Version
			} else {
				row.SyncedAt, row.SyncedVersion = time.Time{}, 0
			}
			if _, err := db.Save(ctx, core.Record{Key: core.StorageKey("tok"), Payload: core.AppendEnvelope(nil, &row),
				Version: row.Version, ExpiresAt: now.Add(time.Hour), Deadline: row.Deadline}); err != nil {
				t.Fatal(err)
			}
			clock.Add(1000) // this change is a second newer than the row's
			cur.Payload = []byte("mine")
			err = st.Update(ctx, "tok", cur, core.WriteChanged)
			stored, _, _ := db.Load(ctx, core.StorageKey("tok"), now)
			var got core.Entry
			if err := core.DecodeEnvelope(stored.Payload, &got); err != nil {
				t.Fatal(err)
			}
			copyNow, _ := st.Get(ctx, "tok")
			switch {
			case !around && (err != nil || string(got.Payload) != "mine" || st.Stats().RowConflicts != 0):
				t.Errorf("Update = %v; row holds %q; RowConflicts %d: want the newer change saved, no fork", err, got.Payload, st.Stats().RowConflicts)
			case around && (!errors.Is(err, core.ErrConflict) || string(got.Payload) != "row" || st.Stats().RowConflicts != 1):
				t.Errorf("Update = %v; row holds %q; RowConflicts %d: want ErrConflict, the row kept, one fork", err, got.Payload, st.Stats().RowConflicts)
			case around && (copyNow == nil || string(copyNow.Payload) != "row"):
				t.Errorf("after the fork memcached serves %v: want the row's copy", copyNow)
			}
		})
	}
}
