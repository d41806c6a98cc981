// Package gormstore is hybridsession's durable tier on GORM: a
// core.Durable that keeps every session in one table of a PostgreSQL,
// MySQL/MariaDB or SQLite database, so that losing memcached logs nobody
// out.
//
// Open the database with the sub-package of its kind — each links only its
// own driver: gormstore/sqlite (pure Go, no cgo), gormstore/postgres (pgx)
// or gormstore/mysql (go-sql-driver/mysql) — or with gorm.Open as usual.
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
//	version     bigint: core.Record.Version (a uint64) as an int64; versions
//	            above math.MaxInt64 are refused with ErrInvalidRecord
//	expires_at  bigint, Unix milliseconds, indexed: what the reaper scans
//	deadline    bigint, Unix milliseconds
//	subject     varchar(255) (varbinary(255) on MySQL), '' when unset,
//	            indexed: for DeleteSubject and ListSubject
//	created_at  bigint, Unix milliseconds of the first insert (application
//	            server clock)
//	updated_at  bigint, Unix milliseconds of the last applied write
//
// Times are stored as whole milliseconds, rounded down, so comparisons are
// exact and identical on all three databases; they come back in UTC. The
// Store compares them with the "now" its callers pass, never with the
// database server's clock.
//
// # Concurrency
//
// Save is one conditional upsert, so an older copy never overwrites a newer
// one whichever server writes, nor does a copy overwrite a row holding a
// change it was not built on (core.Record.Base). Reap locks the rows it
// claims (FOR UPDATE SKIP LOCKED on PostgreSQL and MySQL; SQLite's database
// write lock) until its verdicts are applied, so several reapers, in one
// process or many, never judge the same row and never wait for each other
// on PostgreSQL and MySQL. See Store.Reap for the statements of a batch.
//
// MySQL needs 8.0 or later and MariaDB 10.6 or later (SKIP LOCKED). With
// go-sql-driver/mysql, interpolateParams=true saves the prepare and close
// round trips of every statement.
package gormstore
