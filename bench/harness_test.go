package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// quiet discards the libraries' logs.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// ---------------------------------------------------------------------------
// memcached round trips, counted on the connections

// flightConn counts command flights on one connection: a round trip starts
// with the first write after a read (or the first write of all). A client
// uses a connection from one goroutine at a time, so the flag needs no lock.
type flightConn struct {
	net.Conn
	n       *atomic.Int64
	inWrite bool
}

func (c *flightConn) Write(b []byte) (int, error) {
	if !c.inWrite {
		c.inWrite = true
		c.n.Add(1)
	}
	return c.Conn.Write(b)
}

func (c *flightConn) Read(b []byte) (int, error) {
	c.inWrite = false
	return c.Conn.Read(b)
}

// countingDialer returns a DialContext for gomemcache (or core's
// MemcachedConfig) whose connections count round trips into n.
func countingDialer(n *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &flightConn{Conn: c, n: n}, nil
	}
}

// memcacheTimeout is the socket timeout of every memcached client in the
// benchmarks, ours and the peers' alike: gomemcache's default (500ms), so
// that other processes loading the two cores never trip a breaker.
const memcacheTimeout = 500 * time.Millisecond

// newMemcacheClient returns a gomemcache client for a peer or a floor,
// counting round trips into n, with as many idle connections as ours keeps.
func newMemcacheClient(addr string, n *atomic.Int64) *memcache.Client {
	c := memcache.New(addr)
	c.DialContext = countingDialer(n)
	c.MaxIdleConns = 64
	c.Timeout = memcacheTimeout
	return c
}

// startMemcached starts a memcached for the benchmark or test tb (and its
// sub-benchmarks): killed when tb ends.
func startMemcached(tb testing.TB) *memcachedtest.Server {
	return memcachedtest.Start(tb, memcachedtest.Options{MemoryMB: 256})
}

// ---------------------------------------------------------------------------
// SQL statements, counted in the driver

// onPathKey marks the context of a request: statements run under it are on
// the request path; the background writer's are not.
type onPathKey struct{}

// requestContext is the context every benchmark request carries.
var requestContext = context.WithValue(context.Background(), onPathKey{}, true)

// sqlCounter is a pgx QueryTracer counting statements.
type sqlCounter struct {
	stmts, writes, onPath, onPathWrites atomic.Int64
}

func (c *sqlCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.count(ctx, d.SQL)
	return ctx
}

func (c *sqlCounter) count(ctx context.Context, sql string) {
	c.stmts.Add(1)
	w := isWrite(sql)
	if w {
		c.writes.Add(1)
	}
	if ctx != nil && ctx.Value(onPathKey{}) != nil {
		c.onPath.Add(1)
		if w {
			c.onPathWrites.Add(1)
		}
	}
}

func (*sqlCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// sqlSnap is a reading of a sqlCounter.
type sqlSnap struct{ stmts, writes, onPath, onPathWrites int64 }

func (c *sqlCounter) snap() sqlSnap {
	if c == nil {
		return sqlSnap{}
	}
	return sqlSnap{c.stmts.Load(), c.writes.Load(), c.onPath.Load(), c.onPathWrites.Load()}
}

func (a sqlSnap) sub(b sqlSnap) sqlSnap {
	return sqlSnap{a.stmts - b.stmts, a.writes - b.writes, a.onPath - b.onPath, a.onPathWrites - b.onPathWrites}
}

// isWrite reports whether a statement writes rows.
func isWrite(sql string) bool {
	s := strings.TrimLeft(sql, " \t\r\n(")
	if len(s) > 6 {
		s = s[:6]
	}
	s = strings.ToUpper(s)
	return strings.HasPrefix(s, "INSERT") || strings.HasPrefix(s, "UPDATE") || strings.HasPrefix(s, "DELETE") ||
		strings.HasPrefix(s, "WITH")
}

// ---------------------------------------------------------------------------
// PostgreSQL: one schema per process, dropped at the end

const defaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var pg struct {
	once   sync.Once
	dsn    string // with search_path set to schema; "" when unavailable
	schema string
	err    error
}

// resolvePostgres creates the process's schema once and returns a DSN whose
// connections work in it, or the reason PostgreSQL cannot be used.
func resolvePostgres() (string, error) {
	pg.once.Do(func() {
		base := os.Getenv("HYBRIDSESSION_POSTGRES_DSN")
		if base == "" {
			base = defaultPostgresDSN
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			pg.err = err
			return
		}
		defer conn.Close(ctx)
		pg.schema = fmt.Sprintf("hsbench_%d", os.Getpid())
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pg.schema+" CASCADE; CREATE SCHEMA "+pg.schema); err != nil {
			pg.err = err
			return
		}
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		pg.dsn = base + sep + "search_path=" + pg.schema
	})
	return pg.dsn, pg.err
}

// postgresDSN is resolvePostgres for a benchmark that needs PostgreSQL: it
// skips b when PostgreSQL cannot be reached.
func postgresDSN(b testing.TB) string {
	dsn, err := resolvePostgres()
	if err != nil {
		b.Skipf("PostgreSQL unavailable (%v): set HYBRIDSESSION_POSTGRES_DSN", err)
	}
	return dsn
}

// havePostgres reports whether PostgreSQL can be used.
func havePostgres() bool {
	_, err := resolvePostgres()
	return err == nil
}

// dropSchema removes the process's schema, if it was created.
func dropSchema() {
	if pg.dsn == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pg.schema+" CASCADE")
}

func TestMain(m *testing.M) {
	code := m.Run()
	dropSchema()
	os.Exit(code)
}

// openGormPostgres opens GORM on PostgreSQL through pgx's database/sql
// driver, with counter as the connections' tracer. It is closed when b ends.
func openGormPostgres(b testing.TB, counter *sqlCounter) *gorm.DB {
	cfg, err := pgx.ParseConfig(postgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Tracer = counter
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(parallelClients + 4)
	sqlDB.SetMaxIdleConns(parallelClients + 4)
	b.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

// ---------------------------------------------------------------------------
// CPU time

// cpuTime returns the process's user and system CPU time so far: what the
// work cost on this machine's cores, background goroutines included, less
// sensitive than wall time to other processes competing for the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ---------------------------------------------------------------------------
// virtual clock

// vclock is a clock the benchmarks advance by hand.
type vclock struct{ ns atomic.Int64 }

func newVClock() *vclock {
	c := &vclock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *vclock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *vclock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// writerTick is how often a Store's background writer makes a pass:
// SyncInterval/8, within 10ms and 10s (core's writer; the Store does not
// tell).
func writerTick(st *core.Store) time.Duration {
	syncInterval := core.NewKV(st, 61).SyncInterval() // the KV reads it back from the Store
	return min(max(syncInterval/8, 10*time.Millisecond), time.Minute)
}

// writerPace runs a Store's background writer at its pace in virtual time,
// for a benchmark that advances the clock step by step: the writer wakes
// every writerTick of real time, far slower than the virtual clock, so the
// benchmark makes its passes (Store.Flush: the rows that are due) each time
// the virtual clock has moved on by that tick. More frequent passes would
// write smaller batches than a deployment's writer; fewer, larger.
type writerPace struct {
	st    *core.Store
	every time.Duration
	last  time.Time
}

func newWriterPace(st *core.Store, now time.Time) *writerPace {
	return &writerPace{st: st, every: writerTick(st), last: now}
}

// at makes a pass when the clock, now, has moved on by the writer's tick
// since the last one.
func (w *writerPace) at(b *testing.B, now time.Time) {
	if now.Sub(w.last) >= w.every {
		flushStore(b, w.st)
		w.last = now
	}
}

func flushStore(b *testing.B, st *core.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}
