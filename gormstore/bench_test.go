package gormstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
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
				n, err := s.Reap(ctx, now, batch, func(_ context.Context, recs []core.Record) ([]core.Verdict, error) {
					return make([]core.Verdict, len(recs)), nil
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

// BenchmarkSave measures Save of existing rows (new versions) from parallel
// goroutines, and BenchmarkLoad reads; on SQLite with one and with four
// connections, to compare the pool sizes OpenSQLite could use.
func BenchmarkSave(b *testing.B) {
	forEachSetup(b, func(b *testing.B, s *gormstore.Store) {
		var version atomic.Uint64
		now := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				v := version.Add(1)
				r := core.Record{Key: durabletest.Key(fmt.Sprint(v % 1000)), Payload: make([]byte, 200), Version: v,
					ExpiresAt: now.Add(time.Hour), Deadline: now.Add(2 * time.Hour)}
				if _, err := s.Save(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkLoad(b *testing.B) {
	forEachSetup(b, func(b *testing.B, s *gormstore.Store) {
		now := time.Now()
		for i := range 1000 {
			r := core.Record{Key: durabletest.Key(fmt.Sprint(i)), Payload: make([]byte, 200), Version: 1,
				ExpiresAt: now.Add(time.Hour), Deadline: now.Add(2 * time.Hour)}
			if _, err := s.Save(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
		var i atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, found, err := s.Load(context.Background(), durabletest.Key(fmt.Sprint(i.Add(1)%1000)), now)
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
