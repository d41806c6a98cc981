package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/gormstore"
)

const migrateAbout = `Creates the sessions table and its indexes, or adds what is missing
(gormstore.New's migration), and prints how many rows the table holds.
`

// migrateFlags defines "hsctl migrate"'s flags and returns the command.
func migrateFlags(fs *flag.FlagSet) runFunc {
	opts := setup.Options{Name: "hsctl"}
	opts.AddFlags(fs, "")
	table := fs.String("table", gormstore.DefaultTableName, "the sessions table")
	return func(_ context.Context, stdout, _ io.Writer) error {
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
}
