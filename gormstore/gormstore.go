package gormstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
)

// DefaultTableName is the table a zero Config uses.
const DefaultTableName = "hybrid_sessions"

// Config configures New. A zero Config is valid.
type Config struct {
	// TableName is the name of the sessions table, a plain SQL identifier
	// matching ^[A-Za-z_][A-Za-z0-9_]{0,62}$ (it is quoted in every statement,
	// and GORM's naming strategy, prefix included, does not apply to it).
	// Optional. Default: "hybrid_sessions".
	TableName string

	// SkipMigration stops New from running GORM's AutoMigrate on the table.
	// Set it when the schema is managed elsewhere; the table must then have
	// the columns described in the package documentation.
	// Optional. Default: false (New creates or updates the table and its
	// indexes).
	SkipMigration bool
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Store is the durable tier on GORM: it implements core.Durable on one table
// of a PostgreSQL, MySQL/MariaDB or SQLite database. It is safe for
// concurrent use by many goroutines, and many processes may share the table.
type Store struct {
	db *gorm.DB
	q  *queries

	// mysqlFoundRows tells how to read MySQL's affected-rows count of an
	// upsert: foundRowsOff (the driver default), foundRowsOn
	// (clientFoundRows=true), or foundRowsUnknown (the connection was not
	// opened from a DSN New can see).
	mysqlFoundRows int
}

const (
	foundRowsUnknown = iota
	foundRowsOff
	foundRowsOn
)

var _ core.Durable = (*Store)(nil)

// New returns a Store on db, using the table named by cfg.TableName.
// Unless cfg.SkipMigration is set, it creates the table and its indexes, or
// adds what is missing (GORM's AutoMigrate; running it again changes
// nothing).
//
// db is not closed by the Store: the caller owns it. Its dialect must be
// PostgreSQL, MySQL 8.0+ / MariaDB 10.6+ (for SKIP LOCKED) or SQLite 3.35+
// (for RETURNING); any GORM driver registering the names "postgres", "mysql"
// or "sqlite" works.
//
// New returns an error wrapping ErrInvalidConfig for a nil db or an invalid
// TableName, ErrUnsupportedDialect for another database, and the migration's
// error if it fails.
func New(db *gorm.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, errorf(ErrInvalidConfig, "nil *gorm.DB")
	}
	if cfg.TableName == "" {
		cfg.TableName = DefaultTableName
	}
	if !tableNameRE.MatchString(cfg.TableName) {
		return nil, errorf(ErrInvalidConfig, "TableName %q does not match %s", cfg.TableName, tableNameRE)
	}
	d, ok := dialectOf(db.Dialector.Name())
	if !ok {
		return nil, errorf(ErrUnsupportedDialect, "%q", db.Dialector.Name())
	}
	s := &Store{db: db, q: newQueries(db, d, cfg.TableName)}
	if d == dialectMySQL {
		s.mysqlFoundRows = foundRowsOf(db.Dialector)
	}
	if !cfg.SkipMigration {
		if err := db.Table(cfg.TableName).AutoMigrate(&row{}); err != nil {
			return nil, fmt.Errorf("gormstore: migrate table %s: %w", cfg.TableName, err)
		}
	}
	return s, nil
}

// foundRowsOf reads go-sql-driver's clientFoundRows setting from a GORM
// MySQL dialector, when it was opened from a DSN or a driver config. It
// looks at the dialector by reflection, so that gormstore does not link
// the MySQL driver into programs that use another database.
func foundRowsOf(d gorm.Dialector) int {
	v := reflect.ValueOf(d)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || v.Type().PkgPath() != "gorm.io/driver/mysql" {
		return foundRowsUnknown
	}
	cfg := v.FieldByName("Config") // *mysql.Config
	if cfg.Kind() != reflect.Pointer || cfg.IsNil() {
		return foundRowsUnknown
	}
	cfg = cfg.Elem()
	conn, dsn := cfg.FieldByName("Conn"), cfg.FieldByName("DSNConfig")
	if !conn.IsValid() || !conn.IsNil() || dsn.Kind() != reflect.Pointer || dsn.IsNil() {
		return foundRowsUnknown
	}
	if found := dsn.Elem().FieldByName("ClientFoundRows"); found.Kind() == reflect.Bool && found.Bool() {
		return foundRowsOn
	}
	return foundRowsOff
}

// errorf wraps sentinel with a formatted detail.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// scanRecords reads rows of q.cols into records.
func scanRecords(rows *sql.Rows, capacity int) ([]core.Record, error) {
	defer rows.Close()
	recs := make([]core.Record, 0, capacity)
	for rows.Next() {
		var (
			r              core.Record
			version        int64
			expires, dline int64
		)
		if err := rows.Scan(&r.Key, &r.Payload, &version, &expires, &dline, &r.Subject); err != nil {
			return nil, err
		}
		r.Version = uint64(version)
		r.ExpiresAt = fromMillis(expires)
		r.Deadline = fromMillis(dline)
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// Load returns the row for key when its ExpiresAt and Deadline are both after
// now (compared in whole milliseconds). A missing or expired row gives
// found == false and a nil error. Times come back in UTC.
func (s *Store) Load(ctx context.Context, key string, now time.Time) (rec core.Record, found bool, err error) {
	ms := millis(now)
	rows, err := s.db.WithContext(ctx).Raw(s.q.load, key, ms, ms).Rows()
	if err != nil {
		return core.Record{}, false, fmt.Errorf("gormstore: load: %w", err)
	}
	recs, err := scanRecords(rows, 1)
	if err != nil {
		return core.Record{}, false, fmt.Errorf("gormstore: load: %w", err)
	}
	if len(recs) == 0 {
		return core.Record{}, false, nil
	}
	return recs[0], true, nil
}

// Save inserts rec, or replaces the stored row when it is older — a lower
// Version, or the same Version with an ExpiresAt not after rec's (times are
// stored in whole milliseconds, rounded down) — and, when rec.Base is not 0,
// one rec was built on: a Version up to Base, or within rec's unsynced range
// UnsyncedFrom..UnsyncedTo (core.Record.Base). Base and the range are not
// stored. The check and the write are one statement:
// INSERT ... ON CONFLICT DO UPDATE ... WHERE on PostgreSQL and SQLite,
// INSERT ... ON DUPLICATE KEY UPDATE on MySQL, where a second, read-only
// statement decides the rare cases the affected-rows count leaves open (an
// identical retry; any row count with clientFoundRows=true other than 2).
//
// applied is false with a nil error when a newer copy is stored, or a row
// rec was not built on. Save returns an error wrapping ErrInvalidRecord,
// without writing, for a record the table cannot hold (see
// ErrInvalidRecord).
func (s *Store) Save(ctx context.Context, rec core.Record) (applied bool, err error) {
	if err := checkRecord(&rec); err != nil {
		return false, err
	}
	nowMs := time.Now().UnixMilli()
	expires := millis(rec.ExpiresAt)
	db := s.db.WithContext(ctx)
	args := []any{rec.Key, payloadOf(rec.Payload), int64(rec.Version), expires,
		millis(rec.Deadline), rec.Subject, nowMs, nowMs}
	base := baseArgs(&rec)
	for range s.q.saveConds() {
		args = append(args, base[0], base[1], base[2])
	}
	res := db.Exec(s.q.save, args...)
	if res.Error != nil {
		return false, fmt.Errorf("gormstore: save: %w", res.Error)
	}
	n := res.RowsAffected
	if s.q.d != dialectMySQL {
		return n > 0, nil
	}
	// MySQL counts 1 for an insert and 2 for an update that changed the row.
	// An applied update that changed nothing counts 0, and so does a refused
	// one; with clientFoundRows=true both count 1, like an insert.
	switch {
	case n == 2:
		return true, nil
	case n == 1 && s.mysqlFoundRows == foundRowsOff:
		return true, nil
	}
	if builtOnVersion(&rec, rec.Version) {
		// Ambiguous: the row holds rec's version and expiry exactly when rec
		// was applied (or an identical copy was). Anything else is a newer
		// copy, or a row of another version that rec was not built on.
		var version, storedExpires int64
		found, err := s.readBack(ctx, s.q.savedState, rec.Key, &version, &storedExpires)
		return found && version == int64(rec.Version) && storedExpires == expires, err
	}
	// rec was not built on a row of its own version, so no update with it
	// can leave the row unchanged: the row it met is left in place, or
	// there was none and rec was inserted (1). A row of rec's version and
	// expiry may have been there already, so the read back tells an insert
	// by the row's creation time and payload.
	if n == 0 {
		return false, nil
	}
	var (
		version, storedExpires, created int64
		payload                         []byte
	)
	found, err := s.readBack(ctx, s.q.savedInsert, rec.Key, &version, &storedExpires, &created, &payload)
	return found && version == int64(rec.Version) && storedExpires == expires && created == nowMs &&
		bytes.Equal(payload, rec.Payload), err
}

// readBack scans the row of key that query (savedState or savedInsert)
// selects into dest, for Save on MySQL. found is false when there is none.
func (s *Store) readBack(ctx context.Context, query, key string, dest ...any) (found bool, err error) {
	rows, err := s.db.WithContext(ctx).Raw(query, key).Rows()
	if err != nil {
		return false, fmt.Errorf("gormstore: save: read back: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("gormstore: save: read back: %w", err)
		}
		return false, nil
	}
	if err := rows.Scan(dest...); err != nil {
		return false, fmt.Errorf("gormstore: save: read back: %w", err)
	}
	return true, nil
}

// deleteChunk is the most keys one DELETE ... IN statement carries.
const deleteChunk = 500

// Delete removes the rows for keys, whatever their expiry, in statements of
// at most 500 keys. Keys without a row are ignored; no keys is a no-op.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	db := s.db.WithContext(ctx)
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), deleteChunk)]
		keys = keys[len(chunk):]
		if err := db.Exec(s.q.deleteKeys, chunk).Error; err != nil {
			return fmt.Errorf("gormstore: delete: %w", err)
		}
	}
	return nil
}

// DeleteSubject removes every row whose Subject is exactly subject (byte
// for byte: case and trailing spaces count), expired or not, and returns
// their keys in no particular order. An empty subject deletes nothing and
// returns nil.
//
// It is one DELETE ... RETURNING on PostgreSQL and SQLite. On MySQL it is a
// SELECT of the keys, then a DELETE of those rows that still have the
// subject; a row of the subject inserted between the two (a login during
// the logout) survives, and a key deleted by someone else between the two
// is returned anyway.
func (s *Store) DeleteSubject(ctx context.Context, subject string) (keys []string, err error) {
	if subject == "" {
		return nil, nil
	}
	db := s.db.WithContext(ctx)
	if s.q.d != dialectMySQL {
		rows, err := db.Raw(s.q.deleteSubject, subject).Rows()
		if err != nil {
			return nil, fmt.Errorf("gormstore: delete subject: %w", err)
		}
		keys, err = scanKeys(rows)
		if err != nil {
			return nil, fmt.Errorf("gormstore: delete subject: %w", err)
		}
		return keys, nil
	}
	// MySQL has no DELETE ... RETURNING (MariaDB 10.5+ has): read the keys,
	// then delete those rows if they still have the subject, by primary key
	// only, so that no other row is locked (see mysqlRows).
	rows, err := db.Raw(s.q.subjectKeys, subject).Rows()
	if err != nil {
		return nil, fmt.Errorf("gormstore: delete subject: %w", err)
	}
	if keys, err = scanKeys(rows); err != nil {
		return nil, fmt.Errorf("gormstore: delete subject: %w", err)
	}
	for rest := keys; len(rest) > 0; {
		chunk := rest[:min(len(rest), deleteChunk)]
		rest = rest[len(chunk):]
		args := make([]any, 0, len(chunk)+1)
		for _, k := range chunk {
			args = append(args, k)
		}
		args = append(args, subject)
		if err := db.Exec(s.q.deleteSubjectKeysN(len(chunk)), args...).Error; err != nil {
			return nil, fmt.Errorf("gormstore: delete subject: %w", err)
		}
	}
	return keys, nil
}

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

// ListSubject returns up to limit rows whose Subject is exactly subject and
// whose ExpiresAt and Deadline are after now, in Key order: a scan of the
// subject index. An empty subject returns nil. It returns an error
// wrapping ErrInvalidLimit when limit is not positive.
func (s *Store) ListSubject(ctx context.Context, subject string, now time.Time, limit int) ([]core.Record, error) {
	if limit <= 0 {
		return nil, errorf(ErrInvalidLimit, "ListSubject limit %d", limit)
	}
	if subject == "" {
		return nil, nil
	}
	ms := millis(now)
	rows, err := s.db.WithContext(ctx).Raw(s.q.listSubject, subject, ms, ms, limit).Rows()
	if err != nil {
		return nil, fmt.Errorf("gormstore: list subject: %w", err)
	}
	recs, err := scanRecords(rows, min(limit, 64))
	if err != nil {
		return nil, fmt.Errorf("gormstore: list subject: %w", err)
	}
	return recs, nil
}

// List returns up to limit rows whose ExpiresAt and Deadline are after now,
// with Key greater than after (byte order), in Key order: one indexed range
// scan of the primary key. An empty result means the end. It returns an
// error wrapping ErrInvalidLimit when limit is not positive.
func (s *Store) List(ctx context.Context, now time.Time, after string, limit int) ([]core.Record, error) {
	if limit <= 0 {
		return nil, errorf(ErrInvalidLimit, "List limit %d", limit)
	}
	ms := millis(now)
	rows, err := s.db.WithContext(ctx).Raw(s.q.list, after, ms, ms, limit).Rows()
	if err != nil {
		return nil, fmt.Errorf("gormstore: list: %w", err)
	}
	recs, err := scanRecords(rows, min(limit, 1024))
	if err != nil {
		return nil, fmt.Errorf("gormstore: list: %w", err)
	}
	return recs, nil
}
