package bench

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

var dbloadSessions = flag.Int("dbload.sessions", 1000, "sessions simulated by BenchmarkDatabaseLoad")

const (
	dbloadClick   = 30 * time.Second // every session requests this often
	dbloadWarmup  = 30 * time.Minute // logins are spread over it
	dbloadMeasure = time.Hour        // counted after the warm-up
	dbloadSlots   = 10               // each click interval is cut in slots; session u requests in slot u%10
	dbloadReap    = time.Minute      // the reaper's interval (ReaperConfig default)
)

// BenchmarkDatabaseLoad measures what sessions cost the database at steady
// state, on PostgreSQL (SQLite without it), memcached and a virtual clock:
// -dbload.sessions sessions log in spread over 30 minutes, then each requests
// every 30 s; the figures count the following hour. Two populations: every
// request only reads ("read-only"), or every request changes the session
// ("modifying"). Either way each session's activity reaches its row within
// SyncInterval through the background writer (a read-only session's
// throttled touch, once per TouchInterval, is activity too), many rows per
// statement; a reaper pass runs every minute (ReaperConfig defaults).
//
// Everything is counted on the PostgreSQL connections: db-stmts/session-h
// (all statements, request path, background writer and reaper, per session
// and hour), db-writes/session-h (statements that wrote), rows/session-h
// (rows written, Stats.DBWrites), rows/write (rows per writing statement),
// onpath-stmts (on the request path in the measured hour), rows/update (rows
// the reaper extended per statement that wrote, when it wrote any), and
// mc-ops/req (memcached round trips per request, the background writer's
// included). logouts must be 0. Run it with -benchtime 1x.
func BenchmarkDatabaseLoad(b *testing.B) {
	for _, pop := range []string{"read-only", "modifying"} {
		b.Run(pop, func(b *testing.B) {
			for i := range b.N {
				runDatabaseLoad(b, fmt.Sprintf("dbload_%s_%d", pop, i), pop == "modifying")
			}
		})
	}
}

func runDatabaseLoad(b *testing.B, name string, modifying bool) {
	b.StopTimer()
	n := *dbloadSessions
	e := newEnv(b)
	defer e.closeTarget()
	clock := newVClock()
	st, trips, counter := e.hybridStore(targetTB{b, e}, name, clock)
	m := hybridManager(b, st)
	r, err := st.NewReaper(core.ReaperConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := requestContext
	tokens := make([]string, n)
	var logouts, failures atomic.Int64
	request := func(u, k int) {
		s, err := m.Load(ctx, tokens[u])
		if err != nil {
			failures.Add(1)
			return
		}
		switch {
		case tokens[u] == "":
			s.Put("user", u)
		case s.IsNew():
			logouts.Add(1)
			s.Put("user", u)
		case modifying:
			s.Put("n", k)
		default:
			_ = getInt(s, "user")
		}
		if err := m.Save(ctx, s); err != nil {
			failures.Add(1)
			return
		}
		tokens[u] = s.Token()
	}

	start := clock.Now()
	end := dbloadWarmup + dbloadMeasure
	slot := dbloadClick / dbloadSlots
	nextReap := time.Duration(0)
	pace := newWriterPace(st, clock.Now())
	var c0 sqlSnap
	var t0 int64
	var ext0, rows0 uint64
	var reaperWrites int64
	b.StartTimer()
	for at := time.Duration(0); at < end; at += slot {
		clock.ns.Store(start.Add(at).UnixNano())
		if at == dbloadWarmup {
			flushStore(b, st)
			c0, t0, ext0, rows0 = counter.snap(), trips.Load(), st.Stats().ReapExtended, st.Stats().DBWrites
		}
		// Sessions of this slot: those logged in by now (logins spread
		// over the warm-up) request; session u logs in at u/n of it.
		var wg sync.WaitGroup
		var next atomic.Int64
		next.Store(int64(at/slot%dbloadSlots) - dbloadSlots)
		k := int(at / dbloadClick)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					u := int(next.Add(dbloadSlots))
					if u >= n {
						return
					}
					if time.Duration(u)*dbloadWarmup/time.Duration(n) > at {
						continue // not logged in yet
					}
					request(u, k)
				}
			}()
		}
		wg.Wait()
		pace.at(b, clock.Now())
		if at >= nextReap {
			before := counter.snap()
			if err := r.RunOnce(context.Background()); err != nil {
				b.Fatal(err)
			}
			if at >= dbloadWarmup {
				reaperWrites += counter.snap().sub(before).writes
			}
			nextReap = at + dbloadReap
		}
	}
	flushStore(b, st)
	b.StopTimer()
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d requests failed", f)
	}
	c := counter.snap().sub(c0)
	sessionHours := float64(n) * dbloadMeasure.Hours()
	extended := st.Stats().ReapExtended - ext0
	b.ReportMetric(float64(c.stmts)/sessionHours, "db-stmts/session-h")
	b.ReportMetric(float64(c.writes)/sessionHours, "db-writes/session-h")
	rows := float64(st.Stats().DBWrites - rows0)
	b.ReportMetric(rows/sessionHours, "rows/session-h")
	if c.writes > 0 {
		b.ReportMetric(rows/float64(c.writes), "rows/write")
	}
	b.ReportMetric(float64(c.onPath), "onpath-stmts")
	requests := float64(n) * float64(dbloadMeasure/dbloadClick)
	b.ReportMetric(float64(trips.Load()-t0)/requests, "mc-ops/req")
	if reaperWrites > 0 {
		b.ReportMetric(float64(extended)/float64(reaperWrites), "rows/update")
	}
	b.ReportMetric(float64(logouts.Load()), "logouts")
}
