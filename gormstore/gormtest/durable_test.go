package gormtest_test

import (
	"strings"
	"testing"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
)

// The conformance suite, once per database and connection setting.

func TestDurableSQLite(t *testing.T) {
	durabletest.Run(t, func(t *testing.T) durable.Tier {
		s, _ := newStore(t, openSQLite(t))
		return s
	})
}

// TestDurableSQLitePool runs the suite with several connections to one
// SQLite file, where writers meet SQLITE_BUSY and wait for each other.
func TestDurableSQLitePool(t *testing.T) {
	durabletest.Run(t, func(t *testing.T) durable.Tier {
		db := openSQLite(t)
		sqlDB, err := db.DB()
		if err != nil {
			t.Fatal(err)
		}
		sqlDB.SetMaxOpenConns(4)
		s, _ := newStore(t, db)
		return s
	})
}

func TestDurablePostgres(t *testing.T) {
	db := openServer(t, postgresEnv)
	durabletest.Run(t, func(t *testing.T) durable.Tier {
		s, _ := newStore(t, db)
		return s
	})
}

func TestDurableMySQL(t *testing.T) {
	db := openServer(t, mysqlEnv)
	durabletest.Run(t, func(t *testing.T) durable.Tier {
		s, _ := newStore(t, db)
		return s
	})
}

// TestDurableMySQLClientFoundRows runs the suite with go-sql-driver's
// clientFoundRows=true, which changes how MySQL counts the rows an UPDATE
// affects; Write checks the counts of its UPDATE and INSERT IGNORE.
func TestDurableMySQLClientFoundRows(t *testing.T) {
	dsn := gormtest.ServerDSN(t, mysqlEnv)
	if strings.Contains(dsn, "?") {
		dsn += "&clientFoundRows=true"
	} else {
		dsn += "?clientFoundRows=true"
	}
	db, err := gormtest.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDB(t, db) })
	durabletest.Run(t, func(t *testing.T) durable.Tier {
		s, _ := newStore(t, db)
		return s
	})
}
