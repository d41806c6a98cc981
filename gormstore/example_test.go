package gormstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

func Example() {
	dir, err := os.MkdirTemp("", "gormstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := sqlite.Open(filepath.Join(dir, "sessions.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		sqlDB, _ := db.DB()
		sqlDB.Close() // the Store never closes the database
	}()
	store, err := gormstore.New(db, gormstore.Config{})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	now := time.Now()
	rec := core.Record{
		Key:       "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg", // a hashed token
		Payload:   []byte("envelope bytes"),
		Version:   2,
		ExpiresAt: now.Add(30 * time.Minute),
		Deadline:  now.Add(24 * time.Hour),
		Subject:   "user-42",
	}
	applied, err := store.Save(ctx, rec)
	fmt.Println("saved:", applied, err)

	stale := rec
	stale.Version = 1 // an older copy from another server
	applied, err = store.Save(ctx, stale)
	fmt.Println("stale copy saved:", applied, err)

	got, found, err := store.Load(ctx, rec.Key, now)
	fmt.Printf("loaded: %v %q version %d %v\n", found, got.Payload, got.Version, err)

	// An hour later the row has expired; the reaper asks the judge (in core,
	// memcached) whether the session is still alive.
	examined, err := store.Reap(ctx, now.Add(time.Hour), 500,
		func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
			return make([]core.Verdict, len(batch)), nil // all dead
		})
	fmt.Println("reaped:", examined, err)

	_, found, err = store.Load(ctx, rec.Key, now)
	fmt.Println("found after reaping:", found, err)

	// Output:
	// saved: true <nil>
	// stale copy saved: false <nil>
	// loaded: true "envelope bytes" version 2 <nil>
	// reaped: 1 <nil>
	// found after reaping: false <nil>
}
