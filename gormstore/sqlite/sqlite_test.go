package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hybridsession/hybridsession/gormstore/sqlite"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

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
	if got := m.Store().Stats(); got.DBWrites == 0 {
		t.Fatalf("a new session did not reach SQLite: %+v", got)
	}
	mc.Kill() // the row must carry the session on its own
	if err := closeSessions(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// A second start on the same file, database only, finds the session.
	m, closeSessions, err = sqlite.Start(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSessions()
	s, err = m.Load(ctx, s.Token())
	if err != nil || s.GetString("user") != "ada" {
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
