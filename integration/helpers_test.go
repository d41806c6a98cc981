package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// backend is one database the tests run against.
type backend = gormtest.Backend

// backends returns SQLite always, and PostgreSQL and MariaDB/MySQL when
// their DSNs are set (gormtest: under CI a missing DSN fails the test).
func backends(t *testing.T) []backend { return gormtest.Backends(t) }

// forEachBackend runs fn as a subtest per database.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, b) })
	}
}

// clock is a virtual clock shared by the app servers of one test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().Truncate(time.Millisecond)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// stack is one memcached and one database table shared by several app
// servers (Stores and Managers), as behind a load balancer.
type stack struct {
	mc    *memcachedtest.Server
	db    *gorm.DB
	table string
	clock *clock
	// durable is the table's durable tier, for inspecting rows.
	durable *gormstore.Store
}

func newStack(t *testing.T, b backend) *stack {
	t.Helper()
	st := &stack{mc: memcachedtest.Start(t, memcachedtest.Options{}), db: b.Open(t), clock: newClock()}
	st.table = gormtest.UniqueTable("it_")
	d, err := gormstore.New(st.db, gormstore.Config{TableName: st.table})
	if err != nil {
		t.Fatal(err)
	}
	st.durable = d
	t.Cleanup(func() { st.db.Migrator().DropTable(st.table) })
	return st
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// store returns a new app server's Store on the stack's tiers.
func (st *stack) store(t *testing.T, mod func(*core.StoreConfig)) *core.Store {
	t.Helper()
	d, err := gormstore.New(st.db, gormstore.Config{TableName: st.table, SkipMigration: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{st.mc.Addr}, BreakerCooldown: 50 * time.Millisecond},
		Durable:   d,
		Logger:    quiet,
		Clock:     st.clock.Now,
		// Tests run their reaper passes themselves, on the virtual clock.
		Reaper: core.ReaperConfig{Interval: -1},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := core.NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// manager returns a Manager on a new app server's Store.
func (st *stack) manager(t *testing.T, smod func(*core.StoreConfig), mmod func(*core.Config)) *core.Manager {
	t.Helper()
	cfg := core.Config{Store: st.store(t, smod), Cookie: core.CookieConfig{Insecure: true}}
	if mmod != nil {
		mmod(&cfg)
	}
	m, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// record returns token's database row as stored, sealed or not.
func (st *stack) record(t *testing.T, token string) (durable.Record, bool) {
	t.Helper()
	rec, found, err := st.durable.Load(context.Background(), core.StorageKey(token))
	if err != nil {
		t.Fatal(err)
	}
	return rec, found
}

// row returns token's database row, whatever its state, and its envelope
// (the stack's Stores are unsealed); found is false when there is no row.
func (st *stack) row(t *testing.T, token string) (durable.Record, envelope, bool) {
	t.Helper()
	rec, found := st.record(t, token)
	var e envelope
	if found {
		var err error
		if e, err = decodeEnvelope(rec.Payload); err != nil {
			t.Fatalf("row of %s: %v", core.StorageKey(token), err)
		}
	}
	return rec, e, found
}

// liveRow reports whether token's row holds a session a reader would serve
// at the stack's clock: no tombstone, and not past its sealed expiry.
func (st *stack) liveRow(t *testing.T, token string) bool {
	t.Helper()
	_, e, found := st.row(t, token)
	return found && !e.Destroyed && st.clock.Now().Before(e.rowExpiresAt())
}

// rowValues returns the values of token's row (the Manager's default
// codec, msgpack); nil when there is no row.
func (st *stack) rowValues(t *testing.T, token string) map[string]any {
	t.Helper()
	_, e, found := st.row(t, token)
	if !found {
		return nil
	}
	return e.values(t)
}

// put loads token's session on m, puts key=value, saves, and returns the token.
func put(t *testing.T, m *core.Manager, token, key string, value any) string {
	t.Helper()
	ctx := context.Background()
	s, err := m.Load(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	s.Put(key, value)
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s.Token()
}

// load loads token's session on m.
func load(t *testing.T, m *core.Manager, token string) *core.Session {
	t.Helper()
	s, err := m.Load(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readOnly loads token's session on m and saves it unchanged: a read-only
// request (its throttled touch included).
func readOnly(t *testing.T, m *core.Manager, token string) {
	t.Helper()
	s := load(t, m, token)
	if s.IsNew() {
		t.Fatal("the session is gone")
	}
	if err := m.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// flush runs the background writers of stores now: they write the rows
// whose sync is due at the Stores' clock.
func flush(t *testing.T, stores ...*core.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range stores {
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// syncDue advances the stack's clock by d (at least the Stores'
// SyncInterval, so that every sync scheduled until now is due) and runs
// the background writers of stores.
func (st *stack) syncDue(t *testing.T, d time.Duration, stores ...*core.Store) {
	t.Helper()
	st.clock.Advance(d)
	flush(t, stores...)
}

// client is a browser: an HTTP client with a cookie jar.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitBreaker waits until s's breaker for the node at addr is open (or
// closed), for at most 5 s.
func awaitBreaker(t *testing.T, s *core.Store, addr string, open bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		o, known := nodeOpen(s, addr)
		if !known {
			t.Fatalf("%s is not in the Store's ring", addr)
		}
		if o == open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker of %s is not open=%v after 5 s", addr, open)
		}
	}
}

// nodeOpen reports whether node addr's breaker is open on store s, and
// whether s knows the node at all.
func nodeOpen(s *core.Store, addr string) (open, known bool) {
	open, known = s.Stats().Nodes[addr]
	return open, known
}

// rawMemcached talks to memcached without hybridsession, to plant entries.
type rawMemcached struct{ c *memcache.Client }

func newRawMemcached(t *testing.T, addr string) rawMemcached {
	return rawMemcached{c: memcache.New(addr)}
}

func (r rawMemcached) set(t *testing.T, key string, value []byte) {
	t.Helper()
	if err := r.c.Set(&memcache.Item{Key: key, Value: value, Expiration: 600}); err != nil {
		t.Fatal(err)
	}
}

func mkey(token string) string { return "hs:" + core.StorageKey(token) }

// kvSet stores val under key for ttl as the fiber Storage's Set does: it
// reads the key and writes over it, again (up to 8 times) when another
// write came between.
func kvSet(ctx context.Context, kv *core.KV, key string, val []byte, ttl time.Duration) error {
	for attempt := 0; ; attempt++ {
		it, err := kv.Read(ctx, key)
		if err != nil {
			return err
		}
		err = kv.Write(ctx, key, it, val, ttl, kv.Now().Add(ttl))
		if !errors.Is(err, core.ErrConflict) || attempt >= 8 {
			return err
		}
	}
}

// kvGet returns the value stored under key, nil when there is none.
func kvGet(ctx context.Context, kv *core.KV, key string) ([]byte, error) {
	it, err := kv.Read(ctx, key)
	if it == nil {
		return nil, err
	}
	return it.Value, nil
}

// faultyDurable is a durable tier whose calls can be made to fail, as
// those of a database that refuses connections.
type faultyDurable struct {
	durable.Tier
	writes atomic.Bool // Write fails
	down   atomic.Bool // every call fails
}

var errRefused = errors.New("injected: connection refused")

func (f *faultyDurable) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	if f.down.Load() {
		return durable.Record{}, false, errRefused
	}
	return f.Tier.Load(ctx, key)
}

func (f *faultyDurable) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	if f.down.Load() || f.writes.Load() {
		return nil, errRefused
	}
	return f.Tier.Write(ctx, batch)
}

func (f *faultyDurable) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	if f.down.Load() {
		return nil, errRefused
	}
	return f.Tier.List(ctx, subject, after, limit)
}

func (f *faultyDurable) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	if f.down.Load() {
		return 0, errRefused
	}
	return f.Tier.Reap(ctx, now, limit, judge)
}

// faulty returns a StoreConfig modifier that puts a faultyDurable around
// the configured durable tier, and the faultyDurable.
func faulty() (func(*core.StoreConfig), *faultyDurable) {
	f := &faultyDurable{}
	return func(c *core.StoreConfig) {
		f.Tier = c.Durable
		c.Durable = f
	}, f
}

// opTracer records the memcached operations of a Store (its StartCacheOp is
// a MemcachedConfig.Tracer).
type opTracer struct {
	mu  sync.Mutex
	ops []tracedOp
}

type tracedOp struct{ op, addr string }

func (o *opTracer) StartCacheOp(_ context.Context, op, addr string) func(error) {
	o.mu.Lock()
	o.ops = append(o.ops, tracedOp{op, addr})
	o.mu.Unlock()
	return func(error) {}
}

// count returns how many operations op were recorded.
func (o *opTracer) count(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.ops {
		if r.op == op {
			n++
		}
	}
	return n
}

// placement tells which of a ring's memcached nodes holds a token's copy:
// it asks a Store on that ring, without a durable tier, to read the token,
// and records which node the read went to.
type placement struct {
	t     *testing.T
	store *core.Store
	tr    *opTracer
	addrs []string
}

func newPlacement(t *testing.T, addrs ...string) *placement {
	t.Helper()
	tr := &opTracer{}
	s, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{
			Servers: addrs, Timeout: 20 * time.Millisecond, BreakerThreshold: 1 << 30, Tracer: tr.StartCacheOp,
		},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return &placement{t: t, store: s, tr: tr, addrs: addrs}
}

// owner returns the index in the ring's addresses of the node owning token.
func (p *placement) owner(token string) int {
	p.t.Helper()
	p.tr.mu.Lock()
	p.tr.ops = nil
	p.tr.mu.Unlock()
	_, _ = core.NewKV(p.store, 61).Read(context.Background(), token) // read only: a miss or an error tells as much
	p.tr.mu.Lock()
	defer p.tr.mu.Unlock()
	if len(p.tr.ops) != 1 {
		p.t.Fatalf("placement: %d memcached operations for one read", len(p.tr.ops))
	}
	for i, a := range p.addrs {
		if a == p.tr.ops[0].addr {
			return i
		}
	}
	p.t.Fatalf("placement: the read went to %s, not a node of the ring", p.tr.ops[0].addr)
	return -1
}

// Envelopes as both tiers store them, in plain text (format 3, see
// core/internal/envelope): the tests decode rows and copies of unsealed
// Stores to inspect them, and encode envelopes to forge them.
//
//	"hs", format 3, codec, flags (1 persistent, 2 destroyed, 4 unsynced),
//	lineage (8 bytes, big endian), then unsigned varints: created,
//	deadline (Unix ms), idle (ms), active (Unix ms), grace (ms), version,
//	base, synced at (Unix ms), synced version, whole-at, count of changed
//	keys, each (length, bytes, version); written floor, count of written
//	keys, each (length, bytes, row version); subject (length, bytes);
//	payload.
type envelope struct {
	Codec                           uint8
	Persistent, Destroyed, Unsynced bool
	Lineage                         uint64
	Created, Deadline               time.Time
	IdleTimeout                     time.Duration
	ActiveAt                        time.Time
	Grace                           time.Duration
	Version, Base                   uint64
	SyncedAt                        time.Time
	SyncedVersion, WholeAt          uint64
	Changed                         []string
	Scope                           uint64 // names the creating Manager (format 4; encode writes format 3, unscoped)
	Subject                         string
	Payload                         []byte
}

// rowExpiresAt is when a row holding e stops being served: its last
// activity plus idle timeout plus grace, capped at the deadline.
func (e envelope) rowExpiresAt() time.Time {
	t := e.ActiveAt.Add(e.IdleTimeout + e.Grace)
	if t.After(e.Deadline) {
		return e.Deadline
	}
	return t
}

// values decodes e's payload with the Manager's default codec.
func (e envelope) values(t *testing.T) map[string]any {
	t.Helper()
	if len(e.Payload) == 0 {
		return map[string]any{}
	}
	v, err := core.Msgpack.Decode(e.Payload)
	if err != nil {
		t.Fatalf("decode values: %v", err)
	}
	return v
}

func msOf(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixMilli())
}

func timeOf(ms uint64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// encode returns e as a plain format-3 envelope.
func (e envelope) encode() []byte {
	var flags byte
	if e.Persistent {
		flags |= 1
	}
	if e.Destroyed {
		flags |= 2
	}
	if e.Unsynced {
		flags |= 4
	}
	b := append([]byte("hs\x03"), e.Codec, flags)
	b = binary.BigEndian.AppendUint64(b, e.Lineage)
	for _, v := range []uint64{msOf(e.Created), msOf(e.Deadline), uint64(e.IdleTimeout.Milliseconds()),
		msOf(e.ActiveAt), uint64(e.Grace.Milliseconds()), e.Version, e.Base, msOf(e.SyncedAt),
		e.SyncedVersion, e.WholeAt, uint64(len(e.Changed))} {
		b = binary.AppendUvarint(b, v)
	}
	for _, k := range e.Changed {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, e.Version)
	}
	b = binary.AppendUvarint(b, 0) // written floor
	b = binary.AppendUvarint(b, 0) // no written keys
	b = binary.AppendUvarint(b, uint64(len(e.Subject)))
	b = append(b, e.Subject...)
	return append(b, e.Payload...)
}

var errNotPlain = errors.New("not a plain format-3 or format-4 envelope")

// decodeEnvelope decodes a plain format-3 or format-4 envelope.
func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < 13 || string(b[:3]) != "hs\x03" && string(b[:3]) != "hs\x04" {
		return e, errNotPlain
	}
	e.Codec = b[3]
	e.Persistent, e.Destroyed, e.Unsynced = b[4]&1 != 0, b[4]&2 != 0, b[4]&4 != 0
	e.Lineage = binary.BigEndian.Uint64(b[5:13])
	rest := b[13:]
	bad := false
	next := func() uint64 {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			bad = true
			return 0
		}
		rest = rest[n:]
		return v
	}
	str := func() string {
		n := next()
		if bad || n > uint64(len(rest)) {
			bad = true
			return ""
		}
		s := string(rest[:n])
		rest = rest[n:]
		return s
	}
	e.Created, e.Deadline = timeOf(next()), timeOf(next())
	e.IdleTimeout = time.Duration(next()) * time.Millisecond
	e.ActiveAt = timeOf(next())
	e.Grace = time.Duration(next()) * time.Millisecond
	e.Version, e.Base = next(), next()
	e.SyncedAt = timeOf(next())
	e.SyncedVersion, e.WholeAt = next(), next()
	for n := next(); n > 0 && !bad; n-- {
		e.Changed = append(e.Changed, str())
		next()
	}
	next() // written floor
	for n := next(); n > 0 && !bad; n-- {
		str()
		next()
	}
	if b[2] == 4 {
		e.Scope = next()
	}
	e.Subject = str()
	if bad {
		return e, errNotPlain
	}
	e.Payload = rest
	return e, nil
}

// getInt and getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getInt(s *core.Session, key string) int       { v, _ := core.Value[int](s, key); return v }
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
