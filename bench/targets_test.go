package bench

import (
	"context"
	"flag"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// target is one session library wired into one framework, serving the
// benchmark routes:
//
//	/new      put the values of a fresh session (newValues) and answer
//	/read     read "user"
//	/modify   increment "n"
//	/add/k    put key k
//	/count    answer how many of the keys k0..k15 the session holds
type target struct {
	name       string
	ours       bool
	trips      *atomic.Int64 // memcached round trips; nil: no memcached
	pathTrips  *atomic.Int64 // ours: memcached round trips on the request path
	sql        *sqlCounter   // SQL statements; nil: no database
	pathKnown  bool          // sql.onPath is meaningful (the library passes the request's context down)
	clock      *vclock       // the Store's clock; nil: real time
	writer     *writerDriver // runs the Store's background writer in virtual time; nil: none
	cookieName string
	newClient  func() client
	flush      func() // waits for background database writes; nil: none
}

// tick advances the target's virtual clock, if it has one, by d: the time
// between one request and the next.
func (t *target) tick(d time.Duration) {
	if t.clock != nil {
		t.clock.Advance(d)
		t.writer.advanced()
	}
}

// writerPass makes the pass of the background writer that is due, if any,
// between two requests of a serial benchmark, outside the measurement: the
// timer is stopped and the pass's CPU time is returned, for the caller to
// leave out of cpu-ns/op. It must follow serial(true).
func (t *target) writerPass(b *testing.B) time.Duration {
	if t.writer == nil || !t.writer.due() {
		return 0
	}
	b.StopTimer()
	cpu0 := cpuTime()
	t.writer.pass()
	cpu := cpuTime() - cpu0
	b.StartTimer()
	return cpu
}

// writerDriver runs a Store's background writer at its pace in virtual
// time. The writer wakes every writerTick of real time, while the
// benchmarks' virtual clock runs far faster: left alone, it would write a
// session's row once where real time would write it every SyncInterval.
// The driver makes a pass (Store.Flush: the rows that are due) each time
// the virtual clock has moved on by the writer's tick.
//
// By default it does so concurrently with the requests, as the writer does
// in a deployment. The compressed clock then puts many requests inside
// each pass, and a session changed between the pass's read of its copy and
// the copy's confirmation is synced again at the next tick (core's writer:
// the confirmation is best effort), so the parallel benchmarks count more
// row writes than real time would. Serial benchmarks run the passes
// between requests instead (serial, target.writerPass).
type writerDriver struct {
	st     *core.Store
	clock  *vclock
	every  int64        // the writer's tick, in virtual nanoseconds
	last   atomic.Int64 // the virtual time of the last pass
	inline atomic.Bool  // passes run between requests, by writerPass
	kick   chan struct{}
	done   chan struct{}
}

func newWriterDriver(tb testing.TB, st *core.Store, clock *vclock) *writerDriver {
	w := &writerDriver{st: st, clock: clock, every: int64(writerTick(st)), kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.last.Store(clock.ns.Load())
	go w.run()
	tb.Cleanup(func() { close(w.kick); <-w.done })
	return w
}

// serial makes the driver leave its passes to writerPass (on) or make
// them concurrently (off).
func (w *writerDriver) serial(on bool) {
	if w != nil {
		w.inline.Store(on)
	}
}

// due reports whether the virtual clock has moved on by the writer's tick
// since the last pass.
func (w *writerDriver) due() bool {
	return w.clock.ns.Load()-w.last.Load() >= w.every
}

// advanced asks for a concurrent pass when one is due.
func (w *writerDriver) advanced() {
	if w == nil || w.inline.Load() || !w.due() {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default: // a pass is already asked for
	}
}

// pass makes a pass now.
func (w *writerDriver) pass() {
	w.last.Store(w.clock.ns.Load())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = w.st.Flush(ctx)
}

func (w *writerDriver) run() {
	defer close(w.done)
	for range w.kick {
		w.pass()
	}
}

// newSession creates a session with c and returns its cookie value.
func (t *target) newSession(b testing.TB, c client) string {
	t.tick(clickInterval)
	ck, _, status := c.do("/new", "", true)
	if status != 200 || ck == "" {
		b.Fatalf("%s: /new answered %d without a session cookie", t.name, status)
	}
	return ck
}

type reading struct {
	trips, pathTrips int64
	sql              sqlSnap
}

func (t *target) read() reading {
	var r reading
	if t.trips != nil {
		r.trips = t.trips.Load()
	}
	if t.pathTrips != nil {
		r.pathTrips = t.pathTrips.Load()
	}
	r.sql = t.sql.snap()
	return r
}

// report waits for background writes and reports the counts since r0, per
// request (n requests).
func (t *target) report(b *testing.B, r0 reading, n int) {
	if t.flush != nil {
		t.flush()
	}
	d := t.read()
	d.trips -= r0.trips
	d.pathTrips -= r0.pathTrips
	d.sql = d.sql.sub(r0.sql)
	per := func(v int64) float64 { return float64(v) / float64(n) }
	if t.trips != nil {
		b.ReportMetric(per(d.trips), "mc-rt/op")
	}
	if t.pathTrips != nil {
		// mc-rt/op counts the background writer's round trips too (a
		// GetMulti and a confirmation per sync); these are the request's.
		b.ReportMetric(per(d.pathTrips), "mc-rt-path/op")
	}
	if t.sql != nil {
		b.ReportMetric(per(d.sql.stmts), "sql/op")
		b.ReportMetric(per(d.sql.writes), "sql-writes/op")
		if t.pathKnown {
			b.ReportMetric(per(d.sql.onPath), "sql-path/op")
			b.ReportMetric(per(d.sql.onPathWrites), "sql-path-writes/op")
		}
	}
}

// clickInterval is the time between two requests of one user: 5 s.
const clickInterval = 5 * time.Second

// newValues are the values of a fresh session, the same for every library:
// a user, a CSRF token, a preference and a counter.
var newValues = []struct {
	key   string
	value any
}{
	{"user", "ada@example.com"},
	{"csrf", "ZmFrZS1jc3JmLXRva2VuLWZvci10aGUtYmVuY2htYXJr"},
	{"theme", "dark"},
	{"n", 0},
}

// addKeys are the keys the one-session workload adds, one per request.
var addKeys = func() []string {
	k := make([]string, 16)
	for i := range k {
		k[i] = "k" + string(rune('a'+i))
	}
	return k
}()

// ---------------------------------------------------------------------------
// env: what one top-level benchmark shares among its targets

type env struct {
	mc       *memcachedtest.Server
	targets  map[string]*target
	cleanups []func() // of the target being measured, run when its sub-benchmark ends
}

// targetTB is the testing.TB a target is built with: failures and skips go
// to the sub-benchmark, cleanups run when the target's sub-benchmark ends
// (so that connection pools do not pile up on PostgreSQL).
type targetTB struct {
	testing.TB
	e *env
}

func (t targetTB) Cleanup(f func()) { t.e.cleanups = append(t.e.cleanups, f) }

// closeTarget runs the cleanups of the target just measured, last first.
func (e *env) closeTarget() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

func newEnv(tb testing.TB) *env {
	e := &env{mc: startMemcached(tb), targets: map[string]*target{}}
	warmMemcached(tb, e.mc.Addr)
	return e
}

// warmMemcached sends a few thousand commands to a fresh memcached, so that
// the first library measured does not pay for its start.
func warmMemcached(b testing.TB, addr string) {
	var n atomic.Int64
	c := newMemcacheClient(addr, &n)
	defer c.Close()
	it := &memcache.Item{Key: "warm", Value: make([]byte, floorValueSize)}
	for range 2000 {
		if err := c.Set(it); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Get("warm"); err != nil {
			b.Fatal(err)
		}
	}
}

// builders make the targets, by name, with tb from env.tb.
var builders = map[string]func(e *env, tb testing.TB) *target{}

// targetNames lists every target in table order: ours, then the peers.
var targetNames = []string{
	"hybrid-gin", "hybrid-echo", "hybrid-fiber", "hybrid-scs",
	"hybrid-gin-wt", "hybrid-echo-wt", "hybrid-fiber-wt",
	"gincontrib-memcached", "gincontrib-gorm-pg", "fiber-session-gomemcache",
}

// target returns the named target, built on first use within e.
func (e *env) target(b *testing.B, name string) *target {
	if t, ok := e.targets[name]; ok {
		if t == nil {
			b.Skip("unavailable (see the first run)")
		}
		return t
	}
	e.targets[name] = nil
	t := builders[name](e, targetTB{TB: b, e: e})
	e.targets[name] = t
	return t
}

// targetsShift rotates the order of the targets. go test's -count repeats
// each sub-benchmark in a row, so scripts/bench.sh runs the suite several
// times with different shifts instead: no library always runs first (on a
// fresh memcached and a small heap) or after the same neighbour.
var targetsShift = flag.Int("targets.shift", 0, "rotate the order of the targets by this many places")

// sealKeys is the key ring of our targets' Stores: sealing is on, as the
// README configures it; -seal=false measures without it (for the ratio).
var sealKeys = func() func() [][]byte {
	on := flag.Bool("seal", true, "seal our targets' envelopes (StoreConfig.Seal); false for the unsealed ratio")
	key := core.NewSealKey()
	return func() [][]byte {
		if !*on {
			return nil
		}
		return [][]byte{key}
	}
}()

// forTargets runs fn as a sub-benchmark for every target.
func forTargets(b *testing.B, fn func(b *testing.B, t *target)) {
	e := newEnv(b)
	shift := *targetsShift % len(targetNames)
	for i := range targetNames {
		name := targetNames[(i+shift)%len(targetNames)]
		b.Run(name, func(b *testing.B) {
			fn(b, e.target(b, name))
		})
		e.closeTarget()
	}
}

// ---------------------------------------------------------------------------
// hybridsession stores

// pathTracer counts the memcached operations made under a request's
// context (one round trip each): its StartCacheOp is a
// core.MemcachedConfig.Tracer.
type pathTracer struct{ n *atomic.Int64 }

func (p pathTracer) StartCacheOp(ctx context.Context, _, _ string) func(error) {
	if ctx.Value(onPathKey{}) != nil {
		p.n.Add(1)
	}
	return func(error) {}
}

// withPathTracer returns a configuration change that counts into n the
// memcached round trips on the request path.
func withPathTracer(n *atomic.Int64) func(*core.StoreConfig) {
	return func(c *core.StoreConfig) { c.Memcached.Tracer = pathTracer{n}.StartCacheOp }
}

// hybridStore builds a core.Store on e's memcached and on PostgreSQL (SQLite
// when PostgreSQL is unavailable), counting round trips and statements.
// clock nil means real time.
func (e *env) hybridStore(tb testing.TB, name string, clock *vclock) (*core.Store, *atomic.Int64, *sqlCounter) {
	return e.hybridStoreWith(tb, name, clock, func(*core.StoreConfig) {})
}

// hybridStoreWith is hybridStore with mod applied to the configuration.
func (e *env) hybridStoreWith(tb testing.TB, name string, clock *vclock, mod func(*core.StoreConfig)) (*core.Store, *atomic.Int64, *sqlCounter) {
	trips := new(atomic.Int64)
	counter := new(sqlCounter)
	durable := openDurable(tb, tableName(name), counter)
	cfg := core.StoreConfig{
		Memcached: core.MemcachedConfig{
			Servers:     []string{e.mc.Addr},
			Timeout:     memcacheTimeout,
			DialContext: countingDialer(trips),
		},
		Durable: durable,
		Seal:    core.SealConfig{Keys: sealKeys()},
		Logger:  quiet,
		// The request benchmarks count the request's own statements and
		// the background writer's; a reaper's passes are measured by
		// BenchmarkReaper and BenchmarkDatabaseLoad.
		Reaper: core.ReaperConfig{Interval: -1},
	}
	mod(&cfg)
	if clock != nil {
		cfg.Clock = clock.Now
	}
	st, err := core.NewStore(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close(context.Background()) })
	return st, trips, counter
}

// hybridManager is a Manager with the default tunables, except an absolute
// lifetime long enough for the virtual clock of a long benchmark, and
// durableKeys as its Config.DurableKeys.
func hybridManager(b testing.TB, st *core.Store, durableKeys ...string) *core.Manager {
	m, err := core.New(core.Config{
		Store:       st,
		Lifetime:    10 * 365 * 24 * time.Hour,
		DurableKeys: durableKeys,
		Cookie:      core.CookieConfig{Insecure: true},
	})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// writeThroughKeys are every key the benchmarks put: as a Manager's
// DurableKeys they make each change reach the database before the
// response, as a write-through store (Django's cached_db) does.
var writeThroughKeys = func() []string {
	keys := append([]string(nil), addKeys...)
	for _, v := range newValues {
		keys = append(keys, v.key)
	}
	return keys
}()

var nonWord = regexp.MustCompile(`[^a-z0-9_]`)

func tableName(name string) string {
	return "hs_" + nonWord.ReplaceAllString(strings.ToLower(name), "_")
}

// openDurable opens the durable tier: gormstore on PostgreSQL, or on SQLite
// when PostgreSQL is unavailable.
func openDurable(b testing.TB, table string, counter *sqlCounter) *gormstore.Store {
	var db *gorm.DB
	if havePostgres() {
		db = openGormPostgres(b, counter)
	} else {
		dir, err := os.MkdirTemp("", "hybridsession-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
		db, err = sqlite.Open(dir + "/sessions.db?_pragma=synchronous(OFF)")
		if err != nil {
			b.Fatal(err)
		}
		countGorm(db, counter)
		b.Cleanup(func() {
			if sqlDB, err := db.DB(); err == nil {
				_ = sqlDB.Close()
			}
		})
	}
	d, err := gormstore.New(db, gormstore.Config{TableName: table})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// countGorm counts db's statements into counter with GORM callbacks (for
// SQLite, which has no pgx tracer).
func countGorm(db *gorm.DB, counter *sqlCounter) {
	count := func(tx *gorm.DB) { counter.count(tx.Statement.Context, tx.Statement.SQL.String()) }
	cb := db.Callback()
	_ = cb.Raw().Before("gorm:raw").Register("bench:count", count)
	_ = cb.Row().Before("gorm:row").Register("bench:count", count)
	_ = cb.Query().Before("gorm:query").Register("bench:count", count)
	_ = cb.Create().Before("gorm:create").Register("bench:count", count)
	_ = cb.Update().Before("gorm:update").Register("bench:count", count)
	_ = cb.Delete().Before("gorm:delete").Register("bench:count", count)
}
