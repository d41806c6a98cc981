package gormstore

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"

	"github.com/hybridsession/hybridsession/core/durable"
	"gorm.io/gorm"
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

// Store is the durable tier on GORM: it implements durable.Tier on one table
// of a PostgreSQL, MySQL/MariaDB or SQLite database. It is safe for
// concurrent use by many goroutines, and many processes may share the table.
type Store struct {
	db *gorm.DB
	q  *queries
}

var _ durable.Tier = (*Store)(nil)

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
	if !cfg.SkipMigration {
		if err := db.Table(cfg.TableName).AutoMigrate(&row{}); err != nil {
			return nil, fmt.Errorf("gormstore: migrate table %s: %w", cfg.TableName, err)
		}
	}
	return &Store{db: db, q: newQueries(db, d, cfg.TableName)}, nil
}

// errorf wraps sentinel with a formatted detail.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// scanRecords reads rows of q.cols into records.
func scanRecords(rows *sql.Rows, capacity int) ([]durable.Record, error) {
	defer rows.Close()
	recs := make([]durable.Record, 0, capacity)
	for rows.Next() {
		var (
			r              durable.Record
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

// Load returns the row stored under key, whatever its ExpiresAt and
// Deadline: one lookup of the primary key. A missing row gives found ==
// false and a nil error. Times come back in UTC.
func (s *Store) Load(ctx context.Context, key string) (rec durable.Record, found bool, err error) {
	rows, err := s.db.WithContext(ctx).Raw(s.q.load, key).Rows()
	if err != nil {
		return durable.Record{}, false, fmt.Errorf("gormstore: load: %w", err)
	}
	recs, err := scanRecords(rows, 1)
	if err != nil {
		return durable.Record{}, false, fmt.Errorf("gormstore: load: %w", err)
	}
	if len(recs) == 0 {
		return durable.Record{}, false, nil
	}
	return recs[0], true, nil
}

// List returns up to limit rows with Key greater than after (byte order),
// in Key order, whatever their ExpiresAt and Deadline; when subject is not
// empty, only the rows whose Subject is exactly subject (byte for byte:
// case and trailing spaces count). Without a subject it is one range scan
// of the primary key; with one, a scan of the subject index. An empty
// result means the end. It returns an error wrapping ErrInvalidLimit when
// limit is not positive.
func (s *Store) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	if limit <= 0 {
		return nil, errorf(ErrInvalidLimit, "List limit %d", limit)
	}
	db := s.db.WithContext(ctx)
	var rows *sql.Rows
	var err error
	if subject == "" {
		rows, err = db.Raw(s.q.list, after, limit).Rows()
	} else {
		rows, err = db.Raw(s.q.listSubject, subject, after, limit).Rows()
	}
	if err != nil {
		return nil, fmt.Errorf("gormstore: list: %w", err)
	}
	recs, err := scanRecords(rows, min(limit, 1024))
	if err != nil {
		return nil, fmt.Errorf("gormstore: list: %w", err)
	}
	return recs, nil
}
