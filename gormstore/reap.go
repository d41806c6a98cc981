package gormstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"gorm.io/gorm"
)

// claim is what Reap read of one row: its key, and the version a
// concurrent write would have changed.
type claim struct {
	key     string
	version int64
}

// Reap claims up to limit rows whose ExpiresAt is not after now, oldest
// ExpiresAt first, hands them to judge once, and applies the verdicts, all
// in one transaction: durable.Delete deletes the row, durable.Keep replaces it with
// the verdict's Record (all columns but created_at), durable.Leave leaves it
// for a later Reap. It returns how many rows it claimed: 0 means that no
// expired row was left to claim, or that every one was claimed by another
// reaper at that moment.
//
// The statements per batch are constant, not one per row:
//
//   - PostgreSQL: BEGIN (READ COMMITTED); SELECT ... ORDER BY expires_at
//     LIMIT n FOR UPDATE SKIP LOCKED; one DELETE of the dead rows joined
//     with unnest() of two array parameters; one UPDATE of the kept rows
//     the same way, only if any; COMMIT.
//   - MySQL/MariaDB: the same SELECT ... FOR UPDATE SKIP LOCKED in a READ
//     COMMITTED transaction (no gap locks, so inserts of new sessions never
//     wait on a reaper); one multi-table DELETE joining a derived table of
//     the claimed (key, version) by primary key; one multi-table UPDATE of
//     the kept rows the same way, only if any; COMMIT. Statements are split
//     past 500 rows.
//   - SQLite, which has no row locks: the transaction first runs a write
//     that matches no row, which takes the database's single write lock
//     before the SELECT reads anything (what BEGIN IMMEDIATE does, whatever
//     the DSN's _txlock). Reapers in this and other processes therefore run
//     one after another, and none can claim rows another is judging; other
//     writers wait (busy_timeout) while the judge runs.
//
// Rows are locked (or the database is) from the SELECT to the COMMIT, so a
// concurrent Write of a claimed row waits for the reaper, and then meets
// the row as the verdict left it. The DELETE and UPDATE still only touch
// rows whose version is the one the SELECT read.
//
// If judge returns an error, or verdicts that do not match the batch
// (ErrBadVerdicts), or a kept Record that the table cannot hold
// (ErrInvalidRecord), the transaction is rolled back, no row is changed and
// Reap returns 0 and the error, wrapping the judge's.
//
// Reap returns an error wrapping ErrInvalidLimit when limit is not positive,
// and panics when judge is nil.
func (s *Store) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (claimed int, err error) {
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
		batch, err := s.claimRows(tx, now, limit)
		if err != nil || len(batch) == 0 {
			return err
		}
		verdicts, err := judge(ctx, batch)
		if err != nil {
			return fmt.Errorf("gormstore: reap: judge: %w", err)
		}
		dead, kept, err := sortVerdicts(batch, verdicts)
		if err != nil {
			return err
		}
		if err := s.deleteClaimed(tx, dead); err != nil {
			return fmt.Errorf("gormstore: reap: delete: %w", err)
		}
		if err := s.updateKept(tx, kept); err != nil {
			return fmt.Errorf("gormstore: reap: update: %w", err)
		}
		claimed = len(batch)
		return nil
	}, opts...)
	if err != nil {
		return 0, err
	}
	return claimed, nil
}

// claimRows locks and returns up to limit rows whose ExpiresAt is not after
// now, oldest first, in transaction tx.
func (s *Store) claimRows(tx *gorm.DB, now time.Time, limit int) ([]durable.Record, error) {
	if s.q.reapLock != "" {
		if err := tx.Exec(s.q.reapLock).Error; err != nil {
			return nil, fmt.Errorf("gormstore: reap: take the write lock: %w", err)
		}
	}
	rows, err := tx.Raw(s.q.reapSelect, millis(now), limit).Rows()
	if err != nil {
		return nil, fmt.Errorf("gormstore: reap: select: %w", err)
	}
	batch, err := scanRecords(rows, min(limit, 1024))
	if err != nil {
		return nil, fmt.Errorf("gormstore: reap: select: %w", err)
	}
	return batch, nil
}

// sortVerdicts checks verdicts against batch and returns the rows to
// delete, and the writes that keep rows, conditional on the version
// claimed.
func sortVerdicts(batch []durable.Record, verdicts []durable.Verdict) (dead []claim, kept []durable.Write, err error) {
	if len(verdicts) != len(batch) {
		return nil, nil, errorf(ErrBadVerdicts, "%d verdicts for %d rows", len(verdicts), len(batch))
	}
	for i, v := range verdicts {
		r := &batch[i]
		switch v.Action {
		case durable.Delete:
			dead = append(dead, claim{r.Key, int64(r.Version)})
		case durable.Leave:
		case durable.Keep:
			if v.Record.Key != r.Key || v.Record.Version != r.Version+1 {
				return nil, nil, errorf(ErrBadVerdicts, "verdict %d keeps key %q at version %d for row %q at version %d",
					i, v.Record.Key, v.Record.Version, r.Key, r.Version)
			}
			if err := checkRecord(&v.Record); err != nil {
				return nil, nil, fmt.Errorf("%w (verdict %d)", err, i)
			}
			kept = append(kept, durable.Write{Record: v.Record, Base: r.Version})
		default:
			return nil, nil, errorf(ErrBadVerdicts, "verdict %d has unknown action %d", i, v.Action)
		}
	}
	return dead, kept, nil
}

// deleteClaimed deletes the claimed rows that are still at their claimed
// version.
func (s *Store) deleteClaimed(tx *gorm.DB, dead []claim) error {
	if len(dead) == 0 {
		return nil
	}
	if s.q.d == dialectPostgres {
		keys := make(pgTextArray, len(dead))
		versions := make(pgInt8Array, len(dead))
		for i, c := range dead {
			keys[i], versions[i] = c.key, c.version
		}
		return tx.Exec(s.q.reapDelete, keys, versions).Error
	}
	for len(dead) > 0 {
		chunk := dead[:min(len(dead), writeChunk)]
		dead = dead[len(chunk):]
		args := make([]any, 0, 3*len(chunk))
		if s.q.d == dialectSQLite {
			for _, c := range chunk {
				args = append(args, c.key)
			}
		}
		for _, c := range chunk {
			args = append(args, c.key, c.version)
		}
		if err := tx.Exec(s.q.reapDeleteN(len(chunk)), args...).Error; err != nil {
			return err
		}
	}
	return nil
}

// updateKept replaces the claimed rows that are still at their claimed
// version (each write's Base) by the kept records.
func (s *Store) updateKept(tx *gorm.DB, kept []durable.Write) error {
	if len(kept) == 0 {
		return nil
	}
	nowMs := time.Now().UnixMilli()
	if s.q.d == dialectPostgres {
		var c pgColumns
		c.add(kept)
		return tx.Exec(s.q.update, append([]any{nowMs}, c.args(true)...)...).Error
	}
	return chunks(kept, func(c []durable.Write) error {
		return tx.Exec(s.q.updateN(len(c)), updateArgs(c, nowMs)...).Error
	})
}
