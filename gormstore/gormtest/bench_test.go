package gormtest_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/gormstore"
)

// benchRow is a row of the sessions table for bulk inserts in benchmarks.
type benchRow struct {
	Key       string `gorm:"column:key"`
	Payload   []byte `gorm:"column:payload"`
	Version   int64  `gorm:"column:version"`
	ExpiresAt int64  `gorm:"column:expires_at"`
	Deadline  int64  `gorm:"column:deadline"`
	Subject   string `gorm:"column:subject"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

// BenchmarkReap measures Reap with batches of 500 rows, all judged dead
// (the judge itself costs nothing here). Each iteration is one batch; the
// rows/s metric is what the target (50,000/s on PostgreSQL) refers to.
func BenchmarkReap(b *testing.B) {
	const batch = 500
	for _, d := range databases {
		b.Run(d.name, func(b *testing.B) {
			db := d.open(b)
			s, table := newStore(b, db)
			ctx := context.Background()
			now := time.Now()
			payload := make([]byte, 200)
			rows := make([]benchRow, batch)
			seq := 0
			var reapTime time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for i := range rows {
					seq++
					rows[i] = benchRow{Key: durabletest.Key(fmt.Sprint(seq)), Payload: payload, Version: 1,
						ExpiresAt: now.Add(-time.Hour).UnixMilli() + int64(seq), Deadline: now.Add(time.Hour).UnixMilli()}
				}
				if err := db.Table(table).CreateInBatches(rows, batch).Error; err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				n, err := s.Reap(ctx, now, batch, func(_ context.Context, recs []durable.Record) ([]durable.Verdict, error) {
					return make([]durable.Verdict, len(recs)), nil
				})
				reapTime += time.Since(start)
				if err != nil || n != batch {
					b.Fatalf("Reap = %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/reapTime.Seconds(), "rows/s")
		})
	}
}

// BenchmarkWrite measures Write of batches of 100 rows from parallel
// goroutines, each writing its own rows on their stored version (the first
// batch inserts them); on SQLite with one and with four connections, to
// compare the pool sizes sqlite.Open could use. The rows/s metric counts
// rows written. BenchmarkLoad measures parallel reads.
func BenchmarkWrite(b *testing.B) {
	const batch = 100
	forEachSetup(b, func(b *testing.B, s *gormstore.Store) {
		var goroutines atomic.Uint64
		now := time.Now()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			g := goroutines.Add(1)
			ws := make([]durable.Write, batch)
			for i := range ws {
				ws[i].Record = durable.Record{Key: durabletest.Key(fmt.Sprint(g, "-", i)), Payload: make([]byte, 200), Version: 1,
					ExpiresAt: now.Add(time.Hour), Deadline: now.Add(2 * time.Hour)}
			}
			for pb.Next() {
				applied, err := s.Write(context.Background(), ws)
				if err != nil || slices.Contains(applied, false) {
					b.Error(applied, err)
					return
				}
				for i := range ws {
					ws[i].Base = ws[i].Version
					ws[i].Version++
				}
			}
		})
		b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "rows/s")
	})
}

func BenchmarkLoad(b *testing.B) {
	forEachSetup(b, func(b *testing.B, s *gormstore.Store) {
		now := time.Now()
		ws := make([]durable.Write, 1000)
		for i := range ws {
			ws[i].Record = durable.Record{Key: durabletest.Key(fmt.Sprint(i)), Payload: make([]byte, 200), Version: 1,
				ExpiresAt: now.Add(time.Hour), Deadline: now.Add(2 * time.Hour)}
		}
		if _, err := s.Write(context.Background(), ws); err != nil {
			b.Fatal(err)
		}
		var i atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, found, err := s.Load(context.Background(), durabletest.Key(fmt.Sprint(i.Add(1)%1000)))
				if err != nil || !found {
					b.Error(found, err)
					return
				}
			}
		})
	})
}

func forEachSetup(b *testing.B, fn func(b *testing.B, s *gormstore.Store)) {
	setups := []struct {
		name  string
		open  func(b testing.TB) *gorm.DB
		conns int
	}{
		{"sqlite-1conn", openSQLite, 1},
		{"sqlite-4conns", openSQLite, 4},
		{"postgres", databases[1].open, 0},
		{"mysql", databases[2].open, 0},
	}
	for _, setup := range setups {
		b.Run(setup.name, func(b *testing.B) {
			db := setup.open(b)
			if setup.conns > 0 {
				sqlDB, _ := db.DB()
				sqlDB.SetMaxOpenConns(setup.conns)
			}
			s, _ := newStore(b, db)
			fn(b, s)
		})
	}
}
