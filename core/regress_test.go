package core_test

import (
	"context"
	"errors"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// cutNet dials memcached through connections that can be cut: while cut,
// dials fail and every read and write on an open connection fails, as with
// a partition between one app server and a node that keeps its memory.
type cutNet struct{ cut atomic.Bool }

var errCut = errors.New("adversary: link cut")

func (n *cutNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if n.cut.Load() {
		return nil, errCut
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: c, n: n}, nil
}

type cutConn struct {
	net.Conn
	n *cutNet
}

func (c *cutConn) Read(b []byte) (int, error) {
	if c.n.cut.Load() {
		return 0, errCut
	}
	return c.Conn.Read(b)
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.n.cut.Load() {
		return 0, errCut
	}
	return c.Conn.Write(b)
}

// downDB is a Durable that refuses every call while down.
type downDB struct {
	durable.Tier
	down atomic.Bool
}

var errDown = errors.New("adversary: database down")

func (d *downDB) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	if d.down.Load() {
		return durable.Record{}, false, errDown
	}
	return d.Tier.Load(ctx, key)
}

func (d *downDB) Write(ctx context.Context, ws []durable.Write) ([]bool, error) {
	if d.down.Load() {
		return nil, errDown
	}
	return d.Tier.Write(ctx, ws)
}

func (d *downDB) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	if d.down.Load() {
		return nil, errDown
	}
	return d.Tier.List(ctx, subject, after, limit)
}

func (d *downDB) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	if d.down.Load() {
		return 0, errDown
	}
	return d.Tier.Reap(ctx, now, limit, judge)
}

// newAdvServer is newServer with a whole StoreConfig.
func newAdvServer(t *testing.T, c *clock, cfg core.StoreConfig) *server {
	t.Helper()
	cfg.Reaper = core.ReaperConfig{Interval: -1}
	cfg.Logger = quiet
	cfg.Clock = c.skewed(0)
	st, err := core.NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	m, err := core.New(core.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return &server{t: t, store: st, m: m}
}

// hookDB runs during, a hook, after each Reap judge has decided and before
// the durable tier applies the verdicts: a write racing the reaper.
type hookDB struct {
	durable.Tier
	during func()
}

func (h *hookDB) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	return h.Tier.Reap(ctx, now, limit, func(ctx context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		v, err := judge(ctx, batch)
		if h.during != nil {
			h.during()
			h.during = nil
		}
		return v, err
	})
}

// I5: a durable change the row took while memcached did not (the node was
// unreachable at the compare-and-swap) survives the node's older copy: the
// row's state starts a new lineage, so the copy's next sync merges with it
// instead of taking its place.
func TestDurableWriteSurvivesCopyThatMissedIt(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	cn := &cutNet{}
	a := newAdvServer(t, c, core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, Timeout: 200 * time.Millisecond, BreakerThreshold: 1000, DialContext: cn.dial},
		Durable:   durabletest.NewMemory(),
	})
	token := login(a)
	ctx := context.Background()
	sess, err := a.m.Load(ctx, token) // read from memcached
	if err != nil || sess.IsNew() {
		t.Fatalf("load: %v", err)
	}
	cn.cut.Store(true) // the node becomes unreachable between the read and the write
	sess.Put("email", "new@example.com")
	sess.MarkDurable()
	if err := a.m.Save(ctx, sess); err != nil {
		return // refused: nothing was promised
	}
	cn.cut.Store(false) // the node is back, with the copy it had
	a.request(token, func(s *core.Session) { s.Put("theme", "dark") })
	c.advance(3 * time.Minute)
	a.store.WriterPass()
	mc.Restart() // only the row is left
	if got := a.value(token, "email"); got != "new@example.com" {
		t.Fatalf("email = %q: an acknowledged durable change was overwritten by a later sync of the node's older copy", got)
	}
}

// I5 and rule 1: when a durable write around the node races in between the
// reaper's decision to extend a row from its copy and the verdict (which
// the durable tier then skips), the copy is not told it stands for the
// row: its next sync merges, and the durable write stays.
func TestReaperRaceKeepsDurableWriteAroundNode(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	h := &hookDB{Tier: durabletest.NewMemory()}
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: h})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: h})
	ctx := context.Background()
	token := login(a)
	c.advance(25 * time.Minute)
	a.request(token, func(s *core.Session) { s.Put("cart", "book") }) // in the copy; its sync is due
	c.advance(6*time.Minute + 59*time.Second)
	ds, err := d.m.Load(ctx, token) // from the row, just before its ExpiresAt
	if err != nil || ds.IsNew() {
		t.Fatalf("d load: %v", err)
	}
	c.advance(time.Second) // the row's ExpiresAt: the reaper claims it
	h.during = func() {
		ds.Put("email", "new@example.com")
		ds.MarkDurable()
		if err := d.m.Save(ctx, ds); err != nil {
			t.Errorf("d save: %v", err)
		}
	}
	a.reap()
	a.request(token, func(s *core.Session) { s.Put("theme", "dark") })
	c.advance(3 * time.Minute)
	a.store.WriterPass()
	mc.Restart()
	if got := d.value(token, "email"); got != "new@example.com" {
		t.Errorf("email = %q: an acknowledged durable write was erased by a copy the reaper confirmed without its verdict applying", got)
	}
	if got := d.value(token, "cart"); got != "book" {
		t.Errorf("cart = %q", got)
	}
}

// I4 and rule 1: a write around the node records as written directly only
// the keys it changed — not those its copy's writer had noted before the
// row took them — so the copy's later change of another key survives its
// next sync.
func TestWriteAroundClaimsOnlyItsKeys(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	a.request(token, func(s *core.Session) { s.Put("cart", "book") })
	c.advance(3 * time.Minute)
	a.store.WriterPass()                                             // the row takes cart=book
	a.request(token, func(s *core.Session) { s.Put("cart", "pen") }) // a later change, in the copy
	d.request(token, func(s *core.Session) { s.Put("x", "1") })      // around the node; never touches cart
	c.advance(3 * time.Minute)
	a.request(token, nil)
	a.store.WriterPass()
	mc.Restart()
	if got := d.value(token, "x"); got != "1" {
		t.Errorf("x = %q: the write around the node was lost", got)
	}
	if got := d.value(token, "cart"); got != "pen" {
		t.Errorf("cart = %q: the copy's later change was reverted by a direct write that never touched cart", got)
	}
}

// I5 and I2: a login with SetSubject is a durable write: during a database
// outage it fails rather than leave a session that "log out everywhere"
// cannot find once the database is back.
func TestLoginWithSubjectNeedsTheDatabase(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := &downDB{Tier: durabletest.NewMemory()}
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	ctx := context.Background()
	db.down.Store(true)
	sess, err := a.m.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	sess.Put("user", "ada")
	sess.SetSubject("ada")
	if err := a.m.Save(ctx, sess); err != nil {
		return // refused: the durable subject was not promised
	}
	token := sess.Token()
	db.down.Store(false)
	n, err := a.m.DestroySubject(ctx, "ada")
	if err != nil {
		t.Fatalf("DestroySubject: %v", err)
	}
	if a.alive(token) {
		t.Errorf("SetSubject acknowledged while the database was down; DestroySubject(ada) = %d with the database answering, and the session is still served", n)
	}
	c.advance(3 * time.Minute)
	a.store.WriterPass()
	if a.alive(token) {
		t.Errorf("the session escaped log-out-everywhere for good: still served after its sync")
	}
}

// I2, log-out-everywhere: DestroySubject tombstones a session whose copy
// has just idled out but whose row would still be served (it lives
// SyncInterval longer) by an app server that cannot reach the node.
func TestDestroySubjectCoversRowsPastAnIdledCopy(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	b := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	c.advance(30*time.Minute + 30*time.Second) // the copy idles out; the row lives SyncInterval longer
	n, err := a.m.DestroySubject(context.Background(), "ada")
	if err != nil {
		t.Fatalf("DestroySubject: %v", err)
	}
	if b.alive(token) {
		b.request(token, func(s *core.Session) { s.Put("after", "logout") })
		c.advance(5 * time.Minute)
		t.Errorf("DestroySubject(ada) = %d, acknowledged with the database answering; the session is then served from its row (and still on the other server: %v)", n, a.alive(token))
	}
}

// I1: SetIdleTimeout(math.MaxInt64), the natural "no idle timeout, only
// the absolute lifetime", is stored (clamped to what an envelope holds)
// and the session keeps being served.
func TestHugeIdleTimeoutIsStored(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: durabletest.NewMemory()})
	token := login(a)
	a.request(token, func(s *core.Session) { s.SetIdleTimeout(math.MaxInt64) })
	c.advance(time.Minute)
	if !a.alive(token) {
		t.Fatalf("the session was lost right after an acknowledged SetIdleTimeout(math.MaxInt64) (Stats.Corrupt = %d)", a.store.Stats().Corrupt)
	}
}

// I3 (expiry from sealed data, not plain columns): a tombstone row whose
// ExpiresAt column is earlier than its sealed deadline is kept until that
// deadline, and the dead rows claimed with it are reaped.
func TestReaperKeepsTombstoneWithEarlyExpiresAt(t *testing.T) {
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{durable: db})
	ctx := context.Background()
	victim := login(a)
	a.request(victim, func(s *core.Session) { _ = s.Destroy(ctx) })
	a.request("", func(s *core.Session) { s.Put("x", "y") }) // a session that will idle out
	c.advance(2 * time.Hour)                                 // that session idled out; the tombstone stands until its 24h deadline
	recs, err := db.List(ctx, "ada", "", 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("tombstone rows: %d, %v", len(recs), err)
	}
	rec := recs[0]
	rec.Version++
	rec.ExpiresAt = c.skewed(0)().Add(-90 * time.Minute) // the plain column is edited; the sealed deadline is not
	if applied, err := db.Write(ctx, []durable.Write{{Record: rec, Base: rec.Version - 1}}); err != nil || !applied[0] {
		t.Fatalf("edit: %v %v", applied, err)
	}
	r, err := a.store.NewReaper(core.ReaperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RunOnce(ctx); err != nil {
		t.Errorf("RunOnce: %v", err)
	}
	if st := a.store.Stats(); st.ReapDeleted != 1 {
		t.Errorf("ReapDeleted = %d; want the idled-out session's row deleted", st.ReapDeleted)
	}
	if a.alive(victim) {
		t.Error("the destroyed session is served")
	}
}

// A durable write that the row refuses because the session was logged out
// turns the copy it was made from into a tombstone: an app server that
// could not reach the copy at the logout stops serving it at that write,
// not at some later sync.
func TestRefusedDurableWriteBuriesStaleCopy(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	if n, err := d.m.DestroySubject(context.Background(), "ada"); err != nil || n != 1 {
		t.Fatalf("DestroySubject = %d, %v; want 1, nil", n, err)
	}
	if !a.alive(token) {
		t.Fatal("setup: the copy the logout could not reach should still be served until its next write")
	}
	a.request(token, func(s *core.Session) { s.Put("cart", "book"); s.MarkDurable() })
	if a.alive(token) {
		t.Fatal("the copy is still served after the row refused its durable write as logged out")
	}
}

// A logout that could not reach the session's copy is carried out on the
// copy by the next reaper pass that can reach it, even if the session is
// never written again: its tombstone row is due for the reaper at once.
func TestReaperBuriesCopyALogoutCouldNotReach(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	if n, err := d.m.DestroySubject(context.Background(), "ada"); err != nil || n != 1 {
		t.Fatalf("DestroySubject = %d, %v; want 1, nil", n, err)
	}
	if !a.alive(token) {
		t.Fatal("setup: the copy the logout could not reach should be served until a reaper pass")
	}
	c.advance(time.Millisecond)
	a.reap()
	if a.alive(token) {
		t.Fatal("the copy is still served after a reaper pass that could reach it")
	}
	c.advance(time.Hour) // the tombstone row stays until the session's deadline
	a.reap()
	if a.alive(token) {
		t.Fatal("the logged-out session came back")
	}
}

// pausingLoad holds the next Load, once armed, after it has read the row:
// a request is then between its row load and its refill of memcached.
type pausingLoad struct {
	durable.Tier
	armed           atomic.Bool
	loaded, release chan struct{}
}

func (p *pausingLoad) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	rec, found, err := p.Tier.Load(ctx, key)
	if p.armed.CompareAndSwap(true, false) {
		close(p.loaded)
		<-p.release
	}
	return rec, found, err
}

// A read that met a corrupt (or idled-out) copy refills memcached from the
// row by compare-and-swap over the entry it read, so a logout whose
// tombstone lands between that read's row load and its refill is kept.
func TestRefillNeverOverwritesALogout(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := &pausingLoad{Tier: durabletest.NewMemory(), loaded: make(chan struct{}), release: make(chan struct{})}
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	b := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	token := login(a)
	raw := memcache.New(mc.Addr)
	if err := raw.Set(&memcache.Item{Key: "hs:" + core.StorageKey(token), Value: []byte("garbage"), Expiration: 3600}); err != nil {
		t.Fatal(err)
	}
	db.armed.Store(true)
	served := make(chan error, 1)
	go func() {
		_, err := a.m.Load(context.Background(), token)
		served <- err
	}()
	<-db.loaded
	if err := b.store.Delete(context.Background(), token); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	close(db.release)
	if err := <-served; err != nil {
		t.Fatalf("the read concurrent with the logout: %v", err)
	}
	if a.alive(token) || b.alive(token) {
		t.Fatal("the logged-out session is served again: the read's refill overwrote the logout's tombstone")
	}
}
