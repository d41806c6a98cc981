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
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// newSession stores a session for user in the database only, as an app
// server whose clock reads now would.
func newSession(t *testing.T, durable core.Durable, now time.Time, user string) {
	t.Helper()
	keys, err := core.ParseSealKeys(os.Getenv(setup.EnvSealKeys))
	if err != nil {
		t.Fatal(err)
	}
	store, err := core.NewStore(core.StoreConfig{Durable: durable, Seal: core.SealConfig{Keys: keys}, Clock: func() time.Time { return now }, ReapMode: core.ReapExternal})
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

func TestFlagValidation(t *testing.T) {
	err := run(context.Background(), setup.Options{}, config{interval: 0, batch: 1}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("run accepted -interval 0")
	}
}
