package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/gormstore"
)

// migrateCmd is "hsctl migrate": it creates the sessions table and its
// indexes, or adds what is missing (gormstore.New's migration), and says
// how many rows the table holds.
func migrateCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hsctl migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := setup.Options{Name: "hsctl"}
	opts.AddFlags(fs, "")
	table := fs.String("table", gormstore.DefaultTableName, "the sessions table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := setup.OpenDSN(opts.DSN)
	if err != nil {
		return err
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if _, err := gormstore.New(db, gormstore.Config{TableName: *table}); err != nil {
		return fmt.Errorf("migrating %s: %w", *table, err)
	}
	var rows int64
	if err := db.Table(*table).Count(&rows).Error; err != nil {
		return err
	}
	fmt.Fprintf(stdout, "table %s ready on %s: %d rows\n", *table, db.Dialector.Name(), rows)
	return nil
}
