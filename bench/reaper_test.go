package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"

	"github.com/hybridsession/hybridsession/core"
)

const (
	reapRows       = 100000
	reapAliveEvery = 10 // one expired-looking row in 10 belongs to a session still alive in memcached
)

// BenchmarkReaper is one reaper pass (Reaper.RunOnce, default batch of 500)
// over 100,000 rows whose expires_at has passed, on PostgreSQL. One row in
// ten belongs to a session still alive in memcached (the reaper rewrites
// it with memcached's copy); the rest are dead (deleted). rows/s is rows
// examined per second of the pass; sql/batch and mc-rt/batch are counted
// on the connections. Run it with -benchtime 1x (each iteration loads the
// rows again, untimed).
func BenchmarkReaper(b *testing.B) {
	dsn := postgresDSN(b)
	mc := startMemcached(b)
	ctx := context.Background()
	counter := new(sqlCounter)
	var trips atomic.Int64
	durable := openDurable(b, "hs_reap", counter)
	st, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, Timeout: memcacheTimeout, DialContext: countingDialer(&trips)},
		Durable:   durable,
		Logger:    quiet,
		ReapMode:  core.ReapExternal, // the benchmark runs the passes
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close(context.Background()) })
	reaper, err := st.NewReaper(core.ReaperConfig{})
	if err != nil {
		b.Fatal(err)
	}
	loader, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = loader.Close(context.Background()) })
	filler := memcache.New(mc.Addr)
	filler.MaxIdleConns = 16

	var elapsed, cpu time.Duration
	var examined, extended, deleted int
	var stmts, writes, rts int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		loadExpiredRows(b, loader, filler, i)
		s0, t0 := counter.snap(), trips.Load()
		b.StartTimer()
		cpu0 := cpuTime()
		rep, err := reaper.RunOnce(ctx)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if rep.Examined != reapRows || rep.Errors != 0 || rep.Skipped != 0 {
			b.Fatalf("pass: %s", rep)
		}
		d := counter.snap().sub(s0)
		stmts, writes, rts = stmts+d.stmts, writes+d.writes, rts+trips.Load()-t0
		elapsed += rep.Duration
		examined, extended, deleted = examined+rep.Examined, extended+rep.Extended, deleted+rep.Deleted
	}
	b.ReportAllocs()
	reportCPU(b, cpu)
	batches := float64(examined) / 500
	b.ReportMetric(float64(examined)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(stmts)/batches, "sql/batch")
	b.ReportMetric(float64(writes)/batches, "sql-writes/batch")
	b.ReportMetric(float64(rts)/batches, "mc-rt/batch")
	b.ReportMetric(float64(extended)/float64(b.N), "extended/pass")
	b.ReportMetric(float64(deleted)/float64(b.N), "deleted/pass")
}

// loadExpiredRows empties the table and fills it with reapRows rows that
// expired an hour ago, with COPY; one in reapAliveEvery sessions is also
// put in memcached, alive, with a newer version.
func loadExpiredRows(b *testing.B, conn *pgx.Conn, mc *memcache.Client, pass int) {
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "TRUNCATE hs_reap"); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	created := now.Add(-2 * time.Hour)
	dead := core.Entry{
		Codec: core.Msgpack.ID(), Created: created, Deadline: created.Add(24 * time.Hour), IdleTimeout: 30 * time.Minute,
		ActiveAt: now.Add(-time.Hour - 30*time.Minute), Version: 3, SyncedAt: now.Add(-time.Hour - 30*time.Minute), SyncedVersion: 3,
	}
	values := map[string]any{}
	for _, v := range newValues {
		values[v.key] = v.value
	}
	var err error
	if dead.Payload, err = core.Msgpack.Encode(values); err != nil {
		b.Fatal(err)
	}
	rowPayload := core.AppendEnvelope(nil, &dead)
	alive := dead
	alive.ActiveAt, alive.Version = now.Add(-time.Minute), 5
	alivePayload := core.AppendEnvelope(nil, &alive)
	expired := now.Add(-time.Hour)

	rows := make([][]any, reapRows)
	for i := range rows {
		key := core.StorageKey("reap-" + strconv.Itoa(pass) + "-" + strconv.Itoa(i))
		rows[i] = []any{key, rowPayload, int64(dead.Version), expired.UnixMilli() + int64(i), dead.Deadline.UnixMilli(), "",
			created.UnixMilli(), created.UnixMilli()}
		if i%reapAliveEvery == 0 {
			err := mc.Set(&memcache.Item{Key: "hs:" + key, Value: alivePayload, Expiration: int32((29 * time.Minute) / time.Second)})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	cols := []string{"key", "payload", "version", "expires_at", "deadline", "subject", "created_at", "updated_at"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"hs_reap"}, cols, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE hs_reap"); err != nil {
		b.Fatal(err)
	}
}
