package setup

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// TestOutage: a cut tier fails every call with ErrOutage and counts none;
// a tier that is up passes calls through and counts each.
func TestOutage(t *testing.T) {
	o := &Outage{Tier: durabletest.NewMemory()}
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	w := durable.Write{Record: durable.Record{Key: "k", Payload: []byte("p"), Version: 1, ExpiresAt: now.Add(time.Hour), Deadline: now.Add(time.Hour)}}
	if applied, err := o.Write(ctx, []durable.Write{w}); err != nil || !applied[0] {
		t.Fatalf("Write = %v, %v", applied, err)
	}
	if _, found, err := o.Load(ctx, "k"); err != nil || !found {
		t.Fatalf("Load = %v, %v", found, err)
	}
	if recs, err := o.List(ctx, "", "", 10); err != nil || len(recs) != 1 {
		t.Fatalf("List = %v, %v", recs, err)
	}
	if n := o.Calls(); n != 3 {
		t.Errorf("Calls = %d after three calls, want 3", n)
	}

	o.Cut(time.Minute)
	if u := o.Until(); time.Until(u) < 50*time.Second {
		t.Errorf("Until = %v, want a minute from now", u)
	}
	judge := func(context.Context, []durable.Record) ([]durable.Verdict, error) { return nil, nil }
	_, _, lerr := o.Load(ctx, "k")
	_, werr := o.Write(ctx, []durable.Write{w})
	_, ierr := o.List(ctx, "", "", 10)
	_, rerr := o.Reap(ctx, now, 10, judge)
	for _, err := range []error{lerr, werr, ierr, rerr} {
		if !errors.Is(err, ErrOutage) {
			t.Errorf("call while cut: %v, want ErrOutage", err)
		}
	}
	if n := o.Calls(); n != 3 {
		t.Errorf("Calls = %d after the cut, want still 3", n)
	}
	o.Cut(0)
	if u := o.Until(); !u.IsZero() {
		t.Errorf("Until after Cut(0) = %v, want zero", u)
	}
	if _, _, err := o.Load(ctx, "k"); err != nil || o.Calls() != 4 {
		t.Errorf("Load after the cut ended: %v, Calls %d; want nil, 4", err, o.Calls())
	}
}

// TestStartReaper: the process's reaper makes a pass at once, seen through
// Env.Observed; a closed Env makes no more Stores.
func TestStartReaper(t *testing.T) {
	env, err := Open(Options{Name: "test", Memcached: "", DSN: filepath.Join(t.TempDir(), "sessions.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(context.Background())
	if _, err := env.NewManager(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartReaper(core.ReaperConfig{Interval: -1}); err == nil {
		t.Error("StartReaper with a negative interval: no error")
	}
	if err := env.StartReaper(core.ReaperConfig{Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if n := len(env.Stores()); n != 2 {
		t.Errorf("Stores = %d, want the app server's and the reaper's", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for env.Observed.LastReapPass().End.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no reaper pass within 10s of StartReaper")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition the reaper sets
	}
	if err := env.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := env.NewStore(); err == nil {
		t.Error("NewStore after Close: no error")
	}
}
