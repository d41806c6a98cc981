package integration

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
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
		ReapMode: core.ReapExternal,
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
	cfg := core.Config{Store: st.store(t, smod), Logger: quiet, Cookie: core.CookieConfig{Insecure: true}}
	if mmod != nil {
		mmod(&cfg)
	}
	m, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// row returns the live database row of token, or found=false.
func (st *stack) row(t *testing.T, token string) (core.Record, core.Entry, bool) {
	t.Helper()
	return st.rowAt(t, token, st.clock.Now())
}

// rowAt returns the database row of token as Load sees it at now.
func (st *stack) rowAt(t *testing.T, token string, now time.Time) (core.Record, core.Entry, bool) {
	t.Helper()
	rec, found, err := st.durable.Load(context.Background(), core.StorageKey(token), now)
	if err != nil {
		t.Fatal(err)
	}
	var e core.Entry
	if found {
		if err := core.DecodeEnvelope(rec.Payload, &e); err != nil {
			t.Fatal(err)
		}
	}
	return rec, e, found
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

func flush(t *testing.T, s *core.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
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
