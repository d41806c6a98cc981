package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// newSession stores a session for user in the database only, as an app
// server whose clock reads now would, and returns its token.
func newSession(t *testing.T, durable durable.Tier, now time.Time, user string) string {
	t.Helper()
	keys, err := core.ParseSealKeys(os.Getenv(setup.EnvSealKeys))
	if err != nil {
		t.Fatal(err)
	}
	store, err := core.NewStore(core.StoreConfig{
		Durable: durable, Seal: core.SealConfig{Keys: keys}, Clock: func() time.Time { return now },
		Reaper: core.ReaperConfig{Interval: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := m.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Put("user", user)
	s.SetSubject(user)
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s.Token()
}

// sealKeysForTest sets HYBRIDSESSION_SEAL_KEYS to a new key, the app
// servers' and the reaper's, and returns it.
func sealKeysForTest(t *testing.T) [][]byte {
	key := core.NewSealKey()
	t.Setenv(setup.EnvSealKeys, core.FormatSealKey(key))
	return [][]byte{key}
}

// reapConfig is a configuration for one pass over the default table.
func reapConfig(dsn, memcached string, keys [][]byte) config {
	return config{db: database{dsn: dsn, table: gormstore.DefaultTableName}, memcached: memcached, keys: keys,
		once: true, interval: time.Minute, batch: 10}
}

func TestOnceArchivesAndDeletesDeadSessions(t *testing.T) {
	keys := sealKeysForTest(t)
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	dir := t.TempDir()
	opts := setup.Options{Name: "reaper", Memcached: mc.Addr, DSN: filepath.Join(dir, "sessions.db")}

	env, err := setup.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	newSession(t, env.Durable, time.Now().Add(-48*time.Hour), "old") // past its 24h lifetime
	newSession(t, env.Durable, time.Now(), "new")
	if err := env.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	archive := filepath.Join(dir, "archive.jsonl")
	var out bytes.Buffer
	cfg := reapConfig(opts.DSN, mc.Addr, keys)
	cfg.archive = archive
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("run: %v (output %q)", err, out.String())
	}
	summary := out.String()
	for _, want := range []string{"examined=1 ", "extended=0 ", "archived=1 ", "deleted=1 ", "errors=0 ", "duration="} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary %q lacks %q", summary, want)
		}
	}

	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []archived
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a archived
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("archive line %q: %v", sc.Text(), err)
		}
		lines = append(lines, a)
	}
	if len(lines) != 1 || lines[0].Subject != "old" || lines[0].Values["user"] != "old" || len(lines[0].Key) != 43 {
		t.Fatalf("archive: %+v, want the one session of user old", lines)
	}

	// A second pass finds nothing left to do.
	out.Reset()
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "examined=0 ") {
		t.Errorf("second pass: %q, want nothing examined", out.String())
	}
}

// TestOnceExtendsLiveSession: a row that expired while memcached holds the
// session alive (its activity never reached the row: the app server that
// held the sync is gone) is rewritten from memcached's copy, not deleted.
func TestOnceExtendsLiveSession(t *testing.T) {
	keys := sealKeysForTest(t)
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	opts := setup.Options{Name: "reaper", Memcached: mc.Addr, DSN: filepath.Join(t.TempDir(), "sessions.db")}
	env, err := setup.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(context.Background())
	const idle = 30 * time.Minute // core.Config's default IdleTimeout
	// Written to the row alone, 31 minutes ago: the row has expired.
	token := newSession(t, env.Durable, time.Now().Add(-idle-time.Minute), "ada")

	// An app server read it 5 minutes ago: memcached has a live copy
	// whose activity the row does not know. Its clock stays there, so its
	// background writer never finds the sync due (as if it had crashed).
	readAt := time.Now().Add(-5 * time.Minute)
	app, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}, Durable: env.Durable,
		Seal: core.SealConfig{Keys: keys}, Clock: func() time.Time { return readAt },
		Reaper: core.ReaperConfig{Interval: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	m, err := core.New(core.Config{Store: app, IdleTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := m.Load(context.Background(), token); err != nil || getString(s, "user") != "ada" || s.Source() != "database" {
		t.Fatalf("Load = %v, %v; want ada's session from the database", s, err)
	}

	var out bytes.Buffer
	if err := run(context.Background(), reapConfig(opts.DSN, mc.Addr, keys), &out); err != nil {
		t.Fatalf("run: %v (output %q)", err, out.String())
	}
	for _, want := range []string{"examined=1 ", "extended=1 ", "archived=0 ", "deleted=0 ", "errors=0 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary %q lacks %q", out.String(), want)
		}
	}
	rec, found, err := env.Durable.Load(context.Background(), core.StorageKey(token))
	if err != nil || !found || !rec.ExpiresAt.After(time.Now()) {
		t.Errorf("row after the pass: %+v, found %v, %v; want it kept, expiring in the future", rec, found, err)
	}
}

// TestReapTable: -table names the table reap works on; the default
// table is left alone, and a table that does not exist is an error.
func TestReapTable(t *testing.T) {
	sealKeysForTest(t)
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	dsn := filepath.Join(t.TempDir(), "sessions.db")
	db, err := setup.OpenDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(db)
	for _, table := range []string{"hsctl_sessions", gormstore.DefaultTableName} {
		tier, err := gormstore.New(db, gormstore.Config{TableName: table})
		if err != nil {
			t.Fatal(err)
		}
		newSession(t, tier, time.Now().Add(-48*time.Hour), "old") // past its 24h lifetime
	}
	count := func(table string) (n int64) {
		t.Helper()
		if err := db.Table(table).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}

	status, out, errOut := hsctl(t, "reap", "-once", "-dsn", dsn, "-table", "hsctl_sessions", "-memcached", mc.Addr)
	if status != exitOK || !strings.Contains(out, "examined=1 ") || !strings.Contains(out, "deleted=1 ") {
		t.Errorf("reap -table hsctl_sessions: status %d, %q, %q; want 0, one row examined and deleted", status, out, errOut)
	}
	if a, b := count("hsctl_sessions"), count(gormstore.DefaultTableName); a != 0 || b != 1 {
		t.Errorf("rows left: hsctl_sessions %d, %s %d; want 0 and 1", a, gormstore.DefaultTableName, b)
	}

	status, out, errOut = hsctl(t, "reap", "-once", "-dsn", dsn, "-table", "missing", "-memcached", mc.Addr)
	if want := "reap: the sqlite database has no table missing"; status != exitFailure || out != "" || !strings.Contains(errOut, want) {
		t.Errorf("reap -table missing: status %d, %q, %q; want 1 and %q", status, out, errOut, want)
	}
	if db.Migrator().HasTable("missing") {
		t.Error("reap -table missing created it")
	}
}

// TestReapRefusesWithoutSealKeys: without the app servers' seal keys reap
// does nothing (not even open the database) and exits with status 2.
func TestReapRefusesWithoutSealKeys(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "sessions.db")
	for _, tc := range []struct{ env, want string }{
		{"unset", setup.EnvSealKeys + " is not set"},
		{"", setup.EnvSealKeys + ": set but holds no key"},
		{" , ", setup.EnvSealKeys + ": set but holds no key"},
		{"not-a-key", setup.EnvSealKeys + ": core: seal key 1 is not base64 of 32 bytes"},
	} {
		if t.Setenv(setup.EnvSealKeys, tc.env); tc.env == "unset" {
			unsetenv(t, setup.EnvSealKeys)
		}
		status, out, errOut := hsctl(t, "reap", "-once", "-dsn", dsn, "-memcached", "")
		if status != exitUsage || out != "" || !strings.Contains(errOut, "hsctl: reap: "+tc.want) {
			t.Errorf("%s=%q: status %d, %q, %q; want 2 and %q", setup.EnvSealKeys, tc.env, status, out, errOut, tc.want)
		}
	}
	if _, err := os.Stat(dsn); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the database: %v, want none made", err)
	}
}

// getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
