package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

// Open a database and put gormstore's Store, the durable tier, on it: the
// versioned writes, loads and reaping that core.Store drives.
func ExampleOpen() {
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
	rec := durable.Record{
		Key:       "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg", // a hashed token
		Payload:   []byte("envelope bytes"),
		Version:   1,
		ExpiresAt: now.Add(30 * time.Minute),
		Deadline:  now.Add(24 * time.Hour),
	}
	applied, err := store.Write(ctx, []durable.Write{{Record: rec}}) // Base 0: insert
	fmt.Println("inserted:", applied, err)

	// Two servers write the session, both built on version 1: the first
	// write applies, the second finds version 2 stored and is refused.
	next := rec
	next.Version, next.Payload = 2, []byte("new envelope bytes")
	for range 2 {
		applied, err = store.Write(ctx, []durable.Write{{Record: next, Base: 1}})
		fmt.Println("written on version 1:", applied, err)
	}

	got, found, err := store.Load(ctx, rec.Key)
	fmt.Printf("loaded: %v %q version %d %v\n", found, got.Payload, got.Version, err)

	// An hour later the row has expired; the reaper asks the judge (in core,
	// memcached) what became of the session.
	claimed, err := store.Reap(ctx, now.Add(time.Hour), 500,
		func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
			return make([]durable.Verdict, len(batch)), nil // all dead: durable.Delete
		})
	fmt.Println("reaped:", claimed, err)

	// Output:
	// inserted: [true] <nil>
	// written on version 1: [true] <nil>
	// written on version 1: [false] <nil>
	// loaded: true "new envelope bytes" version 2 <nil>
	// reaped: 1 <nil>
}
