package gormstore

import (
	"database/sql"
	"math"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/libtnb/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/hybridsession/hybridsession/core"
)

// TestNoPlaceholderAfterParenthesis checks the rule stated on queries: a
// placeholder right after "(" would make GORM split a []byte argument into
// one parameter per byte.
func TestNoPlaceholderAfterParenthesis(t *testing.T) {
	quiet := &gorm.Config{Logger: logger.Discard, DisableAutomaticPing: true}
	pg, err := gorm.Open(postgres.New(postgres.Config{DSN: "postgres://nobody@127.0.0.1:1/none"}), quiet)
	if err != nil {
		t.Fatal(err)
	}
	my, err := gorm.Open(mysql.New(mysql.Config{DSN: "nobody@tcp(127.0.0.1:1)/none", SkipInitializeWithVersion: true}), quiet)
	if err != nil {
		t.Fatal(err)
	}
	lite, err := gorm.Open(sqlite.Open(t.TempDir()+"/x.db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		db *gorm.DB
		d  dialect
	}{{pg, dialectPostgres}, {my, dialectMySQL}, {lite, dialectSQLite}} {
		q := newQueries(c.db, c.d, "t")
		if got, want := strings.Count(q.save, "?"), 8+3*q.saveConds(); got != want {
			t.Errorf("%s: save has %d placeholders, Save passes %d arguments", c.d, got, want)
		}
		stmts := []string{q.load, q.list, q.save, q.savedState, q.savedInsert, q.deleteKeys, q.deleteSubject, q.subjectKeys,
			q.reapLock, q.reapSelect, q.reapDelete, q.reapUpdate}
		if c.d != dialectPostgres {
			stmts = append(stmts, q.reapDeleteN(3), q.reapUpdateN(3))
		}
		if c.d == dialectMySQL {
			stmts = append(stmts, q.deleteSubjectKeysN(3))
		}
		for _, s := range stmts {
			if strings.Contains(s, "(?") {
				t.Errorf("%s: placeholder after a parenthesis in %s", c.d, s)
			}
		}
	}
	if sqlDB, err := lite.DB(); err == nil {
		sqlDB.Close()
	}
}

// TestBaseArgs checks that the Base check the save statement states with
// baseArgs is the one builtOnVersion (and core.Record's doc) states, at the
// edges of each bound and of int64.
func TestBaseArgs(t *testing.T) {
	const top = math.MaxInt64
	values := []uint64{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, top - 1, top, top + 1, math.MaxUint64}
	for _, b := range values {
		for _, from := range values {
			for _, to := range values {
				rec := core.Record{Base: b, UnsyncedFrom: from, UnsyncedTo: to}
				a := baseArgs(&rec)
				for _, v := range values {
					if v > top {
						continue // no stored version
					}
					sql := int64(v) <= a[0] || int64(v) >= a[1] && int64(v) <= a[2]
					if want := builtOnVersion(&rec, v); sql != want {
						t.Fatalf("Base %d, unsynced %d..%d, row version %d: args %v give %v, want %v", b, from, to, v, a, sql, want)
					}
				}
			}
		}
	}
}

func TestArrayLiterals(t *testing.T) {
	v, _ := pgTextArray{`a`, `b"c`, `d\e`, ``}.Value()
	if want := `{"a","b\"c","d\\e",""}`; v != want {
		t.Errorf("text array = %s, want %s", v, want)
	}
	v, _ = pgInt8Array{1, -2, 1 << 62}.Value()
	if want := `{1,-2,4611686018427387904}`; v != want {
		t.Errorf("bigint array = %s, want %s", v, want)
	}
	v, _ = pgByteaArray{{0, 0xff}, nil}.Value()
	if want := `{"\\x00ff","\\x"}`; v != want {
		t.Errorf("bytea array = %s, want %s", v, want)
	}
	v, _ = pgTextArray{}.Value()
	if v != "{}" {
		t.Errorf("empty array = %s", v)
	}
}

func TestFoundRowsOf(t *testing.T) {
	on, off := gomysql.NewConfig(), gomysql.NewConfig()
	on.ClientFoundRows = true
	db, _ := sql.Open("mysql", "nobody@tcp(127.0.0.1:1)/none")
	defer db.Close()
	for _, tc := range []struct {
		name string
		d    gorm.Dialector
		want int
	}{
		{"clientFoundRows=true", mysql.New(mysql.Config{DSNConfig: on}), foundRowsOn},
		{"default", mysql.New(mysql.Config{DSNConfig: off}), foundRowsOff},
		{"value dialector", mysql.Dialector{Config: &mysql.Config{DSNConfig: on}}, foundRowsOn},
		{"own connection", mysql.New(mysql.Config{DSNConfig: on, Conn: db}), foundRowsUnknown},
		{"DSN string", mysql.New(mysql.Config{DSN: "x@tcp(h)/d?clientFoundRows=true"}), foundRowsOn},
		{"postgres", postgres.New(postgres.Config{DSN: "postgres://x@h/d"}), foundRowsUnknown},
		{"nil", nil, foundRowsUnknown},
	} {
		if got := foundRowsOf(tc.d); got != tc.want {
			t.Errorf("%s: foundRowsOf = %d, want %d", tc.name, got, tc.want)
		}
	}
}
