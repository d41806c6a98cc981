package gormstore

import (
	"database/sql/driver"
	"encoding/hex"
	"strconv"
	"strings"

	"gorm.io/gorm"
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
//
// The statements that write several rows read them from a derived table d
// with one column per value, named k (key), p (payload), v (version), e
// (expires_at), dl (deadline), s (subject) and ov (the version the stored
// row must have).
type queries struct {
	d dialect

	table                          string // quoted table name
	key, payload, version, expires string // quoted column names
	deadline, subject              string
	createdAt, updatedAt           string
	cols                           string // key, payload, version, expires_at, deadline, subject

	load        string // args: key
	list        string // args: after, limit
	listSubject string // args: subject, after, limit
	write       string // PostgreSQL: args: updated ms, seven arrays (pgColumns, with ov), created ms, updated ms, six arrays
	update      string // PostgreSQL: args: updated ms, seven arrays (pgColumns, with ov)
	lockKeys    string // MySQL: SELECT key, version ... FOR UPDATE; args: []string (expanded by GORM)
	reapLock    string // SQLite: a write that takes the database's write lock
	reapSelect  string // args: now ms, limit
	reapDelete  string // PostgreSQL: args: keys, versions (arrays)
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
	q.load = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.key + " = ?"
	q.list = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.key + " > ? ORDER BY " + q.key + " LIMIT ?"
	q.listSubject = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.subject + " = ? AND " + q.key + " > ?" +
		" ORDER BY " + q.key + " LIMIT ?"
	q.reapSelect = "SELECT " + q.cols + " FROM " + t + " WHERE " + q.expires + " <= ? ORDER BY " + q.expires + " LIMIT ?"
	switch d {
	case dialectPostgres:
		q.postgres()
	case dialectMySQL:
		// FORCE INDEX keeps the lookup on the primary key, so that the
		// statement locks (and waits for) only the rows it names.
		q.lockKeys = "SELECT " + q.key + ", " + q.version + " FROM " + t + " FORCE INDEX (PRIMARY) WHERE " + q.key + " IN ?" +
			" ORDER BY " + q.key + " FOR UPDATE"
		q.reapSelect += " FOR UPDATE SKIP LOCKED"
	case dialectSQLite:
		// A statement that writes takes SQLite's write lock even when it
		// matches no row; see Store.Reap.
		q.reapLock = "UPDATE " + t + " SET " + q.version + " = " + q.version + " WHERE 1 = 0"
	}
	return q
}

// postgres sets the statements that only PostgreSQL runs. They take one
// array parameter per column, sent as a text literal (see pgColumns), so
// that one statement text serves every batch size.
func (q *queries) postgres() {
	t := q.table
	array := func(typ string) string { return "CAST(CAST( ? AS text) AS " + typ + "[])" }
	rows := array("text") + ", " + array("bytea") + ", " + array("bigint") + ", " + array("bigint") + ", " +
		array("bigint") + ", " + array("text")
	q.update = "UPDATE " + t + " SET " + q.assignments() +
		" FROM unnest(" + rows + ", " + array("bigint") + ") AS d(k, p, v, e, dl, s, ov) WHERE " + q.claimed()
	q.write = "WITH u AS (" + q.update + " RETURNING " + t + "." + q.key + "), " +
		"i AS (INSERT INTO " + t + " (" + q.cols + ", " + q.createdAt + ", " + q.updatedAt + ")" +
		" SELECT d.k, d.p, d.v, d.e, d.dl, d.s, CAST( ? AS bigint), CAST( ? AS bigint)" +
		" FROM unnest(" + rows + ") AS d(k, p, v, e, dl, s)" +
		" ON CONFLICT (" + q.key + ") DO NOTHING RETURNING " + q.key + ")" +
		" SELECT " + q.key + " FROM u UNION ALL SELECT " + q.key + " FROM i"
	q.reapSelect += " FOR UPDATE SKIP LOCKED"
	q.reapDelete = "DELETE FROM " + t + " USING unnest(" + array("text") + ", " + array("bigint") + ") AS d(k, ov) WHERE " + q.claimed()
}

// claimed is the condition joining the table to a derived table d: the
// row of key d.k, still at version d.ov.
func (q *queries) claimed() string {
	return q.table + "." + q.key + " = d.k AND " + q.table + "." + q.version + " = d.ov"
}

// assignments is the SET list that replaces a row with the values of the
// derived table d; updated_at comes from a parameter.
func (q *queries) assignments() string {
	col := func(c string) string {
		if q.d == dialectMySQL {
			return q.table + "." + c // MySQL's multi-table UPDATE needs qualified targets
		}
		return c
	}
	return col(q.payload) + " = d.p, " + col(q.version) + " = d.v, " + col(q.expires) + " = d.e, " +
		col(q.deadline) + " = d.dl, " + col(q.subject) + " = d.s, " + col(q.updatedAt) + " = ?"
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

// updateN replaces, on SQLite and MySQL, each of n rows that is still at
// version d.ov with the values of d. Args, per row: key, payload, version,
// expires, deadline, subject, stored version (rowArgs); then updated ms.
func (q *queries) updateN(n int) string {
	t := q.table
	if q.d == dialectMySQL {
		// The casts keep the payload and subject binary and the numbers
		// integers whatever the connection's character set.
		return "UPDATE " + mysqlRows(n, "k", "BINARY", "p", "BINARY", "v", "SIGNED", "e", "SIGNED",
			"dl", "SIGNED", "s", "BINARY", "ov", "SIGNED") +
			" AS d STRAIGHT_JOIN " + t + " ON " + q.claimed() + " SET " + q.assignments()
	}
	var b strings.Builder
	b.WriteString("WITH d(k, p, v, e, dl, s, ov) AS (VALUES ")
	writeList(&b, n, "( ?, ?, ?, ?, ?, ?, ?)")
	b.WriteString(") UPDATE " + t + " SET " + q.assignments() + " FROM d WHERE " + q.claimed())
	return b.String()
}

// insertN inserts, on SQLite and MySQL, each of n rows whose key is not
// stored, and skips the others. SQLite returns the keys inserted; MySQL
// counts them. Args, per row: key, payload, version, expires, deadline,
// subject, created ms, updated ms.
func (q *queries) insertN(n int) string {
	var b strings.Builder
	if q.d == dialectMySQL {
		b.WriteString("INSERT IGNORE")
	} else {
		b.WriteString("INSERT")
	}
	b.WriteString(" INTO " + q.table + " (" + q.cols + ", " + q.createdAt + ", " + q.updatedAt + ") VALUES ")
	writeList(&b, n, "( ?, ?, ?, ?, ?, ?, ?, ?)")
	if q.d != dialectMySQL {
		b.WriteString(" ON CONFLICT (" + q.key + ") DO NOTHING RETURNING " + q.key)
	}
	return b.String()
}

// reapDeleteN deletes, on SQLite and MySQL, each of n rows that is still
// at the version Reap claimed it at. Args on SQLite: the n keys, then n
// (key, version) pairs, so that the key list uses the primary key index;
// on MySQL: n (key, version) pairs.
func (q *queries) reapDeleteN(n int) string {
	t := q.table
	if q.d == dialectMySQL {
		return "DELETE " + t + " FROM " + mysqlRows(n, "k", "BINARY", "ov", "SIGNED") + " AS d STRAIGHT_JOIN " + t + " ON " + q.claimed()
	}
	var b strings.Builder
	b.WriteString("DELETE FROM " + t + " WHERE " + q.key + " IN ( ")
	writeList(&b, n, "?")
	b.WriteString(") AND (" + q.key + ", " + q.version + ") IN (VALUES ")
	writeList(&b, n, "( ?, ?)")
	b.WriteByte(')')
	return b.String()
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
