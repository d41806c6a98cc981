package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// memcachedOnly is an app server whose writes never reach the database —
// as if every sync it owed were lost in a crash — so rows fall behind
// memcached exactly as the reaper must expect.
func memcachedOnly(t *testing.T, st *stack) *core.Manager {
	t.Helper()
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{st.mc.Addr}},
		Logger:    quiet,
		Clock:     st.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type archive struct {
	mu   sync.Mutex
	got  map[string]int
	last map[string]core.ArchivedSession
}

func newArchive() *archive {
	return &archive{got: map[string]int{}, last: map[string]core.ArchivedSession{}}
}

func (a *archive) hook(_ context.Context, s core.ArchivedSession) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got[s.Key]++
	a.last[s.Key] = s
	return nil
}

func reaper(t *testing.T, s *core.Store, cfg core.ReaperConfig) *core.Reaper {
	t.Helper()
	r, err := s.NewReaper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runOnce(t *testing.T, r *core.Reaper) core.ReapReport {
	t.Helper()
	rep, err := r.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestReaperExtendsLiveSessionsWithLatestData(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		behind := memcachedOnly(t, st)
		token := put(t, m, "", "n", 0) // row: expires at +32m
		for i := 1; i <= 8; i++ {      // 40 minutes of activity the database never sees
			st.clock.Advance(5 * time.Minute)
			put(t, behind, token, "n", i)
		}
		if _, _, found := st.row(t, token); found {
			t.Fatal("setup: row should look expired")
		}
		arch := newArchive()
		rep := runOnce(t, reaper(t, m.Store(), core.ReaperConfig{Archive: arch.hook}))
		if rep.Extended != 1 || rep.Deleted != 0 || rep.Archived != 0 {
			t.Fatalf("report %v, want 1 extended and nothing deleted", rep)
		}
		rec, e, found := st.row(t, token)
		vals, _ := core.Msgpack.Decode(e.Payload)
		if !found || fmt.Sprint(vals["n"]) != "8" || !rec.ExpiresAt.After(st.clock.Now()) {
			t.Fatalf("row after reaping: found=%v n=%v expires=%v, want memcached's n=8", found, vals["n"], rec.ExpiresAt)
		}
		st.mc.Restart() // the row alone must now carry the latest data
		if got := load(t, m, token).GetInt("n"); got != 8 {
			t.Fatalf("after a memcached loss the session reads n=%d, want the latest 8", got)
		}
	})
}

func TestReaperArchivesAndDeletesDeadSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		ctx := context.Background()
		idle := put(t, m, "", "cart", "book") // dies of idleness
		gone := put(t, m, "", "cart", "pen")  // vanishes from memcached
		s := load(t, m, gone)
		s.SetSubject("user-7")
		if err := m.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		st.clock.Advance(40 * time.Minute)
		newAlive := put(t, m, "", "k", "v") // fresh: not expired, untouched by the pass

		arch := newArchive()
		rep := runOnce(t, reaper(t, m.Store(), core.ReaperConfig{Archive: arch.hook}))
		if rep.Examined != 2 || rep.Archived != 2 || rep.Deleted != 2 || rep.Extended != 0 {
			t.Fatalf("report %v, want 2 examined, archived and deleted", rep)
		}
		for token, cart := range map[string]string{idle: "book", gone: "pen"} {
			a, ok := arch.last[core.StorageKey(token)]
			if !ok || a.Values["cart"] != cart || a.Created.IsZero() || a.LastActivity.IsZero() {
				t.Fatalf("archived %+v, want cart %q with times", a, cart)
			}
			if _, _, found := st.row(t, token); found {
				t.Fatal("dead session's row not deleted")
			}
		}
		if a := arch.last[core.StorageKey(gone)]; a.Subject != "user-7" {
			t.Fatalf("archived subject %q", a.Subject)
		}
		if _, _, found := st.row(t, newAlive); !found {
			t.Fatal("a live session's row was reaped")
		}
		if rep := runOnce(t, reaper(t, m.Store(), core.ReaperConfig{})); rep.Examined != 0 {
			t.Fatalf("second pass examined %d rows", rep.Examined)
		}
	})
}

// A sync that lands while the reaper holds a dead-looking row keeps it.
func TestReaperKeepsSessionSyncedDuringThePass(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		token := put(t, m, "", "n", 1)
		st.clock.Advance(40 * time.Minute)
		st.mc.Restart() // memcached no longer knows the session

		key := core.StorageKey(token)
		rec, _, _ := st.rowAt(t, token, st.clock.Now().Add(-time.Hour))
		var wg sync.WaitGroup
		hook := func(ctx context.Context, s core.ArchivedSession) error {
			// Another app server's delayed sync of a newer version arrives now.
			newer := rec
			newer.Version = rec.Version + 1
			newer.ExpiresAt = st.clock.Now().Add(time.Hour).Truncate(time.Millisecond)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := st.durable.Save(ctx, newer); err != nil {
					t.Error(err)
				}
			}()
			// Give it the chance to land before the delete. It cannot be
			// awaited: on databases with row locks it blocks until this
			// batch commits, which is the other order the test accepts.
			time.Sleep(50 * time.Millisecond)
			return nil
		}
		if _, err := reaper(t, m.Store(), core.ReaperConfig{Archive: hook}).RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		got, found, err := st.durable.Load(context.Background(), key, st.clock.Now())
		if err != nil || !found || got.Version != rec.Version+1 {
			t.Fatalf("the session synced during the pass was lost (found=%v version=%d)", found, got.Version)
		}
	})
}

func TestReaperDeletesNothingWhileMemcachedIsDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		var tokens []string
		for i := 0; i < 5; i++ {
			tokens = append(tokens, put(t, m, "", "i", i))
		}
		st.clock.Advance(40 * time.Minute)
		st.mc.Stop()
		arch := newArchive()
		rep, err := reaper(t, m.Store(), core.ReaperConfig{Archive: arch.hook}).RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Deleted != 0 || rep.Archived != 0 || rep.Skipped != 5 {
			t.Fatalf("report %v with memcached down, want 5 skipped and nothing deleted", rep)
		}
		for _, tok := range tokens {
			if _, _, found := st.rowAt(t, tok, st.clock.Now().Add(-time.Hour)); !found {
				t.Fatal("a row was deleted while memcached was down")
			}
		}
	})
}

// Three reapers on one table hand each row to the archive hook exactly once.
func TestParallelReapersProcessEachRowOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		const n = 300
		for i := 0; i < n; i++ {
			put(t, m, "", "i", i)
		}
		st.clock.Advance(40 * time.Minute)
		st.mc.Restart()
		arch := newArchive()
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for i := 0; i < 3; i++ {
			r := reaper(t, st.store(t, nil), core.ReaperConfig{Batch: 20, Archive: arch.hook})
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := r.RunOnce(context.Background()); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(arch.got) != n {
			t.Fatalf("%d rows archived, want %d", len(arch.got), n)
		}
		for k, c := range arch.got {
			if c != 1 {
				t.Fatalf("row %s archived %d times", k, c)
			}
		}
		var left int64
		st.db.Table(st.table).Count(&left)
		if left != 0 {
			t.Fatalf("%d rows left", left)
		}
	})
}

// An archive hook error keeps the row for the next pass.
func TestReaperArchiveErrorKeepsRow(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, nil, nil)
	token := put(t, m, "", "k", "v")
	st.clock.Advance(40 * time.Minute)
	failing := func(context.Context, core.ArchivedSession) error { return errors.New("archive down") }
	rep := runOnce(t, reaper(t, m.Store(), core.ReaperConfig{Archive: failing}))
	if rep.Errors != 1 || rep.Deleted != 0 {
		t.Fatalf("report %v", rep)
	}
	st.clock.Advance(2 * time.Minute)
	arch := newArchive()
	rep = runOnce(t, reaper(t, m.Store(), core.ReaperConfig{Archive: arch.hook}))
	if rep.Archived != 1 || arch.got[core.StorageKey(token)] != 1 {
		t.Fatalf("row not archived on the next pass: %v", rep)
	}
}

// "Log out everywhere" destroys every session of a subject in both tiers.
func TestDestroySubject(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		ctx := context.Background()
		login := func(subject string) string {
			s := load(t, m, "")
			s.Put("user", subject)
			s.SetSubject(subject)
			if err := m.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			return s.Token()
		}
		ada := []string{login("ada"), login("ada"), login("ada")}
		bob := login("bob")
		n, err := m.DestroySubject(ctx, "ada")
		if err != nil || n != 3 {
			t.Fatalf("DestroySubject = %d, %v; want 3", n, err)
		}
		for _, tok := range ada {
			if !load(t, m, tok).IsNew() {
				t.Fatal("a session of the subject survived")
			}
		}
		if load(t, m, bob).GetString("user") != "bob" {
			t.Fatal("another subject's session was destroyed")
		}
		if n, _ := m.DestroySubject(ctx, ""); n != 0 {
			t.Fatal("empty subject destroyed sessions")
		}
	})
}
