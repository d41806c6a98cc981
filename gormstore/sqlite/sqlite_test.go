package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// TestStartWithMemcachedAndClose: a new session reaches SQLite at once; a
// later change lives in memcached until the close function writes it; a
// second start, database only, finds both (the seal key was kept).
func TestStartWithMemcachedAndClose(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	path := filepath.Join(t.TempDir(), "sessions.db")
	m, closeSessions, err := sqlite.Start(path, mc.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, _ := m.Load(ctx, "")
	s.Put("user", "ada")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	written := m.Store().Stats().DBWrites
	if written == 0 {
		t.Fatalf("a new session did not reach SQLite: %+v", m.Store().Stats())
	}
	s, err = m.Load(ctx, s.Token())
	if err != nil || s.IsNew() {
		t.Fatalf("Load = %v, %v", s, err)
	}
	s.Put("cart", "tea")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := m.Store().Stats(); got.DBWrites != written || got.SyncPending != 1 {
		t.Fatalf("after a change: %+v; want it in memcached only, pending for the background writer", got)
	}
	if err := closeSessions(); err != nil {
		t.Fatalf("close: %v", err)
	}
	mc.Kill() // the row must carry the session on its own

	m, closeSessions, err = sqlite.Start(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSessions()
	s, err = m.Load(ctx, s.Token())
	if err != nil || getString(s, "user") != "ada" || getString(s, "cart") != "tea" {
		t.Fatalf("after restart: %v %v", s.Keys(), err)
	}
}

func TestStartErrors(t *testing.T) {
	if _, _, err := sqlite.Start(filepath.Join(t.TempDir(), "missing-dir", "x.db")); err == nil {
		t.Error("Start in a missing directory: no error")
	}
	if _, _, err := sqlite.Start(filepath.Join(t.TempDir(), "x.db"), "bad address with spaces"); err == nil {
		t.Error("Start with a malformed memcached address: no error")
	}
}

// getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
