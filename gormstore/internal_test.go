package gormstore

import (
	"strings"
	"testing"

	"github.com/hybridsession/hybridsession/core/durable"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/utils/tests"
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
	// The SQLite driver quotes names with backticks, as GORM's dummy
	// dialector does; this module does not link the driver.
	lite, err := gorm.Open(tests.DummyDialector{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		db *gorm.DB
		d  dialect
	}{{pg, dialectPostgres}, {my, dialectMySQL}, {lite, dialectSQLite}} {
		q := newQueries(c.db, c.d, "t")
		stmts := []string{q.load, q.list, q.listSubject, q.write, q.update, q.lockKeys, q.reapLock, q.reapSelect, q.reapDelete}
		if c.d != dialectPostgres {
			stmts = append(stmts, q.updateN(3), q.insertN(3), q.reapDeleteN(3))
		}
		for _, s := range stmts {
			if strings.Contains(s, "(?") {
				t.Errorf("%s: placeholder after a parenthesis in %s", c.d, s)
			}
		}
		if c.d != dialectPostgres {
			for _, n := range []int{1, writeChunk} {
				if got, want := strings.Count(q.updateN(n), "?"), len(updateArgs(make([]durable.Write, n), 0)); got != want {
					t.Errorf("%s: updateN(%d) has %d placeholders, updateArgs gives %d", c.d, n, got, want)
				}
				if got, want := strings.Count(q.insertN(n), "?"), len(insertArgs(make([]durable.Write, n), 0)); got != want {
					t.Errorf("%s: insertN(%d) has %d placeholders, insertArgs gives %d", c.d, n, got, want)
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
