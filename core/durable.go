package core

import (
	"context"
	"time"
)

// Record is one session as the durable tier stores it: one row per session.
//
// The durable tier treats Payload as opaque bytes; it is the same versioned
// envelope that memcached holds (see Entry), so a row read back can refill
// memcached as it is. Times are kept to the millisecond, rounded down:
// implementations must round-trip them exactly at that precision (gormstore
// stores them as Unix milliseconds). Versions fit in an int64.
type Record struct {
	// Key is the storage key: the base64url SHA-256 of the session token,
	// 43 bytes. The raw token is never stored.
	Key string
	// Payload is the encoded envelope (header and codec-encoded values).
	Payload []byte
	// Version increases by one on every change of the session's values.
	// Saves are conditional on it, so an older copy never overwrites a newer one.
	Version uint64
	// ExpiresAt is when the row may be reaped: never before the session's true
	// expiry (see Store for how it is chosen). The reaper scans this column.
	ExpiresAt time.Time
	// Deadline is the end of the session's absolute lifetime; it is never extended.
	Deadline time.Time
	// Subject is the optional user id the session belongs to, for
	// "log out everywhere" (Manager.DestroySubject). Empty when unset.
	Subject string

	// Base, UnsyncedFrom and UnsyncedTo make a save conditional on the row
	// the write was built on, not only on being newer (docs/consistency.md,
	// I4 and I5). Base is the row version the writer's copy was read from,
	// or whose sync the database confirmed. UnsyncedFrom..UnsyncedTo
	// (inclusive; empty when UnsyncedFrom is 0) holds the versions of the
	// copy's own changes since then, which may have reached the row by
	// another path (the reaper, or a write around a memcached node that had
	// taken it after all). A row whose version is above Base and outside
	// that range holds a change the copy never saw, and Save leaves it in
	// place; the Store then tells a fork (a change written around the
	// copy's node) from a newer copy of its own. Base 0 turns the check off
	// (a new session, a tombstone, a row's own copy moved ahead). None of
	// the three is stored.
	Base         uint64
	UnsyncedFrom uint64
	UnsyncedTo   uint64
}

// Verdict is the reaper's decision on one row of a batch handed to the judge
// function of Durable.Reap.
type Verdict struct {
	// Keep is true when the session is still alive: the row is replaced by
	// Record (same Key, newer payload, version and ExpiresAt). When false the
	// row is deleted.
	Keep bool
	// Record is the row to write when Keep is true; ignored otherwise.
	Record Record
}

// ReapJudge decides, for each row of a batch of expired-looking rows, whether
// the session is still alive. It returns one Verdict per row, in the order of
// batch. An error aborts the batch: no row of it is changed.
type ReapJudge func(ctx context.Context, batch []Record) ([]Verdict, error)

// Durable is the durable tier: the database that keeps every session so that
// losing memcached logs nobody out. The gormstore module implements it on GORM
// (SQLite, PostgreSQL, MySQL/MariaDB); core/durabletest is the conformance
// suite every implementation must pass.
//
// All methods must be safe for concurrent use by many goroutines and by many
// processes sharing one database. A missing row is never an error.
type Durable interface {
	// Load returns the row for key. found is false, with a nil error, when
	// there is no row or its ExpiresAt or Deadline is not after now.
	Load(ctx context.Context, key string, now time.Time) (rec Record, found bool, err error)

	// Save inserts rec, or replaces the stored row for rec.Key when the stored
	// row is older — stored.Version < rec.Version, or the versions are equal
	// and stored.ExpiresAt <= rec.ExpiresAt — and, when rec.Base is not 0, is
	// one rec was built on: stored.Version <= rec.Base, or rec.UnsyncedFrom
	// <= stored.Version <= rec.UnsyncedTo. applied reports whether rec was
	// written; a false applied with a nil error means a newer copy is
	// stored, or one rec was not built on (the caller tells them apart by
	// loading the row). The check and the write are one atomic step.
	Save(ctx context.Context, rec Record) (applied bool, err error)

	// Delete removes the rows for keys. Keys without a row are ignored.
	Delete(ctx context.Context, keys ...string) error

	// DeleteSubject removes every row whose Subject is subject and returns
	// their keys, so the caller can drop them from memcached too.
	// An empty subject deletes nothing.
	DeleteSubject(ctx context.Context, subject string) (keys []string, err error)

	// ListSubject returns up to limit (at least 1) live rows (ExpiresAt and
	// Deadline after now) whose Subject is subject, in Key order; none for
	// an empty subject. It serves the devices page (Manager.Sessions), not
	// the request path: an index on Subject keeps it cheap.
	ListSubject(ctx context.Context, subject string, now time.Time, limit int) ([]Record, error)

	// List returns up to limit (at least 1) live rows (ExpiresAt and Deadline after now)
	// with Key greater than after, in Key order. An empty result means the
	// end. It serves iteration (scs's All), not the request path.
	List(ctx context.Context, now time.Time, after string, limit int) ([]Record, error)

	// Reap claims up to limit rows whose ExpiresAt is not after now, oldest
	// ExpiresAt first, calls judge once with them and applies its verdicts:
	// kept rows are replaced by the verdict's Record and the others deleted
	// — both only if the row did not change since it was claimed (a
	// different Version or ExpiresAt means a sync raced in, and the newer
	// copy stays). It returns how many rows it examined; 0 means no expired
	// row was left to claim (or every one left is claimed by another reaper).
	//
	// An error from judge aborts the batch with no row changed and is
	// returned wrapped (errors.Is finds it). So does a judge that returns a
	// different number of verdicts than rows, or a kept Record with another
	// Key. A limit below 1 is an error.
	//
	// Several reapers may run at once, in one process or many: no row may be
	// handed to two judges at the same time (row locks with SKIP LOCKED where
	// the database has them), and none may deadlock.
	Reap(ctx context.Context, now time.Time, limit int, judge ReapJudge) (examined int, err error)
}
