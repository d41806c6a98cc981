package gormstore

import (
	"math"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// Column limits, checked by Write and Reap before anything is written.
const (
	maxKeyLen     = 64  // bytes; core's keys are 43
	maxSubjectLen = 255 // bytes
)

// row describes the table for AutoMigrate. Reads and writes do not go
// through it: they use the SQL that New prepares (see dialect.go).
//
// Column by column:
//
//	key         primary key; varchar(64) COLLATE "C" on PostgreSQL,
//	            varbinary(64) on MySQL, text on SQLite: compared and ordered
//	            byte by byte everywhere, so List's Key order is Go's string order
//	            and keys differing only in case are distinct.
//	payload     the envelope: bytea, longblob or blob.
//	version     bigint; durable.Record.Version is a uint64, stored as int64.
//	expires_at  bigint, Unix milliseconds, indexed (the reaper's scan).
//	deadline    bigint, Unix milliseconds.
//	subject     varchar(255) (varbinary(255) on MySQL, for exact matching),
//	            '' when unset, indexed.
//	created_at  bigint, Unix milliseconds of the first insert, by the
//	            application server's clock.
//	updated_at  bigint, Unix milliseconds of the last applied write.
type row struct {
	Key       keyColumn     `gorm:"column:key;primaryKey"`
	Payload   []byte        `gorm:"column:payload;not null"`
	Version   int64         `gorm:"column:version;not null"`
	ExpiresAt int64         `gorm:"column:expires_at;not null;index"`
	Deadline  int64         `gorm:"column:deadline;not null"`
	Subject   subjectColumn `gorm:"column:subject;not null;default:'';index"`
	Created   int64         `gorm:"column:created_at;not null;autoCreateTime:false"`
	Updated   int64         `gorm:"column:updated_at;not null;autoUpdateTime:false"`
}

// keyColumn gives the key column a byte-wise type on every dialect.
type keyColumn string

// GormDBDataType implements migrator.GormDataTypeInterface.
func (keyColumn) GormDBDataType(db *gorm.DB, _ *schema.Field) string {
	switch db.Dialector.Name() {
	case "postgres":
		return `varchar(64) COLLATE "C"`
	case "mysql":
		return "varbinary(64)"
	default:
		return "text"
	}
}

// subjectColumn gives the subject column exact (case- and
// trailing-space-sensitive) equality on every dialect.
type subjectColumn string

// GormDBDataType implements migrator.GormDataTypeInterface.
func (subjectColumn) GormDBDataType(db *gorm.DB, _ *schema.Field) string {
	switch db.Dialector.Name() {
	case "mysql":
		return "varbinary(255)"
	default:
		return "varchar(255)"
	}
}

// millis converts t to the stored form: Unix milliseconds, rounded down.
func millis(t time.Time) int64 { return t.UnixMilli() }

// fromMillis converts a stored time back, in UTC.
func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// checkRecord reports whether the table can hold rec exactly.
func checkRecord(rec *durable.Record) error {
	switch {
	case rec.Key == "":
		return errorf(ErrInvalidRecord, "empty key")
	case len(rec.Key) > maxKeyLen:
		return errorf(ErrInvalidRecord, "key of %d bytes, limit %d", len(rec.Key), maxKeyLen)
	case len(rec.Subject) > maxSubjectLen:
		return errorf(ErrInvalidRecord, "subject of %d bytes, limit %d", len(rec.Subject), maxSubjectLen)
	case rec.Version > math.MaxInt64:
		return errorf(ErrInvalidRecord, "version %d above %d", rec.Version, int64(math.MaxInt64))
	}
	return nil
}

// payloadOf returns p, or an empty slice for nil: the column is NOT NULL.
func payloadOf(p []byte) []byte {
	if p == nil {
		return []byte{}
	}
	return p
}
