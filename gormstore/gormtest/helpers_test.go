package gormtest_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

// The servers the tests use when these variables are set. On the
// development machine:
//
//	HYBRIDSESSION_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	HYBRIDSESSION_MYSQL_DSN='root:@tcp(127.0.0.1:3306)/test?parseTime=true'
//
// Any form gormtest.Open accepts works. When one is unset the tests for that
// database are skipped, or fail if CI is set.
const (
	postgresEnv = gormtest.PostgresEnv
	mysqlEnv    = gormtest.MySQLEnv
)

// openServer opens the database named by env for the whole test binary
// (one pool per DSN) and returns it; it skips when env is unset.
func openServer(t testing.TB, env string) *gorm.DB {
	t.Helper()
	dsn := gormtest.ServerDSN(t, env)
	serversMu.Lock()
	defer serversMu.Unlock()
	if db, ok := servers[dsn]; ok {
		return db
	}
	db, err := gormtest.Open(dsn)
	if err != nil {
		t.Fatalf("open %s: %v", env, err)
	}
	servers[dsn] = db
	return db
}

var (
	serversMu sync.Mutex
	servers   = map[string]*gorm.DB{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, db := range servers {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	}
	os.Exit(code)
}

// openSQLite opens a fresh SQLite database file in a temporary directory,
// closed when t ends.
func openSQLite(t testing.TB) *gorm.DB {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "sessions.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDB(t, db) })
	return db
}

func closeDB(t testing.TB, db *gorm.DB) {
	sqlDB, err := db.DB()
	if err != nil {
		t.Error(err)
		return
	}
	if err := sqlDB.Close(); err != nil {
		t.Error(err)
	}
}

// tableName returns a table name no other test uses, so that tests may run
// in parallel and reruns start clean.
func tableName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "hs_test_" + hex.EncodeToString(b)
}

// newStore returns a Store on a new table of db, dropped when t ends.
func newStore(t testing.TB, db *gorm.DB) (*gormstore.Store, string) {
	t.Helper()
	name := tableName(t)
	s, err := gormstore.New(db, gormstore.Config{TableName: name})
	t.Cleanup(func() {
		if err := db.Migrator().DropTable(name); err != nil {
			t.Errorf("drop table %s: %v", name, err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, name
}

// database is one of the databases the tests run on.
type database struct {
	name string
	open func(t testing.TB) *gorm.DB
}

var databases = []database{
	{"sqlite", openSQLite},
	{"postgres", func(t testing.TB) *gorm.DB { return openServer(t, postgresEnv) }},
	{"mysql", func(t testing.TB) *gorm.DB { return openServer(t, mysqlEnv) }},
}

// eachDatabase runs fn as a subtest per database.
func eachDatabase(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) { fn(t, d.open(t)) })
	}
}
