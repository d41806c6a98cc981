package gormstore

import (
	"database/sql/driver"
	"encoding/hex"
	"math"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
)

// dialect is the SQL flavour of the database behind the *gorm.DB.
type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
	dialectMySQL // MySQL 8.0+ and MariaDB 10.6+ (for SKIP LOCKED)
)

func (d dialect) String() string {
	switch d {
	case dialectPostgres:
		return "postgres"
	case dialectMySQL:
		return "mysql"
	default:
		return "sqlite"
	}
}

// dialectOf maps a GORM dialector name to a dialect.
func dialectOf(name string) (dialect, bool) {
	switch name {
	case "sqlite", "sqlite3":
		return dialectSQLite, true
	case "postgres", "pgx":
		return dialectPostgres, true
	case "mysql":
		return dialectMySQL, true
	}
	return 0, false
}

// queries holds the SQL of one Store, built once by New with the table and
// column names quoted by the dialector. Statements whose length depends on a
// batch size are built by the methods below.
//
// No placeholder follows "(" directly: GORM expands a slice argument bound
// there into a list, one parameter per element, which would turn a []byte
// payload into one parameter per byte. "( ?" binds it whole; "IN ?" with a
// []string is the one intended expansion.
type queries struct {
	d dialect

	table                          string // quoted table name
	key, payload, version, expires string // quoted column names
	deadline, subject              string
	createdAt, updatedAt           string
	cols                           string // key, payload, version, expires_at, deadline, subject

	load          string // args: key, now ms, now ms
	list          string // args: after, now ms, now ms, limit
	listSubject   string // args: subject, now ms, now ms, limit
	save          string // args: key, payload, version, expires, deadline, subject, created, updated, then baseArgs (once per condition)
	savedState    string // args: key; returns version, expires_at
	savedInsert   string // MySQL: args: key; returns version, expires_at, created_at, payload
	deleteKeys    string // args: []string (expanded by GORM)
	deleteSubject string // PostgreSQL, SQLite: DELETE ... RETURNING key; args: subject
	subjectKeys   string // MySQL: SELECT key ...; args: subject
	reapLock      string // SQLite: a write that takes the database's write lock
	reapSelect    string // args: now ms, limit
	reapDelete    string // PostgreSQL: args: keys, versions, expires (arrays)
	reapUpdate    string // PostgreSQL: args: updated ms, then eight arrays
}

// saveConds is how many times the save statement states its condition: once
// per assignment on MySQL, once on the others. Each takes baseArgs.
func (q *queries) saveConds() int {
	if q.d == dialectMySQL {
		return 6
	}
	return 1
}

// builtOn is the condition of core.Record.Base on the stored row's version
// column: the stored version is one the record was built on, at most Base or
// within the unsynced range. Its three arguments come from baseArgs, so that
// no placeholder is compared with 0 (PostgreSQL would have to guess its type).
func (q *queries) builtOn(version string) string {
	return "(" + version + " <= ? OR (" + version + " >= ? AND " + version + " <= ?))"
}

// baseArgs returns the arguments of builtOn for rec: Base, or without one a
// bound no version exceeds; then the unsynced range, or without one (or one
// that starts above every version) an empty range. A bound above
// math.MaxInt64, which no stored version reaches, becomes math.MaxInt64.
func baseArgs(rec *core.Record) [3]int64 {
	a := [3]int64{math.MaxInt64, 1, 0}
	if rec.Base != 0 {
		a[0] = int64(min(rec.Base, math.MaxInt64))
	}
	if rec.UnsyncedFrom != 0 && rec.UnsyncedFrom <= math.MaxInt64 {
		a[1], a[2] = int64(rec.UnsyncedFrom), int64(min(rec.UnsyncedTo, math.MaxInt64))
	}
	return a
}

// builtOnVersion reports whether a row at version v is one rec was built
// on: the condition builtOn states in SQL, evaluated in Go.
func builtOnVersion(rec *core.Record, v uint64) bool {
	return rec.Base == 0 || v <= rec.Base || rec.UnsyncedFrom != 0 && rec.UnsyncedFrom <= v && v <= rec.UnsyncedTo
}

func newQueries(db *gorm.DB, d dialect, table string) *queries {
	qt := func(name string) string {
		var b strings.Builder
		db.Dialector.QuoteTo(&b, name)
		return b.String()
	}
	q := &queries{
		d:         d,
		table:     qt(table),
		key:       qt("key"),
		payload:   qt("payload"),
		version:   qt("version"),
		expires:   qt("expires_at"),
		deadline:  qt("deadline"),
		subject:   qt("subject"),
		createdAt: qt("created_at"),
		updatedAt: qt("updated_at"),
	}
	t := q.table
	q.cols = strings.Join([]string{q.key, q.payload, q.version, q.expires, q.deadline, q.subject}, ", ")
	q.load = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.key + " = ? AND " + q.expires + " > ? AND " + q.deadline + " > ?"
	q.list = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.key + " > ? AND " + q.expires + " > ? AND " + q.deadline + " > ?" +
		" ORDER BY " + q.key + " LIMIT ?"
	q.listSubject = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.subject + " = ? AND " + q.expires + " > ? AND " + q.deadline + " > ?" +
		" ORDER BY " + q.key + " LIMIT ?"
	q.savedState = "SELECT " + q.version + ", " + q.expires + " FROM " + t + " WHERE " + q.key + " = ?"
	q.savedInsert = "SELECT " + q.version + ", " + q.expires + ", " + q.createdAt + ", " + q.payload + " FROM " + t + " WHERE " + q.key + " = ?"
	q.deleteKeys = "DELETE FROM " + t + " WHERE " + q.key + " IN ?"
	q.reapSelect = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.expires + " <= ? ORDER BY " + q.expires + " LIMIT ?"

	insert := "INSERT INTO " + t + " (" + q.cols + ", " + q.createdAt + ", " + q.updatedAt + ") VALUES ( ?, ?, ?, ?, ?, ?, ?, ?)"
	switch d {
	case dialectMySQL:
		// The condition is evaluated against the old row. MySQL applies the
		// assignments left to right, each one seeing the previous ones, so
		// expires_at and version, which the condition reads, come last:
		// assigning expires_at first cannot flip the condition's value for
		// version (see the tests of Save), and the Base check (builtOn)
		// reads only version. Each IF states the whole condition, so the
		// Base check's three arguments come once per assignment, in order.
		cond := "(" + q.version + " < VALUES(" + q.version + ") OR (" + q.version + " = VALUES(" + q.version + ") AND " +
			q.expires + " <= VALUES(" + q.expires + "))) AND " + q.builtOn(q.version)
		set := func(col string) string { return col + " = IF(" + cond + ", VALUES(" + col + "), " + col + ")" }
		q.save = insert + " ON DUPLICATE KEY UPDATE " + strings.Join([]string{
			set(q.payload), set(q.deadline), set(q.subject), set(q.updatedAt), set(q.expires), set(q.version),
		}, ", ")
		q.subjectKeys = "SELECT " + q.key + " FROM " + t + " WHERE " + q.subject + " = ?"
		q.reapSelect += " FOR UPDATE SKIP LOCKED"
	default:
		q.save = insert + " ON CONFLICT (" + q.key + ") DO UPDATE SET " +
			q.payload + " = excluded." + q.payload + ", " +
			q.version + " = excluded." + q.version + ", " +
			q.expires + " = excluded." + q.expires + ", " +
			q.deadline + " = excluded." + q.deadline + ", " +
			q.subject + " = excluded." + q.subject + ", " +
			q.updatedAt + " = excluded." + q.updatedAt +
			" WHERE (" + t + "." + q.version + " < excluded." + q.version + " OR (" +
			t + "." + q.version + " = excluded." + q.version + " AND " + t + "." + q.expires + " <= excluded." + q.expires + "))" +
			" AND " + q.builtOn(t+"."+q.version)
		q.deleteSubject = "DELETE FROM " + t + " WHERE " + q.subject + " = ? RETURNING " + q.key
	}
	switch d {
	case dialectPostgres:
		q.reapSelect += " FOR UPDATE SKIP LOCKED"
		q.reapDelete = "DELETE FROM " + t +
			" USING unnest(CAST(CAST( ? AS text) AS text[]), CAST(CAST( ? AS text) AS bigint[]), CAST(CAST( ? AS text) AS bigint[])) AS d(k, ov, oe)" +
			" WHERE " + t + "." + q.key + " = d.k AND " + t + "." + q.version + " = d.ov AND " + t + "." + q.expires + " = d.oe"
		q.reapUpdate = "UPDATE " + t + " SET " + q.keptAssignments() +
			" FROM unnest(CAST(CAST( ? AS text) AS text[]), CAST(CAST( ? AS text) AS bytea[]), CAST(CAST( ? AS text) AS bigint[]), CAST(CAST( ? AS text) AS bigint[]), CAST(CAST( ? AS text) AS bigint[])," +
			" CAST(CAST( ? AS text) AS text[]), CAST(CAST( ? AS text) AS bigint[]), CAST(CAST( ? AS text) AS bigint[])) AS d(k, p, v, e, dl, s, ov, oe)" +
			" WHERE " + t + "." + q.key + " = d.k AND " + t + "." + q.version + " = d.ov AND " + t + "." + q.expires + " = d.oe"
	case dialectSQLite:
		// A statement that writes takes SQLite's write lock even when it
		// matches no row; see Store.Reap.
		q.reapLock = "UPDATE " + t + " SET " + q.version + " = " + q.version + " WHERE 1 = 0"
	}
	return q
}

// keptAssignments is the SET list of the bulk update of kept rows, reading
// from a derived table d; updated_at comes from a parameter.
func (q *queries) keptAssignments() string {
	col := func(c string) string {
		if q.d == dialectMySQL {
			return q.table + "." + c // MySQL's multi-table UPDATE needs qualified targets
		}
		return c
	}
	return col(q.payload) + " = d.p, " + col(q.version) + " = d.v, " + col(q.expires) + " = d.e, " +
		col(q.deadline) + " = d.dl, " + col(q.subject) + " = d.s, " + col(q.updatedAt) + " = ?"
}

// claimedCond is the condition, on SQLite, that n rows still have the
// Version and ExpiresAt Reap claimed them with: a key list (for the primary
// key index) and a row-value list. Args: the n keys, then n (key, version,
// expires) triples.
func (q *queries) claimedCond(n int) string {
	var b strings.Builder
	b.WriteString(q.key + " IN ( ")
	writeList(&b, n, "?")
	b.WriteString(") AND (" + q.key + ", " + q.version + ", " + q.expires + ") IN (VALUES ")
	writeList(&b, n, "( ?, ?, ?)")
	b.WriteByte(')')
	return b.String()
}

// mysqlRows returns a derived table of n rows for MySQL and MariaDB: a
// UNION ALL of SELECTs of placeholders cast to the given types, with the
// given column aliases. Joined to the sessions table with STRAIGHT_JOIN, it
// is read first and every row is found by primary key (eq_ref), so that a
// statement locks only the rows it names: a scan of a secondary index would
// also lock neighbouring rows, which other reapers hold, and deadlock.
func mysqlRows(n int, cols ...string) string {
	var first, next strings.Builder
	for i := 0; i < len(cols); i += 2 {
		if i > 0 {
			first.WriteString(", ")
			next.WriteString(", ")
		}
		cast := "CAST( ? AS " + cols[i+1] + ")"
		first.WriteString(cast + " AS " + cols[i])
		next.WriteString(cast)
	}
	var b strings.Builder
	b.Grow(n * (next.Len() + 18))
	b.WriteString("(SELECT " + first.String())
	for range n - 1 {
		b.WriteString(" UNION ALL SELECT " + next.String())
	}
	b.WriteByte(')')
	return b.String()
}

// reapDeleteN is the delete of n claimed rows on SQLite and MySQL. Args on
// SQLite: see claimedCond; on MySQL: n (key, version, expires) triples.
func (q *queries) reapDeleteN(n int) string {
	if q.d == dialectMySQL {
		t := q.table
		return "DELETE " + t + " FROM " + mysqlRows(n, "k", "BINARY", "ov", "SIGNED", "oe", "SIGNED") + " AS d STRAIGHT_JOIN " + t +
			" ON " + t + "." + q.key + " = d.k AND " + t + "." + q.version + " = d.ov AND " + t + "." + q.expires + " = d.oe"
	}
	return "DELETE FROM " + q.table + " WHERE " + q.claimedCond(n)
}

// reapUpdateN is the update of n kept rows on SQLite and MySQL. Args, per
// row: key, payload, version, expires, deadline, subject, claimed version,
// claimed expires; then updated ms.
func (q *queries) reapUpdateN(n int) string {
	t := q.table
	on := t + "." + q.key + " = d.k AND " + t + "." + q.version + " = d.ov AND " + t + "." + q.expires + " = d.oe"
	if q.d == dialectMySQL {
		// The casts keep the payload and subject binary and the numbers
		// integers whatever the connection's character set.
		return "UPDATE " + mysqlRows(n, "k", "BINARY", "p", "BINARY", "v", "SIGNED", "e", "SIGNED",
			"dl", "SIGNED", "s", "BINARY", "ov", "SIGNED", "oe", "SIGNED") +
			" AS d STRAIGHT_JOIN " + t + " ON " + on + " SET " + q.keptAssignments()
	}
	var b strings.Builder
	b.WriteString("WITH d(k, p, v, e, dl, s, ov, oe) AS (VALUES ")
	writeList(&b, n, "( ?, ?, ?, ?, ?, ?, ?, ?)")
	b.WriteString(") UPDATE " + t + " SET " + q.keptAssignments() + " FROM d WHERE " + on)
	return b.String()
}

// deleteSubjectKeysN is MySQL's delete of n rows of a subject by key. Args:
// the n keys, then the subject.
func (q *queries) deleteSubjectKeysN(n int) string {
	t := q.table
	return "DELETE " + t + " FROM " + mysqlRows(n, "k", "BINARY") + " AS d STRAIGHT_JOIN " + t +
		" ON " + t + "." + q.key + " = d.k AND " + t + "." + q.subject + " = ?"
}

// writeList writes n copies of item separated by ", ".
func writeList(b *strings.Builder, n int, item string) {
	b.Grow(n * (len(item) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(item)
	}
}

// PostgreSQL array parameters, sent as array literals so that one statement
// text serves every batch size. They implement driver.Valuer, which also
// keeps GORM from expanding them into lists.

// pgTextArray is a text[] parameter.
type pgTextArray []string

// Value implements driver.Valuer.
func (a pgTextArray) Value() (driver.Value, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// pgInt8Array is a bigint[] parameter.
type pgInt8Array []int64

// Value implements driver.Valuer.
func (a pgInt8Array) Value() (driver.Value, error) {
	b := make([]byte, 0, 2+len(a)*14)
	b = append(b, '{')
	for i, v := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, v, 10)
	}
	return string(append(b, '}')), nil
}

// pgByteaArray is a bytea[] parameter, each element in hex form.
type pgByteaArray [][]byte

// Value implements driver.Valuer.
func (a pgByteaArray) Value() (driver.Value, error) {
	n := 2
	for _, p := range a {
		n += 6 + 2*len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, p := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `"\\x`...)
		b = hex.AppendEncode(b, p)
		b = append(b, '"')
	}
	return string(append(b, '}')), nil
}
