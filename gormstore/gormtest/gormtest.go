// Package gormtest chooses and opens the databases that tests of a durable
// tier run against: SQLite always (embedded, in the test's temporary
// directory), and PostgreSQL and MariaDB/MySQL when their DSNs are set in
// HYBRIDSESSION_POSTGRES_DSN and HYBRIDSESSION_MYSQL_DSN. It is the
// database counterpart of memcachedtest, shared by every module's tests so
// that the rule lives in one place: when the environment variable CI is
// set, a missing DSN fails the test instead of skipping it — a CI run that
// silently tests only SQLite proves nothing about the servers.
//
// It is a module of its own, which also holds gormstore's tests on those
// databases, so that the gormstore module itself does not require the
// SQLite driver (and the Go version it needs).
//
//	for _, b := range gormtest.Backends(t) {
//		t.Run(b.Name, func(t *testing.T) {
//			db := b.Open(t)
//			store, err := gormstore.New(db, gormstore.Config{TableName: gormtest.UniqueTable("t")})
//			// ...
//		})
//	}
package gormtest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/gormstore/mysql"
	"github.com/hybridsession/hybridsession/gormstore/postgres"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

// Environment variables naming the database servers to test against.
const (
	PostgresEnv = "HYBRIDSESSION_POSTGRES_DSN"
	MySQLEnv    = "HYBRIDSESSION_MYSQL_DSN"
)

// Backend is one database to test against.
type Backend struct {
	// Name is "sqlite", "postgres" or "mysql".
	Name string
	// DSN is the server's DSN, "" for SQLite.
	DSN string
}

// Backends returns SQLite, and PostgreSQL and MariaDB/MySQL when their DSNs
// are set. With CI set, a missing DSN fails t; otherwise it is logged.
func Backends(t testing.TB) []Backend {
	t.Helper()
	list := []Backend{{Name: "sqlite"}}
	for _, s := range []struct{ name, env string }{{"postgres", PostgresEnv}, {"mysql", MySQLEnv}} {
		dsn := os.Getenv(s.env)
		if dsn == "" {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not set: CI must test %s", s.env, s.name)
			}
			t.Logf("%s not set: %s not tested", s.env, s.name)
			continue
		}
		list = append(list, Backend{Name: s.name, DSN: dsn})
	}
	return list
}

// ServerDSN returns the DSN in env. When it is unset it fails t under CI
// and skips t otherwise.
func ServerDSN(t testing.TB, env string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		msg := env + " is not set: set it to a DSN to run these tests against that server"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (required when CI is set)")
		}
		t.Skip(msg)
	}
	return dsn
}

// Open opens b for t — SQLite in a file under t.TempDir(), a server through
// the package Open — and closes it when t ends.
func (b Backend) Open(t testing.TB) *gorm.DB {
	t.Helper()
	var db *gorm.DB
	var err error
	if b.DSN == "" {
		db, err = sqlite.Open(filepath.Join(t.TempDir(), "sessions.db"))
	} else {
		db, err = Open(b.DSN)
	}
	if err != nil {
		t.Fatalf("open %s: %v", b.Name, err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
	return db
}

// Open opens a database from a DSN of any of the three kinds, choosing the
// opener from its form: "postgres://" or "postgresql://" (gormstore/postgres),
// "mysql://" or a go-sql-driver DSN with "@tcp(" or "@unix("
// (gormstore/mysql), anything else an SQLite path (gormstore/sqlite). It
// links all three drivers: applications import only the opener they use.
func Open(dsn string) (*gorm.DB, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgres.Open(dsn)
	case strings.HasPrefix(dsn, "mysql://"), strings.Contains(dsn, "@tcp("), strings.Contains(dsn, "@unix("):
		return mysql.Open(dsn)
	}
	return sqlite.Open(dsn)
}

// UniqueTable returns prefix followed by random hex, a table name no other
// test uses, so tests can share a database and run again on a dirty one.
func UniqueTable(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
