package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// The reaper keeps the rows of live sessions ahead of their expiry, so a
// request that only reads costs the database nothing (docs/consistency.md,
// I1; the database-load issue).

// readOnly loads token's session on m and saves it unchanged: a read-only
// request (its throttled touch included).
func readOnly(t *testing.T, m *core.Manager, token string) {
	t.Helper()
	s := load(t, m, token)
	if s.IsNew() {
		t.Fatalf("the session is gone at %v", time.Now())
	}
	if err := m.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// A session only read for three hours: no request writes the database,
// and its row never expires while the reaper passes every minute.
func TestLookaheadKeepsReadOnlyRowAlive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, func(c *core.StoreConfig) { c.ReapMode = core.ReapExternal }, nil)
		store := m.Store()
		r := reaper(t, store, core.ReaperConfig{})
		token := put(t, m, "", "user", "alice")
		flush(t, store)
		writes := store.Stats().DBWrites
		for minute := 1; minute <= 180; minute++ {
			st.clock.Advance(time.Minute)
			readOnly(t, m, token)
			runOnce(t, r)
			if _, _, found := st.row(t, token); !found {
				t.Fatalf("minute %d: the row of a session read every minute has expired", minute)
			}
		}
		flush(t, store)
		st2 := store.Stats()
		if st2.DBWrites != writes {
			t.Errorf("read-only requests wrote the database %d times, want 0", st2.DBWrites-writes)
		}
		// The row is extended about once per IdleTimeout (30m), not per pass.
		if st2.ReapExtended < 4 || st2.ReapExtended > 12 {
			t.Errorf("the reaper extended the row %d times in 3 hours, want about 6", st2.ReapExtended)
		}
	})
}

// A pass is missed (the reaper's app server was down), then memcached
// restarts: the user, active all along, stays logged in.
func TestLookaheadSurvivesMissedPassAndRestart(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, func(c *core.StoreConfig) { c.ReapMode = core.ReapExternal }, nil)
	r := reaper(t, m.Store(), core.ReaperConfig{})
	token := put(t, m, "", "cart", "book")
	for minute := 1; minute <= 40; minute++ {
		st.clock.Advance(time.Minute)
		readOnly(t, m, token)
		if minute%10 != 0 { // every tenth pass is missed
			runOnce(t, r)
		}
	}
	st.mc.Restart()
	if s := load(t, m, token); s.IsNew() || s.GetString("cart") != "book" {
		t.Errorf("after a missed pass and a memcached restart: new=%v cart=%q", s.IsNew(), s.GetString("cart"))
	}
}

// A session that went idle is not extended: its row expires and is reaped.
func TestLookaheadDoesNotExtendDeadSession(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, func(c *core.StoreConfig) { c.ReapMode = core.ReapExternal }, nil)
	r := reaper(t, m.Store(), core.ReaperConfig{})
	token := put(t, m, "", "user", "alice")
	for minute := 1; minute <= 40; minute++ { // idle: 30m of idle timeout pass
		st.clock.Advance(time.Minute)
		runOnce(t, r)
	}
	if got := m.Store().Stats().ReapExtended; got != 0 {
		t.Errorf("the reaper extended an idle session's row %d times", got)
	}
	if _, _, found := st.rowAt(t, token, st.clock.Now().Add(-time.Hour)); found {
		t.Error("the idle session's row was not reaped")
	}
}

// Two Stores on one database, each with its default in-process reaper:
// each row in the look-ahead is extended once, not twice.
func TestDefaultReapersExtendEachRowOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		fast := func(c *core.StoreConfig) {
			c.ReapMode = core.ReapInProcess
			c.Reaper = core.ReaperConfig{Interval: 20 * time.Millisecond}
		}
		a := st.manager(t, fast, nil)
		bm := st.manager(t, fast, nil)
		const n = 60
		tokens := make([]string, n)
		for i := range tokens {
			tokens[i] = put(t, a, "", "i", i)
		}
		// Everyone reads for 29 minutes: their rows (idle 30m + sync 2m
		// from the login) enter the 60 ms look-ahead only near their end.
		st.clock.Advance(29 * time.Minute)
		var wg sync.WaitGroup
		for i, tok := range tokens {
			wg.Add(1)
			go func(m *core.Manager) { defer wg.Done(); readOnly(t, m, tok) }([]*core.Manager{a, bm}[i%2])
		}
		wg.Wait()
		st.clock.Advance(3*time.Minute - 30*time.Millisecond) // every row is in the look-ahead, none expired
		extended := func() uint64 {
			return a.Store().Stats().ReapExtended + bm.Store().Stats().ReapExtended
		}
		deadline := time.Now().Add(20 * time.Second)
		for extended() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the default reapers extended %d of %d rows", extended(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // ten more passes each
		if got := extended(); got != n {
			t.Errorf("the two reapers extended %d rows, want each of %d once", got, n)
		}
		for _, tok := range tokens {
			if _, _, found := st.row(t, tok); !found {
				t.Fatal("a live session's row was not extended")
			}
		}
	})
}

// ReapNone: no reaper anywhere, so a read-only request syncs its row once
// per SyncInterval, and a memcached loss logs nobody out.
func TestNoReaperTouchesSync(t *testing.T) {
	st := newStack(t, backends(t)[0])
	m := st.manager(t, func(c *core.StoreConfig) { c.ReapMode = core.ReapNone }, nil)
	store := m.Store()
	token := put(t, m, "", "user", "alice")
	flush(t, store)
	writes := store.Stats().DBWrites
	for minute := 1; minute <= 60; minute++ {
		st.clock.Advance(time.Minute)
		readOnly(t, m, token)
		flush(t, store) // the background writer keeps up with the virtual clock
	}
	if got := store.Stats().DBWrites - writes; got < 25 || got > 35 {
		t.Errorf("an hour of read-only requests wrote the row %d times, want about 30 (one per SyncInterval)", got)
	}
	st.mc.Restart()
	if s := load(t, m, token); s.IsNew() {
		t.Error("without a reaper, a read-only user was logged out by a memcached restart")
	}
}
