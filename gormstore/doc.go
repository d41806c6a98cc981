// Package gormstore is hybridsession's durable tier on GORM: a
// durable.Tier that keeps every session in one table of a PostgreSQL,
// MySQL/MariaDB or SQLite database, so that losing memcached logs nobody
// out.
//
// Open the database with the sub-package of its kind — each links only its
// own driver: gormstore/sqlite (pure Go, no cgo; a module of its own, since
// its driver needs a newer Go than the rest), gormstore/postgres (pgx) or
// gormstore/mysql (go-sql-driver/mysql) — or with gorm.Open as usual.
// The smallest complete use, with the embedded SQLite default:
//
//	db, err := sqlite.Open("sessions.db")
//	if err != nil {
//		return err
//	}
//	defer func() { sqlDB, _ := db.DB(); sqlDB.Close() }()
//	durable, err := gormstore.New(db, gormstore.Config{})
//	if err != nil {
//		return err
//	}
//	// Give durable to core as the durable tier.
//
// sqlite.Start does all of that and builds the core Store and Manager in
// one call. The Store never closes a database it is given.
//
// # Table
//
// New creates the table (default "hybrid_sessions", see Config) with GORM's
// AutoMigrate:
//
//	key         primary key; varchar(64) COLLATE "C" (PostgreSQL),
//	            varbinary(64) (MySQL), text (SQLite): byte-wise, so keys that
//	            differ only in case are distinct and List's order is Go's
//	            string order
//	payload     bytea / longblob / blob: the envelope, opaque here
//	version     bigint: durable.Record.Version (a uint64) as an int64; versions
//	            above math.MaxInt64 are refused with ErrInvalidRecord
//	expires_at  bigint, Unix milliseconds, indexed: what the reaper scans
//	deadline    bigint, Unix milliseconds
//	subject     varchar(255) (varbinary(255) on MySQL), '' when unset,
//	            indexed: for List by subject
//	created_at  bigint, Unix milliseconds of the first insert (application
//	            server clock)
//	updated_at  bigint, Unix milliseconds of the last applied write
//
// Times are stored as whole milliseconds, rounded down, so comparisons are
// exact and identical on all three databases; they come back in UTC. Only
// Reap compares them, with the "now" its caller passes, never with the
// database server's clock: Load and List return rows whatever their times.
//
// # Concurrency
//
// Every write is conditional on the row it was built on: a Write with Base
// 0 inserts only while no row is stored under its key, any other only
// while the stored row's version is its Base. Of several servers writing
// one session on the same version, exactly one succeeds, whichever they
// are; the others learn that their copy is stale. A batch of writes takes a
// fixed number of statements, whatever its length on PostgreSQL and per 500
// rows on SQLite and MySQL (see Store.Write).
//
// Reap locks the rows it claims (FOR UPDATE SKIP LOCKED on PostgreSQL and
// MySQL; SQLite's database write lock) until its verdicts are applied, so
// several reapers, in one process or many, never judge the same row and
// never wait for each other on PostgreSQL and MySQL; a Write of a claimed
// row waits for the verdict. See Store.Reap for the statements of a batch.
//
// MySQL needs 8.0 or later and MariaDB 10.6 or later (SKIP LOCKED). With
// go-sql-driver/mysql, interpolateParams=true saves the prepare and close
// round trips of every statement.
package gormstore
