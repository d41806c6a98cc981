package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
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

func TestOnceArchivesAndDeletesDeadSessions(t *testing.T) {
	t.Setenv(setup.EnvSealKeys, core.FormatSealKey(core.NewSealKey())) // the app servers' and the reaper's
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
	cfg := config{once: true, interval: time.Minute, batch: 10, archive: archive}
	if err := run(context.Background(), opts, cfg, &out); err != nil {
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
	if err := run(context.Background(), opts, cfg, &out); err != nil {
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
	t.Setenv(setup.EnvSealKeys, core.FormatSealKey(core.NewSealKey()))
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
	keys, err := core.ParseSealKeys(os.Getenv(setup.EnvSealKeys))
	if err != nil {
		t.Fatal(err)
	}
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
	cfg := config{once: true, interval: time.Minute, batch: 10}
	if err := run(context.Background(), opts, cfg, &out); err != nil {
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

// getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
