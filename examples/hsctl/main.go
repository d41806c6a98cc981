// Command hsctl is hybridsession's operations tool: it runs the reaper,
// creates or migrates the sessions table, and prints a running cluster's
// statistics.
//
//	hsctl reap    -dsn 'postgres://...' -memcached 10.0.0.1:11211,10.0.0.2:11211 [-table hybrid_sessions] [-once] [-interval 1m]
//	hsctl migrate -dsn 'postgres://...' [-table hybrid_sessions]
//	hsctl stats   -url http://127.0.0.1:8080/metrics [-watch 5s]
//	hsctl version
//	hsctl help [command]
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
// deleted, errors and duration; a long pass also prints its
// progress to stderr every -progress. Any number of reapers may run
// against one database at once. The reaper needs the app servers' seal
// keys (HYBRIDSESSION_SEAL_KEYS) and refuses to start without them: it
// would leave every row sealed with a key it does not hold.
//
// stats scrapes a Prometheus endpoint that serves the metrics module's
// collector (the cluster demo's /metrics) and prints, per app server, the
// hit ratio, database reads, writes and errors, memcached errors and the
// background writer's state, each memcached node's breaker, and the
// reaper's last pass.
//
// The database commands, reap and migrate, take the same database flags:
// -dsn (default HYBRIDSESSION_DSN; hsctl never picks a database itself)
// and -table. reap's -memcached defaults to HYBRIDSESSION_MEMCACHED, as in
// the samples.
//
// Exit status: 0 when the command did its work; 1 when it failed (a
// database, table, memcached or endpoint it could not use, a reaper pass that
// failed); 2 when it did nothing because the command line or the
// environment is wrong or incomplete (an unknown command or flag, a bad
// flag value, no database, no seal keys).
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

// hsctl's exit statuses.
const (
	exitOK      = 0 // the command did its work
	exitFailure = 1 // the command failed
	exitUsage   = 2 // nothing was done: the command line or environment is wrong
)

// errUsage reports a command line hsctl does not understand, already
// explained on stderr (exit status 2).
var errUsage = errors.New("usage")

// refusal is a command line or environment a command will not run with,
// such as one naming no database: nothing was done (exit status 2).
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

// refusef returns a refusal; format starts with the command's name.
func refusef(format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	status := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(status)
}

// execute runs the command line args, reports a failure on stderr and
// returns hsctl's exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	var r *refusal
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &r):
		fmt.Fprintf(stderr, "hsctl: %v\n", err)
		return exitUsage
	case errors.Is(err, errUsage):
		return exitUsage
	default:
		fmt.Fprintln(stderr, "hsctl:", err)
		return exitFailure
	}
}

// runFunc runs a command with the flag values its command.flags defined.
type runFunc func(ctx context.Context, stdout, stderr io.Writer) error

// command is one of hsctl's commands.
type command struct {
	name     string
	synopsis string // its arguments, as the usage lines show them
	about    string // what it does, for "hsctl help <name>"
	// flags defines the command's flags on fs and returns the function
	// that runs it with their values once fs is parsed.
	flags func(fs *flag.FlagSet) runFunc
}

func commands() []command {
	return []command{
		{"reap", "-dsn DATABASE [-table T] [-memcached host:port,...] [-once] [-interval 1m] [-batch 500] [-archive FILE] [-progress 2s]",
			reapAbout, reapFlags},
		{"migrate", "-dsn DATABASE [-table T]", migrateAbout, migrateFlags},
		{"stats", "[-url http://127.0.0.1:8080/metrics] [-watch 0]", statsAbout, statsFlags},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// dispatch runs the command args[0] with the rest of args. Usage asked for
// goes to stdout; usage after a mistake goes to stderr, with errUsage.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		writeUsage(stderr)
		return errUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return help(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "hsctl: version takes no arguments\n\n")
			writeUsage(stderr)
			return errUsage
		}
		fmt.Fprintln(stdout, version())
		return nil
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "hsctl: unknown command %q\n\n", args[0])
		writeUsage(stderr)
		return errUsage
	}
	fs := flag.NewFlagSet("hsctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr) // the flag package's error line
	fs.Usage = func() {}
	run := cmd.flags(fs)
	err := fs.Parse(args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		writeCommandUsage(stdout, cmd, fs)
		return nil
	case err == nil && fs.NArg() > 0:
		fmt.Fprintf(stderr, "hsctl %s: unexpected argument %q\n", cmd.name, fs.Arg(0))
		fallthrough
	case err != nil:
		fmt.Fprintln(stderr)
		writeCommandUsage(stderr, cmd, fs)
		return errUsage
	}
	return run(ctx, stdout, stderr)
}
