package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"gorm.io/gorm"
)

// writeChunk is the most rows one statement of Write or Reap carries on
// SQLite and MySQL: at most 8 parameters a row, well under SQLite's 32766
// and MySQL's 65535. PostgreSQL takes arrays and needs no chunks.
const writeChunk = 500

// mysqlAttempts is how many times Write runs its MySQL transaction when a
// concurrent insert of one of its keys makes it start over.
const mysqlAttempts = 5

// errInsertRaced reports, within Write on MySQL, that another transaction
// inserted a key between the read of the batch's rows and their insert.
var errInsertRaced = errors.New("gormstore: a concurrent insert took a key of the batch")

// Write applies each write of batch whose condition holds: a write with
// Base 0 inserts its Record when no row is stored under its Key; any other
// write replaces the row stored under its Key, all columns but created_at,
// when that row's Version is Base. It reports, in batch's order, which
// applied. Times are stored in whole milliseconds, rounded down.
//
// The whole batch is atomic. Its statements do not grow in number with its
// length, only in size, on PostgreSQL, and only per 500 rows on the others:
//
//   - PostgreSQL: one statement. A data-modifying WITH runs an UPDATE ...
//     FROM unnest() of array parameters, conditional on each row's version,
//     and an INSERT ... SELECT FROM unnest() ... ON CONFLICT DO NOTHING;
//     both return the keys they wrote.
//   - SQLite: in one transaction, an UPDATE ... FROM a VALUES list ...
//     RETURNING key, and an INSERT ... ON CONFLICT DO NOTHING RETURNING
//     key, per 500 rows. SQLite's database lock serialises writers.
//   - MySQL/MariaDB, which cannot return the rows an UPDATE changed: in a
//     READ COMMITTED transaction, a SELECT ... FOR UPDATE of the batch's
//     keys; then, per 500 rows, a multi-table UPDATE of the rows at their
//     Base and an INSERT IGNORE of the keys that were absent. When a
//     concurrent insert took one of those keys (the INSERT counts fewer
//     rows), the transaction is rolled back and run again, up to 5 times.
//
// The rows are locked in Key order (PostgreSQL's plan, a nested loop over
// the arrays, follows their order, which is Key order), so that concurrent
// batches over the same keys wait for each other instead of deadlocking.
//
// Write returns an error wrapping ErrInvalidRecord, without writing, when
// a Record cannot be stored (see ErrInvalidRecord), when its Version is not
// Base+1, or when batch repeats a key. On any error no write is reported
// applied, and none applied unless the connection failed while the
// database committed them.
func (s *Store) Write(ctx context.Context, batch []durable.Write) (applied []bool, err error) {
	order, err := checkBatch(batch)
	if err != nil {
		return nil, err
	}
	applied = make([]bool, len(batch))
	if len(batch) == 0 {
		return applied, nil
	}
	switch s.q.d {
	case dialectPostgres:
		err = s.writePostgres(ctx, batch, order, applied)
	case dialectSQLite:
		err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			return s.writeSQLite(tx, batch, order, applied)
		})
	default:
		err = s.writeMySQL(ctx, batch, order, applied)
	}
	if err != nil {
		return nil, fmt.Errorf("gormstore: write: %w", err)
	}
	return applied, nil
}

// checkBatch checks every write of batch (see Write) and returns the
// indexes of batch in Key order.
func checkBatch(batch []durable.Write) (order []int, err error) {
	order = make([]int, len(batch))
	for i := range batch {
		w := &batch[i]
		if err := checkRecord(&w.Record); err != nil {
			return nil, fmt.Errorf("%w (write %d)", err, i)
		}
		if w.Version != w.Base+1 {
			return nil, errorf(ErrInvalidRecord, "write %d: version %d on base %d, want base+1", i, w.Version, w.Base)
		}
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return strings.Compare(batch[i].Key, batch[j].Key) })
	for n := 1; n < len(order); n++ {
		if k := batch[order[n]].Key; k == batch[order[n-1]].Key {
			return nil, errorf(ErrInvalidRecord, "key %q repeated in the batch", k)
		}
	}
	return order, nil
}

// split returns the writes of batch that insert and those that update, in
// the given order.
func split(batch []durable.Write, order []int) (inserts, updates []durable.Write) {
	for _, i := range order {
		if batch[i].Base == 0 {
			inserts = append(inserts, batch[i])
		} else {
			updates = append(updates, batch[i])
		}
	}
	return inserts, updates
}

// markApplied returns a function that sets the flags of the writes of
// batch under the keys it is given.
func markApplied(batch []durable.Write, applied []bool) func(keys []string) {
	index := make(map[string]int, len(batch))
	for i := range batch {
		index[batch[i].Key] = i
	}
	return func(keys []string) {
		for _, k := range keys {
			if i, ok := index[k]; ok {
				applied[i] = true
			}
		}
	}
}

// writePostgres runs Write's single statement on PostgreSQL.
func (s *Store) writePostgres(ctx context.Context, batch []durable.Write, order []int, applied []bool) error {
	inserts, updates := split(batch, order)
	var upd, ins pgColumns
	upd.add(updates)
	ins.add(inserts)
	nowMs := time.Now().UnixMilli()
	args := append([]any{nowMs}, upd.args(true)...)
	args = append(args, nowMs, nowMs)
	args = append(args, ins.args(false)...)
	rows, err := s.db.WithContext(ctx).Raw(s.q.write, args...).Rows()
	if err != nil {
		return err
	}
	keys, err := scanKeys(rows)
	if err != nil {
		return err
	}
	markApplied(batch, applied)(keys)
	return nil
}

// writeSQLite runs Write's statements on SQLite, in transaction tx.
func (s *Store) writeSQLite(tx *gorm.DB, batch []durable.Write, order []int, applied []bool) error {
	inserts, updates := split(batch, order)
	nowMs := time.Now().UnixMilli()
	mark := markApplied(batch, applied)
	run := func(query string, args []any) error {
		rows, err := tx.Raw(query, args...).Rows()
		if err != nil {
			return err
		}
		keys, err := scanKeys(rows)
		if err != nil {
			return err
		}
		mark(keys)
		return nil
	}
	err := chunks(updates, func(c []durable.Write) error {
		return run(s.q.updateN(len(c))+" RETURNING "+s.q.key, updateArgs(c, nowMs))
	})
	if err != nil {
		return err
	}
	return chunks(inserts, func(c []durable.Write) error {
		return run(s.q.insertN(len(c)), insertArgs(c, nowMs))
	})
}

// writeMySQL runs Write's transaction on MySQL, again while a concurrent
// insert makes it start over.
func (s *Store) writeMySQL(ctx context.Context, batch []durable.Write, order []int, applied []bool) error {
	var err error
	for range mysqlAttempts {
		clear(applied)
		err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			return s.writeMySQLTx(tx, batch, order, applied)
		}, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if !errors.Is(err, errInsertRaced) {
			return err
		}
	}
	return fmt.Errorf("%w, %d times", err, mysqlAttempts)
}

// writeMySQLTx locks the stored rows of the batch's keys, decides which
// writes apply, and writes them, in transaction tx.
func (s *Store) writeMySQLTx(tx *gorm.DB, batch []durable.Write, order []int, applied []bool) error {
	stored, err := s.lockVersions(tx, batch, order)
	if err != nil {
		return err
	}
	var inserts, updates []durable.Write
	for _, i := range order {
		w := &batch[i]
		v, ok := stored[w.Key]
		switch {
		case w.Base == 0 && !ok:
			inserts = append(inserts, *w)
		case w.Base != 0 && ok && v == int64(w.Base):
			updates = append(updates, *w)
		default:
			continue
		}
		applied[i] = true
	}
	nowMs := time.Now().UnixMilli()
	err = chunks(updates, func(c []durable.Write) error {
		res := tx.Exec(s.q.updateN(len(c)), updateArgs(c, nowMs)...)
		if res.Error == nil && res.RowsAffected != int64(len(c)) {
			return fmt.Errorf("%d of %d locked rows updated", res.RowsAffected, len(c))
		}
		return res.Error
	})
	if err != nil {
		return err
	}
	return chunks(inserts, func(c []durable.Write) error {
		res := tx.Exec(s.q.insertN(len(c)), insertArgs(c, nowMs)...)
		if res.Error == nil && res.RowsAffected != int64(len(c)) {
			return errInsertRaced
		}
		return res.Error
	})
}

// lockVersions locks, in Key order, the stored rows of the keys of batch
// and returns their versions.
func (s *Store) lockVersions(tx *gorm.DB, batch []durable.Write, order []int) (map[string]int64, error) {
	stored := make(map[string]int64, len(batch))
	for rest := order; len(rest) > 0; {
		chunk := rest[:min(len(rest), writeChunk)]
		rest = rest[len(chunk):]
		keys := make([]string, len(chunk))
		for j, i := range chunk {
			keys[j] = batch[i].Key
		}
		rows, err := tx.Raw(s.q.lockKeys, keys).Rows()
		if err != nil {
			return nil, err
		}
		if err := scanVersions(rows, stored); err != nil {
			return nil, err
		}
	}
	return stored, nil
}

// scanVersions reads (key, version) rows into stored.
func scanVersions(rows *sql.Rows, stored map[string]int64) error {
	defer rows.Close()
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		stored[k] = v
	}
	return rows.Err()
}

// scanKeys reads rows of one key each.
func scanKeys(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// chunks calls fn with successive parts of ws of at most writeChunk
// writes, until it fails.
func chunks(ws []durable.Write, fn func([]durable.Write) error) error {
	for len(ws) > 0 {
		c := ws[:min(len(ws), writeChunk)]
		ws = ws[len(c):]
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// updateArgs returns the arguments of updateN for ws.
func updateArgs(ws []durable.Write, updatedMs int64) []any {
	args := make([]any, 0, 7*len(ws)+1)
	for i := range ws {
		w := &ws[i]
		args = append(args, w.Key, payloadOf(w.Payload), int64(w.Version), millis(w.ExpiresAt),
			millis(w.Deadline), w.Subject, int64(w.Base))
	}
	return append(args, updatedMs)
}

// insertArgs returns the arguments of insertN for ws.
func insertArgs(ws []durable.Write, nowMs int64) []any {
	args := make([]any, 0, 8*len(ws))
	for i := range ws {
		w := &ws[i]
		args = append(args, w.Key, payloadOf(w.Payload), int64(w.Version), millis(w.ExpiresAt),
			millis(w.Deadline), w.Subject, nowMs, nowMs)
	}
	return args
}

// pgColumns holds rows for a PostgreSQL statement as one array per
// column of the derived table d(k, p, v, e, dl, s, ov).
type pgColumns struct {
	keys, subjects               pgTextArray
	payloads                     pgByteaArray
	versions, expires, deadlines pgInt8Array
	bases                        pgInt8Array
}

// add appends ws to the columns.
func (c *pgColumns) add(ws []durable.Write) {
	for i := range ws {
		w := &ws[i]
		c.keys = append(c.keys, w.Key)
		c.payloads = append(c.payloads, w.Payload)
		c.versions = append(c.versions, int64(w.Version))
		c.expires = append(c.expires, millis(w.ExpiresAt))
		c.deadlines = append(c.deadlines, millis(w.Deadline))
		c.subjects = append(c.subjects, w.Subject)
		c.bases = append(c.bases, int64(w.Base))
	}
}

// args returns the arrays in the order of d's columns, with ov or without.
func (c *pgColumns) args(withBase bool) []any {
	args := []any{c.keys, c.payloads, c.versions, c.expires, c.deadlines, c.subjects}
	if withBase {
		args = append(args, c.bases)
	}
	return args
}
