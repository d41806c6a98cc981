package scsstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/scsstore"
)

// TestContract mirrors the contracts scs documents for its stores
// (scs.Store, scs.CtxStore, scs.IterableStore), on every database.
func TestContract(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		st := newStack(t, be, true)
		cs, s := st.server(t, 0, scsstore.Config{Iterable: true})
		ctx := context.Background()

		t.Run("FindMissing", func(t *testing.T) {
			if b, found := mustFind(t, s, newToken()); found || b != nil {
				t.Fatalf("Find of a missing token = %q, %v; want nil, false", b, found)
			}
		})

		t.Run("FindMalformedToken", func(t *testing.T) {
			for _, tok := range []string{"", " ", "not a token", "\x00\xff\n", strings.Repeat("x", 256), strings.Repeat("y", 10000)} {
				b, found, err := s.FindCtx(ctx, tok)
				if err != nil || found || b != nil {
					t.Errorf("Find(%.20q) = %q, %v, %v; want nil, false, nil", tok, b, found, err)
				}
			}
		})

		t.Run("FindMalformedEntry", func(t *testing.T) {
			// A session of another codec (a core.Manager's) and one with
			// scsstore's codec id but a payload scsstore did not write.
			m, err := core.New(core.Config{Store: cs})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				core.FromContext(r.Context()).Put("a", 1)
			})).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://example.com/", nil))
			if b, found := mustFind(t, s, rec.Result().Cookies()[0].Value); found {
				t.Errorf("Find of a core.Manager session = %q, true; want not found", b)
			}
			kv := core.NewKV(cs, scsstore.CodecID)
			for _, p := range [][]byte{[]byte("garbage"), nil} {
				tok := newToken()
				if err := kv.Write(ctx, tok, nil, p, time.Hour, st.now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				if b, found := mustFind(t, s, tok); found {
					t.Errorf("Find of a foreign entry (payload %q) = %q, true; want not found", p, b)
				}
			}
		})

		t.Run("CommitFind", func(t *testing.T) {
			tok := newToken()
			mustCommit(t, s, tok, []byte("hello"), st.now().Add(time.Hour))
			if b, found := mustFind(t, s, tok); !found || string(b) != "hello" {
				t.Fatalf("Find = %q, %v; want hello, true", b, found)
			}
		})

		t.Run("CommitOverwritesDataAndExpiry", func(t *testing.T) {
			tok := newToken()
			mustCommit(t, s, tok, []byte("one"), st.now().Add(time.Hour))
			mustCommit(t, s, tok, []byte("two"), st.now().Add(time.Minute))
			if b, found := mustFind(t, s, tok); !found || string(b) != "two" {
				t.Fatalf("Find = %q, %v; want two, true", b, found)
			}
			// The shorter expiry replaced the longer one.
			st.clock.Advance(time.Minute)
			if b, found := mustFind(t, s, tok); found {
				t.Fatalf("Find after the overwritten expiry = %q, true; want not found", b)
			}
		})

		t.Run("FindExpired", func(t *testing.T) {
			tok := newToken()
			exp := st.now().Add(10 * time.Second)
			mustCommit(t, s, tok, []byte("x"), exp)
			st.clock.Advance(10*time.Second - time.Millisecond)
			if _, found := mustFind(t, s, tok); !found {
				t.Fatal("not found a millisecond before its expiry")
			}
			// memcached still holds the entry (SyncInterval), but scs's expiry is exact.
			st.clock.Advance(time.Millisecond)
			if b, found := mustFind(t, s, tok); found {
				t.Fatalf("Find at expiry = %q, true; want not found", b)
			}
			st.clock.Advance(time.Hour)
			if _, found := mustFind(t, s, tok); found {
				t.Fatal("found an hour after its expiry")
			}
		})

		t.Run("CommitPastExpiryDeletes", func(t *testing.T) {
			tok := newToken()
			mustCommit(t, s, tok, []byte("x"), st.now().Add(time.Hour))
			mustCommit(t, s, tok, []byte("y"), st.now().Add(-time.Second))
			if _, found := mustFind(t, s, tok); found {
				t.Fatal("found after a Commit with a past expiry")
			}
		})

		t.Run("CommitInvalidToken", func(t *testing.T) {
			for _, tok := range []string{"", strings.Repeat("x", 256)} {
				if err := s.Commit(tok, []byte("x"), st.now().Add(time.Hour)); !errors.Is(err, scsstore.ErrInvalidToken) {
					t.Errorf("Commit(%.20q) = %v; want ErrInvalidToken", tok, err)
				}
			}
		})

		t.Run("CommitTooLarge", func(t *testing.T) {
			tok := newToken()
			err := s.Commit(tok, make([]byte, 2<<20), st.now().Add(time.Hour))
			if !errors.Is(err, core.ErrTooLarge) {
				t.Fatalf("Commit of 2 MiB = %v; want core.ErrTooLarge", err)
			}
			if _, found := mustFind(t, s, tok); found {
				t.Fatal("an oversized session was stored")
			}
		})

		t.Run("Delete", func(t *testing.T) {
			tok := newToken()
			mustCommit(t, s, tok, []byte("x"), st.now().Add(time.Hour))
			if err := s.Delete(tok); err != nil {
				t.Fatal(err)
			}
			if _, found := mustFind(t, s, tok); found {
				t.Fatal("found after Delete")
			}
			// Gone from the database too: a memcached restart does not revive it.
			st.mc.Restart()
			if _, found := mustFind(t, s, tok); found {
				t.Fatal("found after Delete and a memcached restart")
			}
		})

		t.Run("DeleteMissing", func(t *testing.T) {
			for _, tok := range []string{newToken(), "", strings.Repeat("z", 300)} {
				if err := s.DeleteCtx(ctx, tok); err != nil {
					t.Errorf("Delete(%.20q) = %v; want nil", tok, err)
				}
			}
		})
	})
}

// TestAll checks All: only live sessions, keyed by the committed token,
// with memcached's newer data, and an empty non-nil map when none.
func TestAll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		st := newStack(t, be, true)
		_, s := st.server(t, 0, scsstore.Config{Iterable: true})

		all, err := s.All()
		if err != nil {
			t.Fatal(err)
		}
		if all == nil || len(all) != 0 {
			t.Fatalf("All on an empty store = %#v; want an empty non-nil map", all)
		}

		want := map[string][]byte{}
		for i := range 5 {
			tok := newToken()
			mustCommit(t, s, tok, []byte(fmt.Sprint("v", i)), st.now().Add(time.Hour))
			want[tok] = []byte(fmt.Sprint("v", i))
		}
		// Newer data that only memcached has (within SyncInterval).
		for tok := range want {
			st.clock.Advance(time.Second)
			mustCommit(t, s, tok, []byte("new-"+tok[:4]), st.now().Add(time.Hour))
			want[tok] = []byte("new-" + tok[:4])
			break
		}
		short := newToken()
		mustCommit(t, s, short, []byte("short"), st.now().Add(time.Minute))
		deleted := newToken()
		mustCommit(t, s, deleted, []byte("deleted"), st.now().Add(time.Hour))
		if err := s.Delete(deleted); err != nil {
			t.Fatal(err)
		}
		st.clock.Advance(time.Minute) // short expires

		all, err = s.AllCtx(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want) {
			t.Errorf("All returned %d sessions; want %d", len(all), len(want))
		}
		for tok, w := range want {
			if !bytes.Equal(all[tok], w) {
				t.Errorf("All[%s] = %q; want %q", tok[:6], all[tok], w)
			}
		}
	})
}

// TestAllNotIterable checks that a Store built without Iterable refuses
// All rather than return a wrong (empty) answer, and keeps no token.
func TestAllNotIterable(t *testing.T) {
	st := newStack(t, backends(t)[0], false)
	_, s := st.server(t, 0, scsstore.Config{})
	tok := newToken()
	mustCommit(t, s, tok, []byte("x"), time.Now().Add(time.Hour))
	if all, err := s.All(); !errors.Is(err, scsstore.ErrNotIterable) || all != nil {
		t.Fatalf("All = %v, %v; want nil, ErrNotIterable", all, err)
	}
	recs, err := st.durable.List(context.Background(), "", "", 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("List = %d rows, %v; want 1", len(recs), err)
	}
	if bytes.Contains(recs[0].Payload, []byte(tok)) {
		t.Fatal("the row holds the token although Iterable is off")
	}
}

func TestNewValidates(t *testing.T) {
	st := newStack(t, backends(t)[0], false)
	cs, _ := st.server(t, 0, scsstore.Config{})
	for name, cfg := range map[string]scsstore.Config{
		"NegativeRememberFor": {RememberFor: -time.Second},
	} {
		if _, err := scsstore.New(cs, cfg); err == nil {
			t.Errorf("%s: New accepted an invalid Config", name)
		}
	}
	if _, err := scsstore.New(nil, scsstore.Config{}); err == nil {
		t.Error("New accepted a nil core.Store")
	}
}

// TestSyncInterval checks the sync rule across scs's separate Find and
// Commit: with SyncInterval 2m, 100 Find+Commit pairs within a minute write
// the database once (the insert), and the first pair after 2 minutes once
// more. Find's entry is reused by Commit: one memcached read per pair.
func TestSyncInterval(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		st := newStack(t, be, true)
		cs, s := st.server(t, 2*time.Minute, scsstore.Config{})
		tok := newToken()
		const idle = 30 * time.Minute
		mustCommit(t, s, tok, []byte("0"), st.now().Add(idle))
		flush(t, cs)
		base := cs.Stats()
		if base.DBWrites != 1 {
			t.Fatalf("DBWrites after the first Commit = %d; want 1", base.DBWrites)
		}
		for i := range 100 {
			st.clock.Advance(590 * time.Millisecond) // 100 pairs in 59 s
			b, found := mustFind(t, s, tok)
			if !found || string(b) != fmt.Sprint(i) {
				t.Fatalf("pair %d: Find = %q, %v", i, b, found)
			}
			mustCommit(t, s, tok, []byte(fmt.Sprint(i+1)), st.now().Add(idle))
		}
		flush(t, cs)
		got := cs.Stats()
		if n := got.DBWrites - base.DBWrites; n != 0 {
			t.Errorf("DB writes for 100 pairs within a minute = %d; want 0", n)
		}
		if hits := got.CacheHits - base.CacheHits; hits != 100 || got.CacheMisses != base.CacheMisses || got.DBReads != base.DBReads {
			t.Errorf("reads for 100 pairs: %d cache hits, %d misses, %d DB reads; want 100, 0, 0 (Commit reuses Find's entry)",
				hits, got.CacheMisses-base.CacheMisses, got.DBReads-base.DBReads)
		}
		t.Logf("after 1 commit + 100 pairs in 59s: DBWrites=%d CacheHits=%d", got.DBWrites, got.CacheHits)

		st.clock.Advance(2 * time.Minute)
		if _, found := mustFind(t, s, tok); !found {
			t.Fatal("not found after 2 minutes")
		}
		mustCommit(t, s, tok, []byte("late"), st.now().Add(idle))
		flush(t, cs)
		after := cs.Stats()
		if n := after.DBWrites - got.DBWrites; n != 1 {
			t.Errorf("DB writes for the pair after 2 minutes = %d; want 1", n)
		}
		t.Logf("after 2 more minutes and 1 pair: DBWrites=%d", after.DBWrites)
		// The row now holds the latest data.
		st.mc.Restart()
		if b, found := mustFind(t, s, tok); !found || string(b) != "late" {
			t.Errorf("Find from the database = %q, %v; want late, true", b, found)
		}
	})
}

// TestCommitWithoutFind covers Commits that nothing remembers: a new app
// server, or a Find on another one. They read the session first, so the
// sync rule still holds.
func TestCommitWithoutFind(t *testing.T) {
	st := newStack(t, backends(t)[0], true)
	csA, a := st.server(t, 2*time.Minute, scsstore.Config{})
	csB, bs := st.server(t, 2*time.Minute, scsstore.Config{RememberSize: -1})
	tok := newToken()
	mustCommit(t, a, tok, []byte("a"), st.now().Add(time.Hour))
	for i := range 10 {
		st.clock.Advance(time.Second)
		mustCommit(t, bs, tok, []byte(fmt.Sprint("b", i)), st.now().Add(time.Hour))
	}
	flush(t, csA)
	flush(t, csB)
	if w := csA.Stats().DBWrites + csB.Stats().DBWrites; w != 1 {
		t.Errorf("DB writes = %d; want 1 (the insert)", w)
	}
	if b, found := mustFind(t, a, tok); !found || string(b) != "b9" {
		t.Errorf("Find = %q, %v; want b9", b, found)
	}
}

// TestConflictLastWriterWins: a Commit whose remembered entry was changed
// by another app server meanwhile reads again and writes over it.
func TestConflictLastWriterWins(t *testing.T) {
	st := newStack(t, backends(t)[0], true)
	csA, a := st.server(t, 0, scsstore.Config{})
	_, bs := st.server(t, 0, scsstore.Config{})
	tok := newToken()
	mustCommit(t, a, tok, []byte("v1"), st.now().Add(time.Hour))
	mustFind(t, a, tok) // request 1 on server A reads
	mustFind(t, bs, tok)
	mustCommit(t, bs, tok, []byte("from-b"), st.now().Add(time.Hour)) // request 2 on B commits first
	mustCommit(t, a, tok, []byte("from-a"), st.now().Add(time.Hour))  // then request 1
	if b, found := mustFind(t, bs, tok); !found || string(b) != "from-a" {
		t.Fatalf("Find = %q, %v; want from-a (last writer wins)", b, found)
	}
	if c := csA.Stats().Conflicts; c != 1 {
		t.Errorf("CASConflicts on A = %d; want 1", c)
	}
}

// TestConcurrentCommits hammers one session and several others from many
// goroutines (run with -race).
func TestConcurrentCommits(t *testing.T) {
	st := newStack(t, backends(t)[0], false)
	_, a := st.server(t, 0, scsstore.Config{RememberSize: 4})
	_, bs := st.server(t, 0, scsstore.Config{})
	shared := newToken()
	mustCommit(t, a, shared, []byte("start"), time.Now().Add(time.Hour))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		s := a
		if g%2 == 1 {
			s = bs
		}
		own := newToken()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				for _, tok := range []string{shared, own} {
					if _, _, err := s.Find(tok); err != nil {
						errs <- err
						return
					}
					if err := s.Commit(tok, []byte(fmt.Sprint(g, "-", i)), time.Now().Add(time.Hour)); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if b, found := mustFind(t, a, shared); !found || !strings.HasSuffix(string(b), "-19") {
		t.Errorf("shared session = %q, %v; want some goroutine's last write", b, found)
	}
}

// TestMemcachedLossGrace: a session whose latest expiry had not reached
// the database (committed within SyncInterval of the last sync) survives a
// memcached restart until that expiry, even past the expiry the row holds,
// and not beyond the row's expiry plus SyncInterval.
func TestMemcachedLossGrace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		st := newStack(t, be, true)
		cs, s := st.server(t, 2*time.Minute, scsstore.Config{})
		const idle = 30 * time.Minute
		t0 := st.now()
		tok, gone := newToken(), newToken()
		mustCommit(t, s, tok, []byte("synced"), t0.Add(idle))  // inserted: in the database
		mustCommit(t, s, gone, []byte("synced"), t0.Add(idle)) // idle from t0
		st.clock.Advance(90 * time.Second)
		mustFind(t, s, tok)
		mustCommit(t, s, tok, []byte("unsynced"), st.now().Add(idle)) // memcached only
		flush(t, cs)
		if w := cs.Stats().DBWrites; w != 2 {
			t.Fatalf("DBWrites = %d; want 2 (the inserts)", w)
		}

		// 29 minutes after tok's last activity, past the row's expiry (t0+30m).
		st.clock.Advance(29 * time.Minute)
		st.mc.Restart()
		b, found := mustFind(t, s, tok)
		if !found || string(b) != "synced" {
			t.Fatalf("after a memcached restart, a session active 29m ago (idle 30m): Find = %q, %v; want the synced data", b, found)
		}
		// gone was idle for 30.5 minutes: still within SyncInterval of its
		// row's expiry, the documented overshoot.
		if _, found := mustFind(t, s, gone); !found {
			t.Error("gone not found within SyncInterval of its expiry after a memcached loss")
		}
		// Beyond expiry + SyncInterval nothing is found.
		st.clock.Advance(2 * time.Minute)
		st.mc.Restart()
		for _, tk := range []string{tok, gone} {
			if b, found := mustFind(t, s, tk); found {
				t.Errorf("found %q beyond expiry + SyncInterval", b)
			}
		}
	})
}
