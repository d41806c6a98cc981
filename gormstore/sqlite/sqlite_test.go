package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// TestStartSealKeysFailClosed: every doubtful key source stops Start with
// an error instead of a Store that seals nothing or seals under a new key.
func TestStartSealKeysFailClosed(t *testing.T) {
	for _, blank := range []string{"", "   ", ",,", "\n"} {
		t.Run("env "+strconv.Quote(blank), func(t *testing.T) {
			t.Setenv(sqlite.SealKeysEnv, blank)
			if _, _, err := sqlite.Start(filepath.Join(t.TempDir(), "x.db")); err == nil {
				t.Fatal("Start with a blank key variable: no error")
			}
		})
	}
	cases := map[string]func(t *testing.T, keyFile string){
		"empty file": func(t *testing.T, keyFile string) { write(t, keyFile, "", 0o600) },
		"blank file": func(t *testing.T, keyFile string) { write(t, keyFile, " \n", 0o600) },
		"short key":  func(t *testing.T, keyFile string) { write(t, keyFile, "c2hvcnQ\n", 0o600) },
		"world-readable": func(t *testing.T, keyFile string) {
			write(t, keyFile, core.FormatSealKey(core.NewSealKey())+"\n", 0o644)
		},
		"symbolic link": func(t *testing.T, keyFile string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			write(t, target, core.FormatSealKey(core.NewSealKey())+"\n", 0o600)
			if err := os.Symlink(target, keyFile); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, plant := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			plant(t, path+".sealkey")
			if _, _, err := sqlite.Start(path); err == nil {
				t.Fatal("Start: no error")
			}
		})
	}
}

// TestStartCreatesPrivateKeyFile: the first Start keeps a 0600 key file; the
// next one opens what the first sealed.
func TestStartCreatesPrivateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	m, closeSessions, err := sqlite.Start(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + ".sealkey")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".sealkey-") {
			t.Errorf("temporary key file left behind: %s", e.Name())
		}
	}
	ctx := context.Background()
	s, _ := m.Load(ctx, "")
	s.Put("user", "ada")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := closeSessions(); err != nil {
		t.Fatal(err)
	}
	m, closeSessions, err = sqlite.Start(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSessions()
	if s, err := m.Load(ctx, s.Token()); err != nil || getString(s, "user") != "ada" {
		t.Fatalf("second Start: %v, %v", s.Keys(), err)
	}
}

func write(t *testing.T, file, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
