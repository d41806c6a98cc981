package core_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// clock is a virtual clock shared by the app servers of a test; skew
// shifts one server's reading.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func (c *clock) skewed(d time.Duration) func() time.Time {
	return func() time.Time { return time.Unix(0, c.ns.Load()+int64(d)) }
}

// server is one app server: a Store and a Manager on shared tiers.
type server struct {
	t     *testing.T
	store *core.Store
	m     *core.Manager
}

type serverOpts struct {
	servers      []string // memcached; nil: none
	durable      durable.Tier
	syncInterval time.Duration
	skew         time.Duration
	seal         core.SealConfig
	idle         time.Duration
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newServer(t *testing.T, c *clock, o serverOpts) *server {
	t.Helper()
	st, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: o.servers, Timeout: 200 * time.Millisecond, BreakerThreshold: 1000,
			DialContext: o.dial},
		Durable:      o.durable,
		SyncInterval: o.syncInterval,
		Seal:         o.seal,
		Reaper:       core.ReaperConfig{Interval: -1},
		Logger:       quiet,
		Clock:        c.skewed(o.skew),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	m, err := core.New(core.Config{Store: st, IdleTimeout: o.idle})
	if err != nil {
		t.Fatal(err)
	}
	return &server{t: t, store: st, m: m}
}

// request loads the session under token, lets fn use it and saves it; it
// returns the token the response carries ("" when the session is gone).
func (s *server) request(token string, fn func(*core.Session)) string {
	s.t.Helper()
	ctx := context.Background()
	sess, err := s.m.Load(ctx, token)
	if err != nil {
		s.t.Fatalf("load: %v", err)
	}
	if fn != nil {
		fn(sess)
	}
	if err := s.m.Save(ctx, sess); err != nil {
		s.t.Fatalf("save: %v", err)
	}
	return sess.Token()
}

// alive reports whether token loads as a stored session.
func (s *server) alive(token string) bool {
	s.t.Helper()
	sess, err := s.m.Load(context.Background(), token)
	if err != nil {
		s.t.Fatalf("load: %v", err)
	}
	return !sess.IsNew()
}

// source returns where token's session was found.
func (s *server) source(token string) string {
	s.t.Helper()
	sess, err := s.m.Load(context.Background(), token)
	if err != nil {
		s.t.Fatalf("load: %v", err)
	}
	return sess.Source()
}

// value returns the string under key in token's session.
func (s *server) value(token, key string) string {
	s.t.Helper()
	sess, err := s.m.Load(context.Background(), token)
	if err != nil {
		s.t.Fatalf("load: %v", err)
	}
	return getString(sess, key)
}

func (s *server) reap() {
	s.t.Helper()
	r, err := s.store.NewReaper(core.ReaperConfig{})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := r.RunOnce(context.Background()); err != nil {
		s.t.Fatal(err)
	}
}

func login(s *server) string {
	return s.request("", func(sess *core.Session) { sess.Put("user", "ada"); sess.SetSubject("ada") })
}

// deadAddr is a loopback address where no memcached listens.
func deadAddr(t *testing.T) string {
	port, err := memcachedtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// A user who only reads, once a minute, is not logged out when memcached
// restarts late in their idle window: every touch reaches the row within
// SyncInterval, so the row never lags their activity by more than that.
func TestReaderSurvivesCacheRestartWithDefaults(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: durabletest.NewMemory()})
	token := login(a)
	for minute := 1; minute <= 28; minute++ {
		c.advance(time.Minute)
		a.request(token, nil)
		a.store.WriterPass()
		a.reap()
	}
	mc.Restart()
	for minute := 29; minute <= 40; minute++ {
		c.advance(time.Minute)
		a.store.WriterPass()
		a.reap()
	}
	if !a.alive(token) {
		t.Fatal("a reader idle 12 minutes (IdleTimeout 30m) was logged out by a memcached restart")
	}
}

// A logout written while its app server could not reach the session's
// memcached node is a row state: another app server that still serves the
// node's stale copy learns of it at its next sync, within SyncInterval,
// whatever becomes of the app server that logged out.
func TestLogoutAroundNodeReachesOtherServersWithinSyncInterval(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	a.store.WriterPass()

	if d.request(token, func(s *core.Session) { _ = s.Destroy(context.Background()) }) != "" {
		t.Fatal("the session survived Destroy")
	}
	d.store.Close(context.Background()) // the app server that logged out restarts
	for step := 0; step <= 4; step++ {
		c.advance(30 * time.Second)
		alive := a.alive(token)
		a.request(token, nil)
		a.store.WriterPass()
		if step == 4 && alive {
			t.Fatalf("a logged-out session is still served %v after the logout (SyncInterval 2m)", time.Duration(step+1)*30*time.Second)
		}
	}
}

// A partition longer than a short session's idle timeout does not bring a
// logged-out session back: the tombstone stands until the session's
// absolute deadline, and the stale copy dies at its first sync.
func TestPartitionLongerThanIdleTimeoutKeepsLogout(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	d.request(token, func(s *core.Session) { _ = s.Destroy(context.Background()) })
	for minute := 1; minute <= 40; minute++ {
		c.advance(time.Minute)
		if a.alive(token) && minute > 2 {
			t.Fatalf("minute %d of the partition: the logged-out session is served", minute)
		}
		a.request(token, nil) // the attacker keeps using the cookie
		a.store.WriterPass()
		a.reap()
	}
	d2 := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db}) // the partition heals
	if d2.alive(token) || a.alive(token) {
		t.Fatal("the logged-out session came back after the partition")
	}
}

// "Log out everywhere" from a freshly started app server keeps a 7-day
// session's tombstone for the session's own life, so a copy left on
// another memcached node cannot come back 40 minutes later.
func TestDestroySubjectTombstoneLastsUntilDeadline(t *testing.T) {
	mc1 := memcachedtest.Start(t, memcachedtest.Options{})
	mc2 := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	old := newServer(t, c, serverOpts{servers: []string{mc1.Addr}, durable: db})
	token := old.request("", func(s *core.Session) {
		s.SetSubject("ada")
		s.RememberMe(7 * 24 * time.Hour)
		s.SetIdleTimeout(7 * 24 * time.Hour)
	})
	fresh := newServer(t, c, serverOpts{servers: []string{mc2.Addr}, durable: db})
	n, err := fresh.m.DestroySubject(context.Background(), "ada")
	if err != nil || n != 1 {
		t.Fatalf("DestroySubject = %d, %v; want 1, nil", n, err)
	}
	c.advance(40 * time.Minute)
	fresh.reap()
	for minute := 0; minute <= 3; minute++ {
		served := old.alive(token) // the copy left on the previous node
		old.request(token, nil)
		old.store.WriterPass()
		if served && minute == 3 {
			t.Fatal("a session destroyed with DestroySubject is still served from a stale copy 3 minutes on")
		}
		c.advance(time.Minute)
	}
	if fresh.alive(token) {
		t.Fatal("the destroyed session came back in the row")
	}
	recs, err := db.List(context.Background(), "ada", "", 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("rows of the subject: %d, %v", len(recs), err)
	}
	if left := recs[0].ExpiresAt.Sub(c.skewed(0)()); left < 6*24*time.Hour {
		t.Errorf("the tombstone row expires in %v; want the session's own deadline, 7 days from its start", left)
	}
}

// Versions are counters: an app server whose clock runs 5 minutes fast
// orders nothing. Two durable changes made at once from the same read,
// one on each server, both survive, in the row and in memcached.
func TestClockSkewOrdersNoWrites(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, skew: 5 * time.Minute})
	b := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	token := login(b)
	ctx := context.Background()
	sa, _ := a.m.Load(ctx, token)
	sb, _ := b.m.Load(ctx, token)
	sb.Put("b", "from B")
	sb.MarkDurable()
	if err := b.m.Save(ctx, sb); err != nil {
		t.Fatal(err)
	}
	sa.Put("a", "from A")
	sa.MarkDurable()
	if err := a.m.Save(ctx, sa); err != nil {
		t.Fatal(err)
	}
	mc.Restart() // only the row is left
	if got := b.value(token, "b"); got != "from B" {
		t.Errorf("B's durable change: row has %q", got)
	}
	if got := b.value(token, "a"); got != "from A" {
		t.Errorf("A's durable change: row has %q", got)
	}
}

// A change made on an app server whose clock is right reaches the row
// within SyncInterval even when the session was last synced by a server
// whose clock runs ahead: no row is due further off than SyncInterval on
// the scheduling server's own clock.
func TestSyncByFastClockDelaysNoRowWrite(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	fast := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, skew: 10 * time.Minute})
	b := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	token := login(fast) // its row is written with the fast clock's sync time
	b.request(token, func(s *core.Session) { s.Put("k", "v") })
	c.advance(2*time.Minute + time.Second) // the default SyncInterval, and a tick
	b.store.WriterPass()
	mc.Restart() // only the row is left
	if got := b.value(token, "k"); got != "v" {
		t.Fatalf("the row has %q, want the change made one SyncInterval ago", got)
	}
}

// A change an app server wrote around a node it could not reach is in the
// node's copy once the node answers that server again: its writer merges
// the stale copy with the row, though the copy has nothing unsynced, so
// other servers stop serving what the change replaced.
func TestWriteAroundNodeReachesItsCopyOnceTheNodeAnswers(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	var link cutNet
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, dial: link.dial})
	token := login(a)
	link.cut.Store(true)
	d.request(token, func(s *core.Session) { s.Put("k", "v") }) // written to the row only
	if got := a.value(token, "k"); got != "" {
		t.Fatalf("the copy has %q before the node answered the writer: the test did not cut it off", got)
	}
	link.cut.Store(false)
	d.store.WriterPass()
	if got := a.value(token, "k"); got != "v" {
		t.Fatalf("the copy has %q once the node answers again, want the change written around it", got)
	}
	if src := a.source(token); src != "memcached" {
		t.Fatalf("served from %q, want memcached", src)
	}
}

// The merge of a copy a write went around waits out a database outage: a
// batch the database refused keeps the copy marked for its retry.
func TestWriteAroundRepairSurvivesADatabaseOutage(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := &downDB{Tier: durabletest.NewMemory()}
	var link cutNet
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, dial: link.dial})
	token := login(a)
	link.cut.Store(true)
	d.request(token, func(s *core.Session) { s.Put("k", "v") }) // written to the row only
	link.cut.Store(false)
	db.down.Store(true)
	d.store.WriterPass() // the node answers, the database does not
	db.down.Store(false)
	c.advance(6 * time.Second) // past the writer's retry delay
	d.store.WriterPass()
	if got := a.value(token, "k"); got != "v" {
		t.Fatalf("the copy has %q after the outage, want the change written around it", got)
	}
}

// An app server that cannot read another's copy (sealed with a key it does
// not hold yet, or a newer format) serves and writes the row instead and
// never overwrites the copy; the copy's next sync merges both changes.
func TestUnreadableCopyIsNeverOverwritten(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	k1, k2 := core.NewSealKey(), core.NewSealKey()
	upgraded := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, seal: core.SealConfig{Keys: [][]byte{k2, k1}}})
	lagging := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, seal: core.SealConfig{Keys: [][]byte{k1}}})
	token := login(lagging)
	upgraded.request(token, func(s *core.Session) { s.Put("x", "upgraded") }) // the copy, sealed with k2
	lagging.request(token, func(s *core.Session) { s.Put("y", "lagging") })   // cannot open it: writes the row
	if got := upgraded.value(token, "x"); got != "upgraded" {
		t.Fatalf("x = %q after the lagging server's write: it overwrote a copy it could not read", got)
	}
	c.advance(3 * time.Minute)
	upgraded.request(token, nil)
	upgraded.store.WriterPass()
	check := func(when string) {
		if x, y := upgraded.value(token, "x"), upgraded.value(token, "y"); x != "upgraded" || y != "lagging" {
			t.Errorf("%s: x = %q, y = %q; want both servers' changes", when, x, y)
		}
	}
	check("after the sync")
	mc.Restart()
	check("from the row")
}

// Idle expiry comes from the session's own sealed data: an app server
// deployed with another SyncInterval neither serves a copy idle past its
// IdleTimeout nor a row idle past IdleTimeout plus the SyncInterval it was
// written under.
func TestIdleExpiryIgnoresSyncIntervalOfReader(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	before := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, syncInterval: 2 * time.Minute})
	after := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db, syncInterval: 10 * time.Minute})
	token := login(before)
	c.advance(31 * time.Minute)
	if after.alive(token) {
		t.Fatal("a copy idle 31 minutes (IdleTimeout 30m) was served")
	}
	token = login(before)
	mc.Restart()
	c.advance(33 * time.Minute)
	if after.alive(token) {
		t.Fatal("a row idle 33 minutes, written with SyncInterval 2m, was served by a server with SyncInterval 10m")
	}
}

// A restore after a cache loss costs one row read and one memcached write.
func TestRestoreCostsOneReadOneWrite(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: durabletest.NewMemory()})
	token := login(a)
	mc.Restart()
	before := a.store.Stats()
	if !a.alive(token) {
		t.Fatal("the session was not restored from its row")
	}
	after := a.store.Stats()
	if reads, writes := after.DBReads-before.DBReads, after.DBWrites-before.DBWrites; reads != 1 || writes != 0 {
		t.Errorf("restore: %d row reads, %d row writes; want 1 and 0", reads, writes)
	}
	if got := a.value(token, "user"); got != "ada" {
		t.Errorf("restored session: user = %q", got)
	}
	if after2 := a.store.Stats(); after2.DBReads != after.DBReads {
		t.Errorf("a read after the restore went to the database (%d reads)", after2.DBReads-after.DBReads)
	}
}

// A write the row took directly (around an unreachable node) is later than
// every change of the copy the node kept: when that copy syncs, its other
// changes are merged in, but not over the direct write's keys.
func TestDirectWriteBeatsStaleCopyOfSameKey(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	a.request(token, func(s *core.Session) { s.Put("cart", "book"); s.Put("theme", "dark") }) // in the copy only
	d.request(token, func(s *core.Session) { s.Put("cart", "pen") })                          // around the node
	c.advance(3 * time.Minute)
	a.request(token, nil)
	a.store.WriterPass()
	mc.Restart()
	if got := d.value(token, "cart"); got != "pen" {
		t.Errorf("cart = %q; the stale copy's older change replaced the write around the node", got)
	}
	if got := d.value(token, "theme"); got != "dark" {
		t.Errorf("theme = %q; the copy's own change was lost in the merge", got)
	}
}

// WriteThrough writes every change and touch to the row before Update
// returns: a memcached loss costs nothing, not even the last change.
func TestWriteThroughLosesNothingToCacheLoss(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	st, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}, Durable: durabletest.NewMemory(),
		WriteThrough: true, Reaper: core.ReaperConfig{Interval: -1}, Logger: quiet, Clock: c.skewed(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	m, err := core.New(core.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	a := &server{t: t, store: st, m: m}
	token := login(a)
	before := st.Stats().DBWrites
	a.request(token, func(s *core.Session) { s.Put("cart", "book") })
	if st.Stats().DBWrites == before {
		t.Fatal("a change under WriteThrough did not write the row")
	}
	mc.Restart()
	if got := a.value(token, "cart"); got != "book" {
		t.Fatalf("cart = %q after a memcached loss under WriteThrough", got)
	}
}

// Rows a reaper cannot read (sealed with a key it does not hold) are
// postponed, not left first in line: the dead rows behind them are still
// reaped, and the unreadable ones are kept.
func TestReaperIsNotStalledByUnreadableRows(t *testing.T) {
	c := newClock()
	db := durabletest.NewMemory()
	k1, k2 := core.NewSealKey(), core.NewSealKey()
	other := newServer(t, c, serverOpts{durable: db, seal: core.SealConfig{Keys: [][]byte{k2}}})
	for range 3 {
		login(other)
	}
	c.advance(time.Minute)
	ours := newServer(t, c, serverOpts{durable: db, seal: core.SealConfig{Keys: [][]byte{k1}}})
	login(ours)
	c.advance(2 * time.Hour) // every session idled out; theirs expired first
	r, err := ours.store.NewReaper(core.ReaperConfig{Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := r.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	st := ours.store.Stats()
	if st.ReapDeleted != 1 {
		t.Errorf("deleted %d; want our dead row deleted", st.ReapDeleted)
	}
	recs, _ := db.List(context.Background(), "ada", "", 10)
	if len(recs) != 3 {
		t.Errorf("%d rows left; want the 3 this reaper cannot read", len(recs))
	}
}

// I5: a durable write is later than every write before it, whatever copy it
// was made on: app server A, on a copy that missed a durable change written
// around the node, changes the same key durably afterwards, and A's value
// stands (the row's direct write wins only over changes made before it).
func TestLaterDurableWriteWinsOverEarlierDirectWrite(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	db := durabletest.NewMemory()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: db})
	d := newServer(t, c, serverOpts{servers: []string{deadAddr(t)}, durable: db})
	token := login(a)
	d.request(token, func(s *core.Session) { s.Put("k1", "first"); s.MarkDurable() })  // around the node
	a.request(token, func(s *core.Session) { s.Put("k1", "second"); s.MarkDurable() }) // on the copy that missed it
	mc.Restart()
	if got := d.value(token, "k1"); got != "second" {
		t.Errorf("k1 = %q; the later durable write lost to the earlier one", got)
	}
}

// I2: a destroyed session's tombstone stands until the session's deadline:
// inserting under its token again (a scs Commit racing a Delete) is
// refused, in the row as in memcached.
func TestInsertDoesNotReplaceATombstone(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c := newClock()
	a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: durabletest.NewMemory()})
	ctx := context.Background()
	token := core.NewToken()
	kv := core.NewKV(a.store, 60)
	insert := func() error { return kv.Write(ctx, token, nil, []byte("x"), 30*time.Minute, kv.Now().Add(time.Hour)) }
	if err := insert(); err != nil {
		t.Fatal(err)
	}
	c.advance(40 * time.Minute) // the session idled out; its deadline is ahead
	if err := a.store.Delete(ctx, token); err != nil {
		t.Fatal(err)
	}
	if err := insert(); err != nil {
		t.Fatal(err) // nothing live to destroy: the idled-out session's key is free
	}
	if err := a.store.Delete(ctx, token); err != nil {
		t.Fatal(err)
	}
	mc.Restart() // only the row's tombstone is left
	if err := insert(); !errors.Is(err, core.ErrConflict) {
		t.Fatalf("an insert over a tombstone row = %v, want ErrConflict", err)
	}
}
