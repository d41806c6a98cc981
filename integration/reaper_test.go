package integration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
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
	m, err := core.New(core.Config{Store: store})
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

// reapCounts is what reaper passes did, from the Store's Stats.
type reapCounts struct{ Extended, Deleted, Errors uint64 }

func reapStats(s *core.Store) reapCounts {
	st := s.Stats()
	return reapCounts{st.ReapExtended, st.ReapDeleted, st.ReapErrors}
}

func (c reapCounts) sub(o reapCounts) reapCounts {
	return reapCounts{c.Extended - o.Extended, c.Deleted - o.Deleted, c.Errors - o.Errors}
}

// total is how many sessions the archive hook was given.
func (a *archive) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.got {
		n += c
	}
	return n
}

// runOnce runs one pass of r, a reaper of s, and returns what it did.
func runOnce(t *testing.T, s *core.Store, r *core.Reaper) reapCounts {
	t.Helper()
	before := reapStats(s)
	if err := r.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	return reapStats(s).sub(before)
}

// reapOnce runs one pass of a new reaper of s with cfg.
func reapOnce(t *testing.T, s *core.Store, cfg core.ReaperConfig) reapCounts {
	t.Helper()
	return runOnce(t, s, reaper(t, s, cfg))
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
		if st.liveRow(t, token) {
			t.Fatal("setup: row should look expired")
		}
		arch := newArchive()
		rep := reapOnce(t, m.Store(), core.ReaperConfig{Archive: arch.hook})
		if rep.Extended != 1 || rep.Deleted != 0 || arch.total() != 0 {
			t.Fatalf("reaper pass %+v, want 1 extended and nothing deleted", rep)
		}
		rec, _, _ := st.row(t, token)
		vals := st.rowValues(t, token)
		if !st.liveRow(t, token) || fmt.Sprint(vals["n"]) != "8" || !rec.ExpiresAt.After(st.clock.Now()) {
			t.Fatalf("row after reaping: n=%v expires=%v, want memcached's n=8, live", vals["n"], rec.ExpiresAt)
		}
		st.mc.Restart() // the row alone must now carry the latest data
		if got := getInt(load(t, m, token), "n"); got != 8 {
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
		rep := reapOnce(t, m.Store(), core.ReaperConfig{Archive: arch.hook})
		if arch.total() != 2 || rep.Deleted != 2 || rep.Extended != 0 {
			t.Fatalf("reaper pass %+v, want 2 archived and deleted", rep)
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
		if !st.liveRow(t, newAlive) {
			t.Fatal("a live session's row was reaped")
		}
		if rep := reapOnce(t, m.Store(), core.ReaperConfig{}); rep != (reapCounts{}) {
			t.Fatalf("second pass %+v, want nothing to do", rep)
		}
	})
}

// A row write that races a reaper pass judging the row dead is never
// acknowledged and then deleted: either it lands first and the pass leaves
// the row (the verdict applies only to the version it claimed), or the pass
// deletes the row first and the write, built on it, is refused.
func TestReaperRacingWriteIsKeptOrRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil)
		token := put(t, m, "", "n", 1)
		st.clock.Advance(40 * time.Minute)
		st.mc.Restart() // memcached forgets the session

		key := core.StorageKey(token)
		rec, _, _ := st.row(t, token)
		var wg sync.WaitGroup
		var applied atomic.Bool
		hook := func(ctx context.Context, s core.ArchivedSession) error {
			// Another app server's write of the row arrives now.
			newer := rec
			newer.Version = rec.Version + 1
			newer.ExpiresAt = st.clock.Now().Add(time.Hour).Truncate(time.Millisecond)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ok, err := st.durable.Write(ctx, []durable.Write{{Record: newer, Base: rec.Version}})
				if err != nil {
					t.Error(err)
					return
				}
				applied.Store(ok[0])
			}()
			// Give it the chance to land before the delete. It cannot be
			// awaited: on databases with row locks it blocks until this
			// batch commits, which is the other order the test accepts.
			time.Sleep(50 * time.Millisecond)
			return nil
		}
		if err := reaper(t, m.Store(), core.ReaperConfig{Archive: hook}).RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		got, found, err := st.durable.Load(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case applied.Load() && (!found || got.Version != rec.Version+1):
			t.Fatalf("the write raced in was acknowledged, then lost (found=%v version=%d)", found, got.Version)
		case !applied.Load() && found:
			t.Fatalf("the write was refused, yet the row stands (version %d): the pass neither deleted nor left it", got.Version)
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
		rep := reapOnce(t, m.Store(), core.ReaperConfig{Archive: arch.hook})
		if rep != (reapCounts{}) || arch.total() != 0 {
			t.Fatalf("reaper pass %+v with memcached down, want all 5 left for later", rep)
		}
		for _, tok := range tokens {
			if _, _, found := st.row(t, tok); !found {
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
				if err := r.RunOnce(context.Background()); err != nil {
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
	rep := reapOnce(t, m.Store(), core.ReaperConfig{Archive: failingArchive})
	if rep.Errors != 1 || rep.Deleted != 0 {
		t.Fatalf("reaper pass %+v, want the archive error to leave the row", rep)
	}
	if _, _, found := st.row(t, token); !found {
		t.Fatal("the row is gone after an archive error")
	}
	arch := newArchive()
	rep = reapOnce(t, m.Store(), core.ReaperConfig{Archive: arch.hook})
	if rep.Deleted != 1 || arch.total() != 1 || arch.got[core.StorageKey(token)] != 1 {
		t.Fatalf("row not archived on the next pass: %+v", rep)
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
		if getString(load(t, m, bob), "user") != "bob" {
			t.Fatal("another subject's session was destroyed")
		}
		if n, _ := m.DestroySubject(ctx, ""); n != 0 {
			t.Fatal("empty subject destroyed sessions")
		}
	})
}

// I1 and rule 2: a session that is only read, once a minute for an hour.
// Each touch (one per TouchInterval) reaches the row through the
// background writer within SyncInterval, in one row write per
// SyncInterval, so a reaper passing every minute never finds the row
// expired, and a memcached restart logs nobody out.
func TestReadOnlySessionRowKeepsUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, nil, nil) // SyncInterval 2m, TouchInterval 1m
		store := m.Store()
		r := reaper(t, store, core.ReaperConfig{})
		token := put(t, m, "", "user", "alice")
		writes := store.Stats().DBWrites
		var reaped reapCounts
		for minute := 1; minute <= 60; minute++ {
			st.clock.Advance(time.Minute)
			readOnly(t, m, token)
			flush(t, store)
			got := runOnce(t, store, r)
			reaped.Extended += got.Extended
			reaped.Deleted += got.Deleted
			if !st.liveRow(t, token) {
				t.Fatalf("minute %d: the row of a session read every minute has expired", minute)
			}
		}
		if reaped.Extended != 0 || reaped.Deleted != 0 {
			t.Errorf("the reaper extended %d and deleted %d rows: the row fell behind", reaped.Extended, reaped.Deleted)
		}
		if got := store.Stats().DBWrites - writes; got < 25 || got > 35 {
			t.Errorf("an hour of read-only requests wrote the row %d times, want about 30 (one per SyncInterval)", got)
		}
		st.mc.Restart()
		if s := load(t, m, token); s.IsNew() || getString(s, "user") != "alice" {
			t.Error("a read-only user was logged out by a memcached restart")
		}
	})
}

// I3: the reaper does not extend a session that went idle: its row expires
// and is deleted.
func TestReaperDoesNotExtendIdleSession(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, nil, nil)
	r := reaper(t, m.Store(), core.ReaperConfig{})
	token := put(t, m, "", "user", "alice")
	var total reapCounts
	for minute := 1; minute <= 40; minute++ { // idle: 30m of idle timeout pass
		st.clock.Advance(time.Minute)
		got := runOnce(t, m.Store(), r)
		total.Extended += got.Extended
		total.Deleted += got.Deleted
	}
	if total.Extended != 0 || total.Deleted != 1 {
		t.Errorf("over 40 idle minutes the reaper extended %d and deleted %d rows, want 0 and 1", total.Extended, total.Deleted)
	}
	if _, _, found := st.row(t, token); found {
		t.Error("the idle session's row was not reaped")
	}
}

// Two Stores on one database, each with its in-process reaper (a positive
// ReaperConfig.Interval): the rows of sessions that live on in memcached
// only (their app server's syncs were lost) are each extended once, by one
// of the two, with memcached's copy.
func TestInProcessReapersExtendEachRowOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		fast := func(c *core.StoreConfig) { c.Reaper = core.ReaperConfig{Interval: 20 * time.Millisecond} }
		a := st.manager(t, fast, nil)
		bm := st.manager(t, fast, nil)
		behind := memcachedOnly(t, st)
		const n = 60
		tokens := make([]string, n)
		for i := range tokens {
			tokens[i] = put(t, a, "", "i", i)
		}
		// Everyone works on the app server whose syncs are lost for 29
		// minutes; then their rows (idle 30m + sync 2m from the login)
		// expire while memcached holds them alive.
		st.clock.Advance(29 * time.Minute)
		for i, tok := range tokens {
			put(t, behind, tok, "i", i+100)
		}
		st.clock.Advance(4 * time.Minute)
		extended := func() uint64 { return a.Store().Stats().ReapExtended + bm.Store().Stats().ReapExtended }
		waitFor(t, "the in-process reapers to extend every row", func() bool { return extended() >= n })
		for _, s := range []*core.Store{a.Store(), bm.Store()} {
			if got := reapOnce(t, s, core.ReaperConfig{}); got != (reapCounts{}) {
				t.Errorf("a pass after the extension did %+v, want nothing", got)
			}
		}
		if got := extended(); got != n {
			t.Errorf("the two reapers extended %d rows, want each of %d once", got, n)
		}
		for i, tok := range tokens {
			if !st.liveRow(t, tok) {
				t.Fatal("a live session's row was not extended")
			}
			if got := st.rowValues(t, tok)["i"]; fmt.Sprint(got) != fmt.Sprint(i+100) {
				t.Fatalf("row %d holds i=%v, want memcached's %d", i, got, i+100)
			}
		}
	})
}
