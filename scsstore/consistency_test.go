package scsstore_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/scsstore"
)

// Regression tests for the scsstore defects of the reliability issue
// (docs/consistency.md, I2 and I3); each failed before its fix.

// Without memcached every Commit reaches the database, so Find honours the
// expiry scs gave exactly: not up to SyncInterval past it.
func TestFindWithoutMemcachedHonoursExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		st := newStack(t, be, true)
		cs, err := core.NewStore(core.StoreConfig{Durable: st.durable, Logger: quiet, Clock: st.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close(context.Background())
		s, err := scsstore.New(cs, scsstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		token := newToken()
		mustCommit(t, s, token, []byte("alice"), st.now().Add(time.Minute))
		st.clock.Advance(time.Minute + time.Second)
		if b, found := mustFind(t, s, token); found {
			t.Errorf("Find one second past scs's expiry = %q: the session outlived its expiry", b)
		}
	})
}

// A Commit that loses its compare-and-swap to a logout (another request's
// Destroy) must not put the session back: the destruction wins. Also when
// the committing app server never read the session itself.
func TestCommitRacingDestroyDoesNotRevive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		st := newStack(t, be, true)
		_, a := st.server(t, 0, scsstore.Config{})
		_, b := st.server(t, 0, scsstore.Config{})
		expiry := st.now().Add(time.Hour)
		for _, readFirst := range []bool{true, false} {
			token := newToken()
			mustCommit(t, a, token, []byte("cart=empty"), expiry)
			if readFirst {
				mustFind(t, a, token) // A's request loads the session
			}
			if err := b.Delete(token); err != nil { // B's request logs out
				t.Fatal(err)
			}
			mustCommit(t, a, token, []byte("cart=book"), expiry) // A's request commits
			if got, found := mustFind(t, b, token); found {
				t.Errorf("read first=%v: a logout was undone by a racing commit: %q", readFirst, got)
			}
		}
	})
}

// I1 (soak seed 60009): app server A cannot reach the memcached node and
// commits a session's new expiry around it, to the database. App server B
// reaches the node, whose copy still holds scs's previous expiry, now past.
// Before the fix the core Store saw that copy alive (its idle timeout ran to
// expiry + Grace), never checked the row, and Find reported the session
// gone: a user active a moment ago was logged out. The Store's idle timeout
// now ends at scs's expiry, so the copy is dead to it, and a dead copy is
// checked against the row.
func TestFindChecksCopyPastExpiryAgainstRow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		st := newStack(t, be, true)
		_, b := st.server(t, 2*time.Minute, scsstore.Config{})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		unreachable := l.Addr().String()
		l.Close()
		_, a := st.serverOn(t, unreachable, 2*time.Minute, scsstore.Config{})

		tok := newToken()
		mustCommit(t, b, tok, []byte("v1"), st.now().Add(10*time.Second))
		st.clock.Advance(9 * time.Second)
		if _, found := mustFind(t, a, tok); !found {
			t.Fatal("A does not find the session in the database")
		}
		mustCommit(t, a, tok, []byte("v2"), st.now().Add(10*time.Second)) // around the node
		st.clock.Advance(2 * time.Second)                                 // past v1's expiry
		if got, found := mustFind(t, b, tok); !found || string(got) != "v2" {
			t.Errorf("B: Find = %q, %v; want v2, committed by A 2 s ago", got, found)
		}
	})
}
