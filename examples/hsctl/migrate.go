package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

const migrateAbout = `Creates the sessions table and its indexes, or adds what is missing
(gormstore.New's migration), and prints how many rows the table holds.
It reads and writes no session, so it needs no seal keys.
`

// migrateFlags defines "hsctl migrate"'s flags and returns the command.
func migrateFlags(fs *flag.FlagSet) runFunc {
	db := addDatabaseFlags(fs)
	return func(_ context.Context, stdout, _ io.Writer) error {
		if err := db.check("migrate"); err != nil {
			return err
		}
		gdb, _, err := db.open("migrate", true)
		if err != nil {
			return err
		}
		defer closeDB(gdb)
		var rows int64
		if err := gdb.Table(db.table).Count(&rows).Error; err != nil {
			return err
		}
		fmt.Fprintf(stdout, "table %s ready on %s: %d rows\n", db.table, gdb.Dialector.Name(), rows)
		return nil
	}
}
