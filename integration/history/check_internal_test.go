package history

import (
	"testing"
	"time"
)

// synthetic builds histories by hand to check the checker: each case must
// report exactly the invariants listed, so that the model neither misses a
// violation nor reports an allowed behaviour.
type synthetic struct {
	t0     time.Time
	ops    []*opRec
	faults []*faultRec
}

func newSynthetic() *synthetic { return &synthetic{t0: time.Now()} }

func (s *synthetic) at(sec float64) time.Time {
	return s.t0.Add(time.Duration(sec * float64(time.Second)))
}

// op records a request from start to start+10ms.
func (s *synthetic) op(start float64, kind, in, out string, found bool, seen, writes map[string]string) *opRec {
	o := &opRec{ID: len(s.ops) + 1, Kind: kind, Start: s.at(start), End: s.at(start + 0.01),
		TokenIn: in, TokenOut: out, Found: found, Seen: seen, Writes: writes}
	s.ops = append(s.ops, o)
	return o
}

func (s *synthetic) fault(start, end float64, f faultRec) {
	f.Start, f.End = s.at(start), s.at(end)
	s.faults = append(s.faults, &f)
}

func (s *synthetic) check(noMemcached bool) []violation {
	p := profiles[0]
	p.noMemcached = noMemcached
	h := &history{p: p, c: &cluster{backend: "synthetic"}, epoch: s.t0}
	h.rec.ops, h.rec.faults = s.ops, s.faults
	return check(h)
}

// heldTombstone destroys a session while the database refuses (0.5s to
// 2.5s), makes memcached unreachable from 1.5s to 2.6s, and replays the
// destroyed token at readAt.
func (s *synthetic) heldTombstone(readAt float64) {
	s.op(0, "login", "", "T", false, nil, kv("u", "a"))
	s.fault(0.5, 2.5, faultRec{Kind: "db-refuse", DB: true})
	d := s.op(1, "destroy", "T", "", true, kv("u", "a"), nil)
	d.Destroy = true
	s.fault(1.5, 2.6, faultRec{Kind: "stop", Unavail: true})
	s.op(readAt, "replay", "T", "T", true, kv("u", "a"), nil)
}

// heldTombstoneLost destroys a session on s0 while the database refuses,
// restarts app server restarted with writes unsaved, and replays the token
// after memcached lost everything, past the held tombstone's window.
func (s *synthetic) heldTombstoneLost(restarted string) {
	s.op(0, "login", "", "T", false, nil, kv("u", "a"))
	s.fault(0.5, 1.05, faultRec{Kind: "db-refuse", DB: true})
	d := s.op(1, "destroy", "T", "", true, kv("u", "a"), nil)
	d.Destroy = true
	s.fault(1.02, 1.02, faultRec{Kind: "restart", Target: restarted, Note: "close: 1 durable write not saved"})
	s.fault(4.4, 4.4, faultRec{Kind: "flush-all", Loss: true})
	s.op(4.5, "replay", "T", "T", true, kv("u", "a"), nil)
}

// renewedTombstoneLost renews token T to R on s0 while the database
// refuses, restarts s0 with the old token's tombstone unsaved, makes a
// durable change under R once the database is back, and reads token read
// after memcached lost everything, without that change.
func (s *synthetic) renewedTombstoneLost(read string) {
	s.op(0, "login", "", "T", false, nil, kv("u", "a"))
	s.fault(0.5, 1.05, faultRec{Kind: "db-refuse", DB: true})
	s.op(1, "renew", "T", "R", true, kv("u", "a"), nil).Renew = true
	s.fault(1.02, 1.02, faultRec{Kind: "restart", Target: "s0", Note: "close: 1 durable write not saved"})
	s.op(1.5, "dput", "R", "R", true, kv("u", "a"), kv("k1", "b")).Durable = true
	s.fault(4.4, 4.4, faultRec{Kind: "flush-all", Loss: true})
	s.op(4.5, "final", read, read, true, kv("u", "a"), nil)
}

func kv(pairs ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

func TestCheckerJudges(t *testing.T) {
	loss := faultRec{Kind: "kill", Loss: true, Unavail: true}
	db := faultRec{Kind: "db-refuse", DB: true}
	cases := []struct {
		name  string
		build func(s *synthetic)
		want  []string
	}{
		{"clean", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1, "put", "T", "T", true, kv("u", "a"), kv("k", "b"))
			s.op(2, "read", "T", "T", true, kv("u", "a", "k", "b"), nil)
		}, nil},
		{"destroyed token served", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			d := s.op(1, "destroy", "T", "", true, kv("u", "a"), nil)
			d.Destroy = true
			s.op(1.5, "replay", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I2"}},
		{"held tombstone hidden by a cache fault, read before the retry", func(s *synthetic) {
			// Seed 400080: the row's tombstone waits in the background
			// writer; the node is unreachable to the reader, and the
			// database has answered again for less than the retry bound.
			s.heldTombstone(2.8)
		}, nil},
		{"held tombstone still missing after the retry bound", func(s *synthetic) {
			s.heldTombstone(2.5 + (dbSettle + dbTimeout + retryBackoffCap + slackTight).Seconds() + 0.1)
		}, []string{"I2"}},
		{"held tombstone lost with its app server, then memcached's", func(s *synthetic) {
			// Seed 300136: I5's double fault, for a tombstone.
			s.heldTombstoneLost("s0")
		}, nil},
		{"held tombstone: another app server restarted", func(s *synthetic) {
			s.heldTombstoneLost("s1")
		}, []string{"I2"}},
		{"renewed token's tombstone lost with its app server, old token read", func(s *synthetic) {
			// Seed 100100064: the old token, served under I5's double
			// fault, shows the session as renewed, without the durable
			// change made since under the new token.
			s.renewedTombstoneLost("T")
		}, nil},
		{"renewed token's tombstone lost with its app server, new token read", func(s *synthetic) {
			s.renewedTombstoneLost("R")
		}, []string{"I5"}},
		{"idle session served from a row that stood in during the breaker's recovery", func(s *synthetic) {
			// Seed 200145: the last read came 34ms after a pause ended,
			// before its app server's breaker closed, so the row stood in.
			s.fault(0, 1, faultRec{Kind: "pause", Unavail: true})
			s.op(0.1, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1.034, "read", "T", "T", true, kv("u", "a"), nil)
			s.op(1.034+idleTimeout.Seconds()+0.4, "read", "T", "T", true, kv("u", "a"), nil)
		}, nil},
		{"destroyed during the breaker's recovery, served by another app server", func(s *synthetic) {
			// Seed 900198: the node came back 99ms before the logout, whose
			// app server still had its breaker open and wrote the tombstone
			// only to the row; another app server read the node's copy.
			s.fault(0, 1, faultRec{Kind: "kill", Loss: true, Unavail: true})
			s.op(1.01, "login", "", "T", false, nil, kv("u", "a"))
			d := s.op(1.1, "destroy", "T", "", true, kv("u", "a"), nil)
			d.Destroy = true
			s.op(1.17, "read", "T", "T", true, kv("u", "a"), nil)
		}, nil},
		{"destroyed after the breaker's recovery, served by another app server", func(s *synthetic) {
			s.fault(0, 1, faultRec{Kind: "kill", Loss: true, Unavail: true})
			s.op(1.01, "login", "", "T", false, nil, kv("u", "a"))
			d := s.op(1.1+breakerRecovery.Seconds(), "destroy", "T", "", true, kv("u", "a"), nil)
			d.Destroy = true
			s.op(1.2+breakerRecovery.Seconds(), "read", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I2"}},
		{"destroyed during a database fault, no cache fault", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.5, 2.5, db)
			d := s.op(1, "destroy", "T", "", true, kv("u", "a"), nil)
			d.Destroy = true
			s.op(2.8, "replay", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I2"}},
		{"destroyed token absent", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			d := s.op(1, "destroy", "T", "", true, kv("u", "a"), nil)
			d.Destroy = true
			s.op(1.5, "read", "T", "", false, nil, nil)
		}, nil},
		{"idle session served", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(4, "read", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I3 idle"}},
		{"idle session served after a cache loss, within SyncInterval", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(3.5, 3.6, loss)
			s.op(4, "read", "T", "T", true, kv("u", "a"), nil)
		}, nil},
		{"active session absent", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1, "read", "T", "T", true, kv("u", "a"), nil)
			s.op(2, "read", "T", "", false, nil, nil)
		}, []string{"I1"}},
		{"active session absent while the database refuses", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1, "read", "T", "T", true, kv("u", "a"), nil)
			s.fault(1.8, 2.5, db)
			s.op(2, "read", "T", "", false, nil, nil)
		}, nil},
		{"change lost without a fault", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1, "put", "T", "T", true, kv("u", "a"), kv("k", "b"))
			s.op(1.5, "read", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I6"}},
		{"change lost without a fault, database only", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1, "put", "T", "T", true, kv("u", "a"), kv("k", "b"))
			s.op(1.5, "read", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I4 (no fault, database only)"}},
		{"change lost in a cache loss within SyncInterval of the newest", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1, "put", "T", "T", true, kv("u", "a"), kv("k", "b"))
			s.fault(1.5, 1.6, loss)
			s.op(2.5, "read", "T", "T", true, kv("u", "a"), nil)
		}, nil},
		{"change older than SyncInterval lost in a cache loss", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(0.2, "put", "T", "T", true, kv("u", "a"), kv("k", "b"))
			s.op(2.5, "put", "T", "T", true, kv("u", "a", "k", "b"), kv("j", "c"))
			s.fault(2.6, 2.7, loss)
			s.op(2.8, "read", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I4"}},
		{"durable change lost in a cache loss", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(1, "dput", "T", "T", true, kv("u", "a"), kv("d0", "b")).Durable = true
			s.fault(1.5, 1.6, loss)
			s.op(3.2, "read", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I5"}},
		{"durable change lost in a cache loss during a database outage", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.5, 2, db)
			s.op(1, "dput", "T", "T", true, kv("u", "a"), kv("d0", "b")).Durable = true
			s.fault(1.5, 1.6, loss)
			s.op(2.8, "read", "T", "T", true, kv("u", "a"), nil)
		}, nil},
		{"change built on a forked copy, lost to the row", func(s *synthetic) {
			// Seed 2400001, after the fix: a durable change went around
			// the paused node; another app server built on the node's
			// older copy once it answered, its write was refused, and the
			// row replaced the copy.
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.5, 1, faultRec{Kind: "pause", Unavail: true})
			s.op(0.7, "dput", "T", "T", true, kv("u", "a"), kv("d0", "b")).Durable = true
			s.op(1.2, "put", "T", "T", true, kv("u", "a"), kv("k", "c"))
			s.op(3.5, "read", "T", "T", true, kv("u", "a", "d0", "b"), nil)
		}, nil},
		{"change built on an up-to-date copy, lost after a fault", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.5, 1, faultRec{Kind: "pause", Unavail: true})
			s.op(0.7, "dput", "T", "T", true, kv("u", "a"), kv("d0", "b")).Durable = true
			s.op(1.2, "put", "T", "T", true, kv("u", "a", "d0", "b"), kv("k", "c"))
			s.op(3.5, "read", "T", "T", true, kv("u", "a", "d0", "b"), nil)
		}, []string{"I4"}},
		{"change built on a copy a cache loss left behind, lost", func(s *synthetic) {
			// Stale, but not forked: nothing went around a node.
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.op(0.2, "put", "T", "T", true, kv("u", "a"), kv("k0", "b"))
			s.fault(0.5, 0.6, loss)
			s.op(3, "put", "T", "T", true, kv("u", "a"), kv("k", "c"))
			s.op(5.5, "read", "T", "T", true, kv("u", "a"), nil)
		}, []string{"I6"}},
		{"durable change built on a forked copy, lost to the row", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.5, 1, faultRec{Kind: "pause", Unavail: true})
			s.op(0.7, "dput", "T", "T", true, kv("u", "a"), kv("d0", "b")).Durable = true
			s.op(1.2, "dput", "T", "T", true, kv("u", "a"), kv("d1", "c")).Durable = true
			s.op(3.5, "read", "T", "T", true, kv("u", "a", "d0", "b"), nil)
		}, []string{"I5"}},
		{"durable change made while a ring change rolled out, lost", func(s *synthetic) {
			// Seed 70200079: an app server that had not applied the
			// change yet renewed the token from the previous owner's
			// older copy (docs/consistency.md, I5, not covered).
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.5, 1.5, faultRec{Kind: "ring-add", Loss: true})
			s.op(0.9, "dput", "T", "T", true, kv("u", "a"), kv("d0", "b")).Durable = true
			s.op(1.2, "renew", "T", "R", true, kv("u", "a"), nil)
			s.op(3.5, "read", "R", "R", true, kv("u", "a"), nil)
		}, nil},
		{"durable change made after a ring change rolled out, lost", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.5, 1.5, faultRec{Kind: "ring-add", Loss: true})
			s.op(1.6, "dput", "T", "T", true, kv("u", "a"), kv("d0", "b")).Durable = true
			s.op(1.8, "renew", "T", "R", true, kv("u", "a"), nil)
			s.op(4, "read", "R", "R", true, kv("u", "a"), nil)
		}, []string{"I5"}},
		{"503 with the database up", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			o := s.op(1, "put", "T", "", true, kv("u", "a"), kv("k", "b"))
			o.Err, o.Unavail = "core: session store unavailable", true
		}, []string{"I7"}},
		{"503 with the database down", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a"))
			s.fault(0.9, 1.5, db)
			o := s.op(1, "put", "T", "", true, kv("u", "a"), kv("k", "b"))
			o.Err, o.Unavail = "core: session store unavailable", true
		}, nil},
		{"request that hangs", func(s *synthetic) {
			s.op(0, "login", "", "T", false, nil, kv("u", "a")).End = s.at(7)
		}, []string{"I7 liveness"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSynthetic()
			c.build(s)
			vs := s.check(c.name == "change lost without a fault, database only")
			var got []string
			for _, v := range vs {
				got = append(got, v.Invariant)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %q, want %q\n%v", got, c.want, vs)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %q, want %q\n%v", got, c.want, vs)
				}
			}
		})
	}
}
