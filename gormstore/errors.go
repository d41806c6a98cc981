package gormstore

import "errors"

// Errors returned by New and the Store's methods. Compare with errors.Is:
// they are returned wrapped with context. Database failures are returned
// wrapped with a "gormstore: ..." prefix and are not listed here.
var (
	// ErrInvalidConfig is returned by New for a nil *gorm.DB or a
	// Config.TableName that is not a plain SQL identifier
	// (^[A-Za-z_][A-Za-z0-9_]{0,62}$).
	ErrInvalidConfig = errors.New("gormstore: invalid configuration")

	// ErrUnsupportedDialect is returned by New when the *gorm.DB talks to a
	// database other than PostgreSQL, MySQL/MariaDB or SQLite.
	ErrUnsupportedDialect = errors.New("gormstore: unsupported database dialect")

	// ErrInvalidRecord is returned by Write and Reap, before anything is
	// written, for a record the table cannot hold exactly: an empty Key or
	// one longer than 64 bytes, a Subject longer than 255 bytes, or a Version
	// above math.MaxInt64. Write also returns it for a write whose
	// Record.Version is not its Base+1, and for a batch that repeats a key.
	ErrInvalidRecord = errors.New("gormstore: invalid record")

	// ErrInvalidLimit is returned by List and Reap for a limit that is not
	// positive.
	ErrInvalidLimit = errors.New("gormstore: limit must be positive")

	// ErrBadVerdicts is returned by Reap when the judge returns a number of
	// verdicts different from the number of rows in the batch, a verdict
	// with an unknown Action, or a kept Record whose Key is not the Key of
	// its row or whose Version is not the row's Version plus one. No row of
	// the batch is changed.
	ErrBadVerdicts = errors.New("gormstore: judge verdicts do not match the batch")
)
