package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/gormstore"
	"gorm.io/gorm"
)

// database is the database a database command (reap, migrate) works on,
// from the flags addDatabaseFlags defines.
type database struct {
	dsn   string
	table string
}

// addDatabaseFlags defines the database flags every database command
// takes, -dsn and -table, on fs.
func addDatabaseFlags(fs *flag.FlagSet) *database {
	d := &database{}
	// No default shown: hsctl picks no database itself, and an environment
	// DSN may hold a password.
	fs.StringVar(&d.dsn, "dsn", "", "the database (required; default $"+setup.EnvDSN+"):\n"+
		"postgres://..., mysql://... or user:pass@tcp(host:port)/db, or an SQLite file")
	fs.StringVar(&d.table, "table", gormstore.DefaultTableName, "the sessions table")
	return d
}

// check takes the database from HYBRIDSESSION_DSN when -dsn was not
// given, and refuses to go on without one.
func (d *database) check(cmd string) error {
	if d.dsn == "" {
		d.dsn = os.Getenv(setup.EnvDSN)
	}
	if strings.TrimSpace(d.dsn) == "" {
		return refusef("%s: no database: give -dsn or set %s", cmd, setup.EnvDSN)
	}
	return nil
}

// open opens the database and its sessions table. With migrate it creates
// the table and its indexes, or adds what is missing; without, the table
// must exist, so that a reaper pointed at the wrong database or table
// fails instead of reaping an empty table of its own making. Close the
// database with closeDB.
func (d *database) open(cmd string, migrate bool) (*gorm.DB, *gormstore.Store, error) {
	db, err := setup.OpenDSN(d.dsn)
	if err != nil {
		return nil, nil, err
	}
	store, err := gormstore.New(db, gormstore.Config{TableName: d.table, SkipMigration: !migrate})
	switch {
	case errors.Is(err, gormstore.ErrInvalidConfig):
		err = refusef("%s: -table: %v", cmd, err)
	case err == nil && !migrate && !db.Migrator().HasTable(d.table):
		err = fmt.Errorf("%s: the %s database has no table %s: create it with hsctl migrate, or name another with -table",
			cmd, db.Dialector.Name(), d.table)
	}
	if err != nil {
		closeDB(db)
		return nil, nil, err
	}
	return db, store, nil
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}
