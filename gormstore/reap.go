package gormstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
)

// reapChunk is the most rows one delete or update statement of Reap carries
// on SQLite and MySQL (each row costs 4 or 9 parameters; the limits are
// 32766 and 65535). PostgreSQL sends arrays and needs no chunks.
const reapChunk = 1000

// claim is what Reap read of one row: the values a concurrent write would
// have changed.
type claim struct {
	key     string
	version int64
	expires int64
}

// Reap claims up to limit rows whose ExpiresAt is not after now, oldest
// ExpiresAt first, hands them to judge once, and applies the verdicts, all
// in one transaction. It returns how many rows it examined: 0 means that no
// expired row was left to claim, or that every one was claimed by another
// reaper at that moment.
//
// The statements per batch are constant, not one per row:
//
//   - PostgreSQL: BEGIN (READ COMMITTED); SELECT ... ORDER BY expires_at
//     LIMIT n FOR UPDATE SKIP LOCKED; one DELETE of the dead rows joined
//     with unnest() of three array parameters; one UPDATE of the kept rows
//     the same way, only if any; COMMIT.
//   - MySQL/MariaDB: the same SELECT ... FOR UPDATE SKIP LOCKED in a READ
//     COMMITTED transaction (no gap locks, so Saves of new sessions never
//     wait on a reaper); one multi-table DELETE joining a derived table of
//     the claimed (key, version, expires_at) by primary key; one
//     multi-table UPDATE of the kept rows the same way, only if any;
//     COMMIT. Statements are split past 1000 rows.
//   - SQLite, which has no row locks: the transaction first runs a write
//     that matches no row, which takes the database's single write lock
//     before the SELECT reads anything (what BEGIN IMMEDIATE does, whatever
//     the DSN's _txlock). Reapers in this and other processes therefore run
//     one after another, and none can claim rows another is judging; other
//     writers wait (busy_timeout) while the judge runs.
//
// Rows are locked (or the database is) from the SELECT to the COMMIT, so
// a concurrent Save of a claimed row waits for the reaper and then applies.
// The DELETE and UPDATE still only touch rows whose version and expires_at
// are those the SELECT read.
//
// Kept rows are replaced by their verdict's Record as it is (all columns but
// created_at); a Record equal to the row as claimed writes nothing. If judge returns an error, or verdicts that do not match the
// batch (ErrBadVerdicts), or a kept Record that the table cannot hold
// (ErrInvalidRecord), the transaction is rolled back, no row is changed and
// Reap returns 0 and the error, wrapping the judge's.
//
// Reap returns an error wrapping ErrInvalidLimit when limit is not positive,
// and panics when judge is nil.
func (s *Store) Reap(ctx context.Context, now time.Time, limit int, judge core.ReapJudge) (examined int, err error) {
	if limit <= 0 {
		return 0, errorf(ErrInvalidLimit, "Reap limit %d", limit)
	}
	if judge == nil {
		panic("gormstore: Reap called with a nil judge")
	}
	var opts []*sql.TxOptions
	if s.q.d != dialectSQLite {
		opts = append(opts, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if s.q.reapLock != "" {
			if err := tx.Exec(s.q.reapLock).Error; err != nil {
				return fmt.Errorf("gormstore: reap: take the write lock: %w", err)
			}
		}
		rows, err := tx.Raw(s.q.reapSelect, millis(now), limit).Rows()
		if err != nil {
			return fmt.Errorf("gormstore: reap: select: %w", err)
		}
		batch, err := scanRecords(rows, min(limit, 1024))
		if err != nil {
			return fmt.Errorf("gormstore: reap: select: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		claims := make([]claim, len(batch))
		for i, r := range batch {
			claims[i] = claim{r.Key, int64(r.Version), millis(r.ExpiresAt)}
		}

		verdicts, err := judge(ctx, batch)
		if err != nil {
			return fmt.Errorf("gormstore: reap: judge: %w", err)
		}
		if len(verdicts) != len(claims) {
			return errorf(ErrBadVerdicts, "%d verdicts for %d rows", len(verdicts), len(claims))
		}
		var dead, keptClaims []claim
		var kept []core.Record
		for i, v := range verdicts {
			if !v.Keep {
				dead = append(dead, claims[i])
				continue
			}
			if v.Record.Key != claims[i].key {
				return errorf(ErrBadVerdicts, "verdict %d keeps key %q for row %q", i, v.Record.Key, claims[i].key)
			}
			if err := checkRecord(&v.Record); err != nil {
				return fmt.Errorf("gormstore: reap: verdict %d: %w", i, err)
			}
			if unchanged(v.Record, batch[i]) {
				continue // kept as it is: nothing to write
			}
			keptClaims = append(keptClaims, claims[i])
			kept = append(kept, v.Record)
		}
		if err := s.deleteClaimed(tx, dead); err != nil {
			return fmt.Errorf("gormstore: reap: delete: %w", err)
		}
		if err := s.updateKept(tx, keptClaims, kept); err != nil {
			return fmt.Errorf("gormstore: reap: update: %w", err)
		}
		examined = len(batch)
		return nil
	}, opts...)
	if err != nil {
		return 0, err
	}
	return examined, nil
}

// unchanged reports whether kept is the row as claimed.
func unchanged(kept, claimed core.Record) bool {
	return kept.Version == claimed.Version && millis(kept.ExpiresAt) == millis(claimed.ExpiresAt) &&
		millis(kept.Deadline) == millis(claimed.Deadline) && kept.Subject == claimed.Subject &&
		bytes.Equal(kept.Payload, claimed.Payload)
}

// deleteClaimed deletes the claimed rows that still have their claimed
// version and expiry.
func (s *Store) deleteClaimed(tx *gorm.DB, dead []claim) error {
	if len(dead) == 0 {
		return nil
	}
	if s.q.d == dialectPostgres {
		keys := make(pgTextArray, len(dead))
		versions := make(pgInt8Array, len(dead))
		expires := make(pgInt8Array, len(dead))
		for i, c := range dead {
			keys[i], versions[i], expires[i] = c.key, c.version, c.expires
		}
		return tx.Exec(s.q.reapDelete, keys, versions, expires).Error
	}
	for len(dead) > 0 {
		chunk := dead[:min(len(dead), reapChunk)]
		dead = dead[len(chunk):]
		args := make([]any, 0, 4*len(chunk))
		if s.q.d == dialectSQLite {
			for _, c := range chunk {
				args = append(args, c.key)
			}
		}
		for _, c := range chunk {
			args = append(args, c.key, c.version, c.expires)
		}
		if err := tx.Exec(s.q.reapDeleteN(len(chunk)), args...).Error; err != nil {
			return err
		}
	}
	return nil
}

// updateKept replaces the claimed rows that still have their claimed
// version and expiry by the kept records.
func (s *Store) updateKept(tx *gorm.DB, claims []claim, kept []core.Record) error {
	if len(kept) == 0 {
		return nil
	}
	nowMs := time.Now().UnixMilli()
	if s.q.d == dialectPostgres {
		n := len(kept)
		var (
			keys, subjects                             = make(pgTextArray, n), make(pgTextArray, n)
			payloads                                   = make(pgByteaArray, n)
			versions, expires, deadlines, oldV, oldExp = make(pgInt8Array, n), make(pgInt8Array, n), make(pgInt8Array, n), make(pgInt8Array, n), make(pgInt8Array, n)
		)
		for i, r := range kept {
			keys[i], payloads[i], subjects[i] = r.Key, r.Payload, r.Subject
			versions[i], expires[i], deadlines[i] = int64(r.Version), millis(r.ExpiresAt), millis(r.Deadline)
			oldV[i], oldExp[i] = claims[i].version, claims[i].expires
		}
		return tx.Exec(s.q.reapUpdate, nowMs, keys, payloads, versions, expires, deadlines, subjects, oldV, oldExp).Error
	}
	for len(kept) > 0 {
		n := min(len(kept), reapChunk)
		args := make([]any, 0, 8*n+1)
		for i, r := range kept[:n] {
			args = append(args, r.Key, payloadOf(r.Payload), int64(r.Version), millis(r.ExpiresAt),
				millis(r.Deadline), r.Subject, claims[i].version, claims[i].expires)
		}
		args = append(args, nowMs)
		if err := tx.Exec(s.q.reapUpdateN(n), args...).Error; err != nil {
			return err
		}
		kept, claims = kept[n:], claims[n:]
	}
	return nil
}
