package gormstore

import (
	"strings"
	"testing"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

func TestMySQLURL(t *testing.T) {
	cfg, err := mysqlURL("mysql://app:s3cret@db.example:3307/sessions?parseTime=true&clientFoundRows=true")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "app" || cfg.Passwd != "s3cret" || cfg.Net != "tcp" || cfg.Addr != "db.example:3307" ||
		cfg.DBName != "sessions" || !cfg.ParseTime || !cfg.ClientFoundRows {
		t.Errorf("mysqlURL = %+v", cfg)
	}
	cfg, err = mysqlURL("mysql://root@localhost/test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "root" || cfg.Passwd != "" || cfg.Addr != "localhost:3306" || cfg.DBName != "test" {
		t.Errorf("mysqlURL without port = %+v", cfg)
	}
	if _, err := mysqlURL("mysql://root@localhost/test?parseTime=maybe"); err == nil {
		t.Error("mysqlURL accepted an invalid driver parameter")
	}
}

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
		stmts := []string{q.load, q.list, q.save, q.savedState, q.deleteKeys, q.deleteSubject, q.subjectKeys,
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
