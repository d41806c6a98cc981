package bench

import (
	"context"
	"flag"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// The click stream: users clicking every 5 s for 30 simulated minutes,
// one click in 10 changing the session, on a virtual clock. Each user is
// independent of the others (own session, own sync and touch cycle), so a
// uniform sample of users gives the population's per-user figures; the
// counts are reported scaled to clickPopulation users.
const (
	clickPopulation = 10000
	clickDuration   = 30 * time.Minute
	clickSlots      = 10 // each 5 s interval is cut in 10 slots of 500 ms; user u clicks in slot u%10
)

var clickUsers = flag.Int("clickstream.users", 400,
	"users simulated by BenchmarkClickStream (counts are scaled to 10,000 users); 10000 simulates them all")

// countingDurable counts the durable tier's row reads (Load calls), row
// writes (the writes of Write's batches) and Write calls (one multi-row
// statement each, or a few).
type countingDurable struct {
	durable.Tier
	reads, writes, writeCalls atomic.Int64
}

func (d *countingDurable) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	d.reads.Add(1)
	return d.Tier.Load(ctx, key)
}

func (d *countingDurable) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	d.writes.Add(int64(len(batch)))
	d.writeCalls.Add(1)
	return d.Tier.Write(ctx, batch)
}

// BenchmarkClickStream counts database reads and writes of the click stream
// for the hybrid Store (default tunables), write-through (every key a
// durable key, so each change reaches the database before the response:
// Django's cached_db) and a database-only Store (no memcached), driving
// Manager.Load and Manager.Save directly, on SQLite. db-writes counts rows
// written, db-write-calls the calls that wrote them (the background writer
// writes many rows per call). Run it with -benchtime 1x.
func BenchmarkClickStream(b *testing.B) {
	mc := startMemcached(b)
	for _, mode := range []string{"hybrid", "write-through", "database-only"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				runClickStream(b, mc, mode)
			}
		})
	}
}

// clickModifies reports whether user u's click k changes the session: a
// fixed pseudo-random 10%, the same in every mode.
func clickModifies(u, k int) bool {
	x := uint64(u)<<20 | uint64(k)
	x += 0x9e3779b97f4a7c15 // splitmix64
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return x%10 == 0
}

func runClickStream(b *testing.B, mc *memcachedtest.Server, mode string) {
	b.StopTimer()
	users := *clickUsers
	if users <= 0 || users > clickPopulation {
		b.Fatalf("-clickstream.users must be in 1..%d", clickPopulation)
	}
	clock := newVClock()
	db, err := sqlite.Open(b.TempDir() + "/clicks.db?_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}()
	gs, err := gormstore.New(db, gormstore.Config{TableName: "clicks"})
	if err != nil {
		b.Fatal(err)
	}
	durable := &countingDurable{Tier: gs}
	var trips atomic.Int64
	cfg := core.StoreConfig{Durable: durable, Clock: clock.Now, Logger: quiet, Reaper: core.ReaperConfig{Interval: -1}}
	workers := 16
	var durableKeys []string
	switch mode {
	case "write-through":
		for _, v := range newValues {
			durableKeys = append(durableKeys, v.key)
		}
		fallthrough
	case "hybrid":
		cfg.Memcached = core.MemcachedConfig{
			Servers:     []string{mc.Addr},
			KeyPrefix:   "click-" + mode + ":",
			Timeout:     memcacheTimeout,
			DialContext: countingDialer(&trips),
		}
	case "database-only":
		workers = 4 // SQLite: one connection serialises the statements anyway
	}
	st, err := core.NewStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	m, err := core.New(core.Config{Store: st, DurableKeys: durableKeys})
	if err != nil {
		b.Fatal(err)
	}

	tokens := make([]string, users)
	var logouts, failures atomic.Int64
	click := func(ctx context.Context, u, k int) {
		s, err := m.Load(ctx, tokens[u])
		if err != nil {
			failures.Add(1)
			return
		}
		switch {
		case k == 0:
			for _, v := range newValues {
				s.Put(v.key, v.value)
			}
		case s.IsNew():
			logouts.Add(1)
			for _, v := range newValues {
				s.Put(v.key, v.value)
			}
		case clickModifies(u, k):
			s.Put("n", k)
		default:
			_ = getString(s, "user")
		}
		if err := m.Save(ctx, s); err != nil {
			failures.Add(1)
			return
		}
		if k == 0 || tokens[u] != s.Token() {
			tokens[u] = s.Token()
		}
	}

	clicks := int(clickDuration / clickInterval)
	slot := clickInterval / clickSlots
	start := clock.Now()
	ctx := context.Background()
	pace := newWriterPace(st, start)
	b.StartTimer()
	began := time.Now()
	for k := range clicks {
		for sl := range clickSlots {
			clock.ns.Store(start.Add(time.Duration(k)*clickInterval + time.Duration(sl)*slot).UnixNano())
			var next atomic.Int64
			next.Store(int64(sl) - clickSlots)
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						u := int(next.Add(clickSlots))
						if u >= users {
							return
						}
						click(ctx, u, k)
					}
				}()
			}
			wg.Wait()
		}
		pace.at(b, clock.Now())
	}
	if err := st.Close(context.Background()); err != nil { // flushes pending syncs
		b.Fatal(err)
	}
	elapsed := time.Since(began)
	b.StopTimer()
	if n := failures.Load(); n > 0 {
		b.Fatalf("%s: %d clicks failed", mode, n)
	}
	total := float64(users * clicks)
	scale := float64(clickPopulation) / float64(users)
	reads, writes := float64(durable.reads.Load()), float64(durable.writes.Load())
	b.ReportMetric(reads*scale, "db-reads")
	b.ReportMetric(writes*scale, "db-writes")
	b.ReportMetric(reads/total, "db-reads/click")
	b.ReportMetric(writes/total, "db-writes/click")
	b.ReportMetric(float64(durable.writeCalls.Load())*scale, "db-write-calls")
	b.ReportMetric(float64(trips.Load())/total, "mc-rt/click")
	b.ReportMetric(float64(logouts.Load()), "logouts")
	b.ReportMetric(float64(users), "users-simulated")
	b.ReportMetric(elapsed.Seconds(), "wall-s")
}
