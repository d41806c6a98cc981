// Package durable is the contract between hybridsession's core and the
// database that keeps every session: the Tier interface, the row it stores
// (Record) and the reaper's verdicts. The gormstore module implements it;
// core/durabletest is its conformance suite.
package durable

import (
	"context"
	"time"
)

// Record is one session as the durable tier stores it: one row per session.
//
// The durable tier treats Payload as opaque bytes: it is the sealed envelope
// that memcached holds too, so a row read back can refill memcached as it is.
// Times are kept to the millisecond, rounded down: implementations must
// round-trip them exactly at that precision (gormstore stores them as Unix
// milliseconds).
type Record struct {
	// Key is the storage key: the unpadded base64url SHA-256 of the session
	// token and its namespace, 43 bytes. The raw token is never stored.
	Key string
	// Payload is the sealed envelope: header and codec-encoded values.
	Payload []byte
	// Version is the row's version: 1 when the row is inserted, one more on
	// every write. Every write is conditional on it (see Write); it is a
	// counter, never a clock, so clock skew orders nothing. It fits in an
	// int64.
	Version uint64
	// ExpiresAt is when the row may be reaped: the session's last activity
	// known to the row plus its idle timeout plus the Store's SyncInterval,
	// capped at Deadline. The reaper scans this column; the Store never
	// trusts it to decide whether a session is alive (the sealed payload
	// says).
	ExpiresAt time.Time
	// Deadline is the end of the session's absolute lifetime; it is never
	// extended. A tombstone (a destroyed session) keeps its row until then.
	Deadline time.Time
	// Subject is the optional user id the session belongs to, for "log out
	// everywhere" (core.Manager.DestroySubject). Empty when unset. At most 255
	// bytes of UTF-8 without NUL.
	Subject string
}

// Write is one conditional row write, as Tier.Write takes it.
type Write struct {
	// Record is the row to store. Record.Version must be Base+1.
	Record
	// Base is the version of the row this write was built on: the write
	// applies only while the stored row's Version is Base. Base 0 means the
	// write was built on no row: it inserts Record only while no row is
	// stored under Record.Key (insert-if-absent).
	Base uint64
}

// Verdict is the reaper's decision on one row of a batch handed to the judge
// function of Tier.Reap.
type Verdict struct {
	// Action says what to do with the row.
	Action Action
	// Record is the row to write when Action is Keep (same Key, Version
	// the claimed row's Version+1); ignored otherwise.
	Record Record
}

// Action is what Tier.Reap does with one claimed row.
type Action uint8

const (
	// Delete deletes the row (the session is dead).
	Delete Action = iota
	// Keep replaces the row with Verdict.Record (the session lives on).
	Keep
	// Leave leaves the row as it is, for a later pass.
	Leave
)

// Judge decides, for each row of a batch of expired-looking rows, what
// to do with it. It returns one Verdict per row, in the order of batch. An
// error aborts the batch: no row of it is changed. It must not call the
// Tier that called it.
type Judge func(ctx context.Context, batch []Record) ([]Verdict, error)

// Tier is the durable tier: the database that keeps every session so that
// losing memcached logs nobody out. The gormstore module implements it on GORM
// (SQLite, PostgreSQL, MySQL/MariaDB); core/durabletest is the conformance
// suite every implementation must pass, and its Memory type is an in-memory
// implementation for tests.
//
// All methods must be safe for concurrent use by many goroutines and by many
// processes sharing one database. A missing row is never an error.
type Tier interface {
	// Load returns the row stored under key, whatever its ExpiresAt and
	// Deadline: the Store judges liveness from the sealed payload. found is
	// false, with a nil error, when there is no row.
	Load(ctx context.Context, key string) (rec Record, found bool, err error)

	// Write applies each write of batch whose condition holds (see Write)
	// and reports, in batch's order, which applied. Each write is atomic on
	// its own (check and store in one step); the batch as a whole need not
	// be. The keys of one batch are distinct. An implementation uses a
	// small, fixed number of statements per batch however long it is, so
	// that the background writer's load on the database grows with the
	// number of batches, not of sessions. On error no write may be reported
	// applied, and the caller may retry the whole batch.
	Write(ctx context.Context, batch []Write) (applied []bool, err error)

	// List returns up to limit (at least 1) rows with Key greater than
	// after, in Key order — only those whose Subject is subject when
	// subject is not empty. Rows of every state are returned (expired rows
	// and tombstones included): the Store filters them. An empty result
	// means the end. It serves iteration (scsstore's All), the devices page
	// and "log out everywhere", not the request path: an index on Subject
	// keeps the subject listing cheap.
	List(ctx context.Context, subject, after string, limit int) ([]Record, error)

	// Reap claims up to limit rows whose ExpiresAt is not after now, oldest
	// ExpiresAt first, calls judge once with them and applies its verdicts,
	// each only if the row's Version did not change since it was claimed (a
	// write that raced in stays). It returns how many rows it claimed; 0
	// means no expired row was left to claim (or every one left is claimed
	// by another reaper).
	//
	// An error from judge aborts the batch with no row changed and is
	// returned wrapped (errors.Is finds it). So does a judge that returns a
	// different number of verdicts than rows, or a kept Record with another
	// Key or a Version other than the claimed one's plus one. A limit below
	// 1 is an error.
	//
	// Several reapers may run at once, in one process or many: no row may be
	// handed to two judges at the same time (row locks with SKIP LOCKED where
	// the database has them), and none may deadlock.
	Reap(ctx context.Context, now time.Time, limit int, judge Judge) (claimed int, err error)
}
