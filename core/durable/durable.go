// Package durable is the contract between hybridsession's core and the database that keeps every session: the
// Tier interface, its row (Record) and the reaper's verdicts. The gormstore module implements it; core/durabletest
// is its conformance suite.
package durable

import (
	"context"
	"time"
)

// Record is one session's row. Payload is opaque to the tier: the sealed envelope memcached holds too, so a row
// read back refills memcached as it is. Times are kept to the millisecond, rounded down, and must round-trip
// exactly at that precision (gormstore stores Unix milliseconds).
type Record struct {
	Key     string // the storage key, 43 bytes: unpadded base64url SHA-256 of the token and its namespace
	Payload []byte // the sealed envelope: header and codec-encoded values
	// Version is 1 when the row is inserted and one more on every write, which is conditional on it (see Write).
	// It is a counter, never a clock, so clock skew orders nothing; it fits in an int64.
	Version uint64
	// ExpiresAt is when the row may be reaped: the session's last activity known to the row plus its idle timeout
	// plus the Store's SyncInterval, capped at Deadline. The reaper scans it; the Store never trusts it to decide
	// whether a session is alive (the sealed payload says).
	ExpiresAt time.Time
	// Deadline ends the session's absolute lifetime, never extended; a tombstone keeps its row until then.
	Deadline time.Time
	// Subject is the optional user id the session belongs to, for "log out everywhere" (core.Manager.DestroySubject);
	// empty when unset, at most 255 bytes of UTF-8 without NUL.
	Subject string
}

// Write is one conditional row write for Tier.Write. Record.Version must be Base+1.
type Write struct {
	Record
	// Base is the version of the row the write was built on: it applies only while the stored row's Version is
	// Base. Base 0 inserts Record only while no row is stored under Record.Key.
	Base uint64
}

// Verdict is a Judge's decision on one row. Record is the row to write when Action is Keep (same Key, Version the
// claimed row's Version+1), ignored otherwise.
type Verdict struct {
	Action Action
	Record Record
}

// Action is what Tier.Reap does with one claimed row.
type Action uint8

const (
	Delete Action = iota // delete the row: the session is dead
	Keep                 // replace the row with Verdict.Record: the session lives on
	Leave                // leave the row as it is for a later pass
)

// Judge decides what to do with each row of a batch of expired-looking rows: one Verdict per row, in batch's
// order. An error aborts the batch with no row of it changed. It must not call its Tier.
type Judge func(ctx context.Context, batch []Record) ([]Verdict, error)

// Tier is the database that keeps every session, so that losing memcached logs nobody out. gormstore implements
// it on GORM (SQLite, PostgreSQL, MySQL/MariaDB); every implementation must pass core/durabletest, whose Memory is
// an in-memory one for tests. All methods must be safe for concurrent use by many goroutines and by many
// processes sharing one database. A missing row is never an error.
type Tier interface {
	// Load returns the row stored under key, whatever its ExpiresAt and Deadline (the Store judges liveness from
	// the payload); found is false, with a nil error, when there is none.
	Load(ctx context.Context, key string) (rec Record, found bool, err error)

	// Write applies each write of batch whose condition holds (see Write) and reports, in batch's order, which
	// applied. Each write is atomic (check and store in one step), the batch need not be; its keys are distinct.
	// Use a small, fixed number of statements per batch, so the database's load grows with the number of
	// batches, not of sessions. On error no write may be reported applied (the caller may retry the batch).
	Write(ctx context.Context, batch []Write) (applied []bool, err error)

	// List returns up to limit (at least 1) rows with Key greater than after, in Key order, only those whose
	// Subject is subject when subject is not empty, expired rows and tombstones included (the Store filters
	// them). An empty result means the end. It serves iteration (scsstore's All), the devices page and "log out
	// everywhere", not the request path; an index on Subject keeps it cheap.
	List(ctx context.Context, subject, after string, limit int) ([]Record, error)

	// Reap claims up to limit rows whose ExpiresAt is not after now, oldest ExpiresAt first, calls judge once with
	// them and applies its verdicts, each only if the row's Version did not change since it was claimed (a racing
	// write stays). It returns how many rows it claimed; 0 means none was left to claim (or every one left is
	// claimed by another reaper).
	//
	// An error from judge aborts the batch with no row changed and is returned wrapped (errors.Is finds it). So
	// does a judge returning another number of verdicts than rows, or a kept Record with another Key or a Version
	// other than the claimed one's plus one. A limit below 1 is an error.
	//
	// Several reapers may run at once, in one process or many: no row may be handed to two judges at the same
	// time (row locks with SKIP LOCKED where the database has them), and none may deadlock.
	Reap(ctx context.Context, now time.Time, limit int, judge Judge) (claimed int, err error)
}
