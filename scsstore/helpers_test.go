package scsstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/scsstore"
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

// clock is a virtual clock.
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

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// stack is one memcached and one database table, shared by the app
// servers (Stores) of a test.
type stack struct {
	mc      *memcachedtest.Server
	db      *gorm.DB
	table   string
	durable *gormstore.Store
	clock   *clock // nil: real time
}

func newStack(t *testing.T, b backend, virtualClock bool) *stack {
	t.Helper()
	st := &stack{mc: memcachedtest.Start(t, memcachedtest.Options{}), db: b.Open(t), table: gormtest.UniqueTable("scs_")}
	if virtualClock {
		st.clock = newClock()
	}
	d, err := gormstore.New(st.db, gormstore.Config{TableName: st.table})
	if err != nil {
		t.Fatal(err)
	}
	st.durable = d
	t.Cleanup(func() {
		if err := st.db.Migrator().DropTable(st.table); err != nil {
			t.Errorf("drop table %s: %v", st.table, err)
		}
	})
	return st
}

func (st *stack) now() time.Time {
	if st.clock != nil {
		return st.clock.Now()
	}
	return time.Now()
}

// server returns a new app server on the stack: a core.Store and an
// scsstore.Store on it.
func (st *stack) server(t *testing.T, syncInterval time.Duration, cfg scsstore.Config) (*core.Store, *scsstore.Store) {
	t.Helper()
	return st.serverOn(t, st.mc.Addr, syncInterval, cfg)
}

// serverOn is server with the memcached node at addr.
func (st *stack) serverOn(t *testing.T, addr string, syncInterval time.Duration, cfg scsstore.Config) (*core.Store, *scsstore.Store) {
	t.Helper()
	scfg := core.StoreConfig{
		Memcached:    core.MemcachedConfig{Servers: []string{addr}, BreakerCooldown: 50 * time.Millisecond},
		Durable:      st.durable,
		SyncInterval: syncInterval,
		Logger:       quiet,
	}
	if st.clock != nil {
		scfg.Clock = st.clock.Now
	}
	cs, err := core.NewStore(scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cs.Close(ctx)
	})
	s, err := scsstore.New(cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, s
}

// rowCount returns the number of rows in the stack's table.
func (st *stack) rowCount(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := st.db.Table(st.table).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// flush waits for s's background syncs.
func flush(t *testing.T, s *core.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func mustCommit(t *testing.T, s *scsstore.Store, token string, b []byte, expiry time.Time) {
	t.Helper()
	if err := s.Commit(token, b, expiry); err != nil {
		t.Fatalf("Commit(%q): %v", token, err)
	}
}

func mustFind(t *testing.T, s *scsstore.Store, token string) ([]byte, bool) {
	t.Helper()
	b, found, err := s.Find(token)
	if err != nil {
		t.Fatalf("Find(%q): %v", token, err)
	}
	return b, found
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)[:43]
}
