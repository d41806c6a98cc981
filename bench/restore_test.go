package bench

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

// BenchmarkRestore measures the first request of a session after memcached
// lost it: Manager.Load finds no copy, reads the row and refills memcached.
// It reports the database reads and row writes and the memcached round
// trips of one restore (SQLite). The refill is activity the row has not
// seen: its background sync comes SyncInterval later, off the request.
func BenchmarkRestore(b *testing.B) {
	mc := startMemcached(b)
	db, err := sqlite.Open(b.TempDir() + "/restore.db?_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	gs, err := gormstore.New(db, gormstore.Config{TableName: "restore"})
	if err != nil {
		b.Fatal(err)
	}
	durable := &countingDurable{Tier: gs}
	var trips atomic.Int64
	st, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, KeyPrefix: "restore:", Timeout: memcacheTimeout, DialContext: countingDialer(&trips)},
		Durable:   durable,
		Logger:    quiet,
		Reaper:    core.ReaperConfig{Interval: -1},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close(context.Background()) })
	m, err := core.New(core.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const sessions = 1000
	tokens := make([]string, sessions)
	for i := range tokens {
		s, _ := m.Load(ctx, "")
		s.Put("user", i)
		if err := m.Save(ctx, s); err != nil {
			b.Fatal(err)
		}
		tokens[i] = s.Token()
	}
	if err := st.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	raw := memcache.New(mc.Addr)
	var reads, writes, rts int64
	b.ResetTimer()
	for i := range b.N {
		tok := tokens[i%sessions]
		b.StopTimer()
		if err := raw.Delete("restore:" + core.StorageKey(tok)); err != nil {
			b.Fatal(err) // the cache loss
		}
		r0, w0, t0 := durable.reads.Load(), durable.writes.Load(), trips.Load()
		b.StartTimer()
		s, err := m.Load(ctx, tok)
		b.StopTimer()
		if err != nil || s.IsNew() {
			b.Fatalf("restore: %v (new: %v)", err, s.IsNew())
		}
		reads += durable.reads.Load() - r0
		writes += durable.writes.Load() - w0
		rts += trips.Load() - t0
		b.StartTimer()
	}
	b.ReportMetric(float64(reads)/float64(b.N), "db-reads/restore")
	b.ReportMetric(float64(writes)/float64(b.N), "db-writes/restore")
	b.ReportMetric(float64(rts)/float64(b.N), "mc-rt/restore")
}
