// Command hsctl is hybridsession's operations tool: it runs the reaper,
// creates or migrates the sessions table, and prints a running cluster's
// statistics.
//
//	hsctl reap    -memcached 10.0.0.1:11211,10.0.0.2:11211 -dsn 'postgres://...' [-once] [-interval 1m]
//	hsctl migrate -dsn 'postgres://...' [-table hybrid_sessions]
//	hsctl stats   -url http://127.0.0.1:8080/metrics [-watch 5s]
//
// reap deletes the database rows of dead sessions and of tombstones past
// their deadline (optionally archiving dead sessions first, -archive FILE
// appends one JSON line per session) and rewrites the expired rows of
// sessions still alive in memcached with memcached's copy. Run it as a
// daemon, a pass every -interval, or from cron with -once (exit status 1
// if the pass failed):
//
//	*/5 * * * * /usr/local/bin/hsctl reap -once -memcached 10.0.0.1:11211 -dsn 'postgres://...'
//
// Every pass prints one summary line: rows examined, extended, archived,
// deleted, skipped, errors and duration; a long pass also prints its
// progress to stderr every -progress. Any number of reapers may run
// against one database at once. The reaper needs the app servers' seal
// keys (HYBRIDSESSION_SEAL_KEYS): it leaves rows sealed with a key it does
// not hold.
//
// stats scrapes a Prometheus endpoint that serves the metrics module's
// collector (the cluster demo's /metrics) and prints, per app server, the
// hit ratio, database reads, writes and errors, memcached errors and the
// background writer's state, each memcached node's breaker, and the
// reaper's last pass.
//
// The -memcached and -dsn flags default to HYBRIDSESSION_MEMCACHED and
// HYBRIDSESSION_DSN, as in the samples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `hsctl — hybridsession operations

usage:
  hsctl reap    [-once] [-interval 1m] [-batch 500] [-archive FILE] [-progress 2s] [-memcached ...] [-dsn ...]
  hsctl migrate [-dsn ...] [-table hybrid_sessions]
  hsctl stats   [-url http://127.0.0.1:8080/metrics] [-watch 0]

"hsctl <command> -h" lists a command's flags.
`

// errUsage reports a command line hsctl does not understand (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "hsctl:", err)
		os.Exit(1)
	}
}

// dispatch runs the command args[0] with the rest of args.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"reap":    reapCmd,
		"migrate": migrateCmd,
		"stats":   statsCmd,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "hsctl: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
	return cmd(ctx, args[1:], stdout, stderr)
}
