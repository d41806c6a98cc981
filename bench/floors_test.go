package bench

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
)

// floorValueSize is the size of the values the floors move: about the size
// of one of our envelopes holding the benchmark's session values.
const floorValueSize = 128

// BenchmarkFloor is what the session work cannot go below: bare gomemcache
// and pgx operations on the same servers, with no session library.
//
//	memcached-get       one Get
//	memcached-set       one Set
//	memcached-get+cas   one Get, then CompareAndSwap of the item read
//	memcached-parallel16  16 clients, 9 Gets to 1 Get+CompareAndSwap (req/s)
//	postgres-select     one SELECT by primary key (pgx, cached statement)
//	postgres-upsert     one INSERT ... ON CONFLICT DO UPDATE (pgx)
func BenchmarkFloor(b *testing.B) {
	mc := startMemcached(b)
	value := make([]byte, floorValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var trips atomic.Int64
	client := newMemcacheClient(mc.Addr, &trips)
	const keys = 1000
	key := func(i int) string { return "floor:" + strconv.Itoa(i%keys) }
	for i := range keys {
		if err := client.Set(&memcache.Item{Key: key(i), Value: value, Expiration: 3600}); err != nil {
			b.Fatal(err)
		}
	}
	perOp := func(b *testing.B, t0 int64) {
		b.ReportMetric(float64(trips.Load()-t0)/float64(b.N), "mc-rt/op")
	}

	b.Run("memcached-get", func(b *testing.B) {
		t0, cpu0 := trips.Load(), cpuTime()
		b.ReportAllocs()
		for i := range b.N {
			if _, err := client.Get(key(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, cpuTime()-cpu0)
		perOp(b, t0)
	})
	b.Run("memcached-set", func(b *testing.B) {
		t0, cpu0 := trips.Load(), cpuTime()
		b.ReportAllocs()
		for i := range b.N {
			if err := client.Set(&memcache.Item{Key: key(i), Value: value, Expiration: 3600}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, cpuTime()-cpu0)
		perOp(b, t0)
	})
	b.Run("memcached-get+cas", func(b *testing.B) {
		t0, cpu0 := trips.Load(), cpuTime()
		b.ReportAllocs()
		for i := range b.N {
			if err := getCAS(client, key(i), value); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, cpuTime()-cpu0)
		perOp(b, t0)
	})
	b.Run("memcached-parallel16", func(b *testing.B) {
		t0, cpu0 := trips.Load(), cpuTime()
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for g := range parallelClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; next.Add(1) <= int64(b.N); j++ {
					k := key(g)
					var err error
					if j%10 == 9 {
						err = getCAS(client, k, value)
					} else {
						_, err = client.Get(k)
					}
					if err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d operations failed", n)
		}
		reportCPU(b, cpuTime()-cpu0)
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		perOp(b, t0)
	})

	if !havePostgres() {
		return
	}
	ctx := context.Background()
	counter := new(sqlCounter)
	cfg, err := pgx.ParseConfig(postgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Tracer = counter
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS floor_sessions (
		key text COLLATE "C" PRIMARY KEY, payload bytea NOT NULL, version bigint NOT NULL, expires_at bigint NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	const upsert = `INSERT INTO floor_sessions (key, payload, version, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (key) DO UPDATE SET payload = excluded.payload, version = excluded.version, expires_at = excluded.expires_at
		WHERE floor_sessions.version < excluded.version`
	var version atomic.Int64
	for i := range keys {
		if _, err := conn.Exec(ctx, upsert, key(i), value, version.Add(1), time.Now().UnixMilli()); err != nil {
			b.Fatal(err)
		}
	}
	perStmt := func(b *testing.B, s0 int64) {
		b.ReportMetric(float64(counter.stmts.Load()-s0)/float64(b.N), "sql/op")
	}
	b.Run("postgres-select", func(b *testing.B) {
		s0, cpu0 := counter.stmts.Load(), cpuTime()
		b.ReportAllocs()
		var payload []byte
		var v, exp int64
		for i := range b.N {
			err := conn.QueryRow(ctx, `SELECT payload, version, expires_at FROM floor_sessions WHERE key = $1 AND expires_at > $2`,
				key(i), int64(0)).Scan(&payload, &v, &exp)
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, cpuTime()-cpu0)
		perStmt(b, s0)
	})
	b.Run("postgres-upsert", func(b *testing.B) {
		s0, cpu0 := counter.stmts.Load(), cpuTime()
		b.ReportAllocs()
		for i := range b.N {
			if _, err := conn.Exec(ctx, upsert, key(i), value, version.Add(1), time.Now().UnixMilli()); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, cpuTime()-cpu0)
		perStmt(b, s0)
	})
}

// getCAS reads key and writes value over it with compare-and-swap.
func getCAS(c *memcache.Client, key string, value []byte) error {
	it, err := c.Get(key)
	if err != nil {
		return err
	}
	it.Value = value
	return c.CompareAndSwap(it)
}
