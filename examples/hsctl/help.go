package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"text/tabwriter"

	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

// exitStatusText ends every usage text.
const exitStatusText = `exit status:
  0  done
  1  failed: a database, table, memcached or endpoint hsctl could not use, a reaper pass that failed
  2  nothing done: an unknown command or flag, a bad flag value, no database, no seal keys
`

// writeUsage writes hsctl's usage: its commands, how to get help on one,
// and the exit statuses.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, "hsctl — hybridsession operations\n\nusage:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  hsctl %s\t%s\n", c.name, c.synopsis)
	}
	fmt.Fprint(tw, "  hsctl help\t[command]\n")
	_ = tw.Flush()
	fmt.Fprint(w, "  hsctl version\n")
	fmt.Fprintf(w, `
"hsctl help <command>" (or "hsctl <command> -h") describes a command and its flags.
reap and migrate need a database: -dsn, or %s. reap also needs
the app servers' seal keys in %s.

%s`, setup.EnvDSN, setup.EnvSealKeys, exitStatusText)
}

// writeCommandUsage writes cmd's usage: its synopsis, what it does, its
// flags (fs, on which cmd.flags defined them) and the exit statuses.
func writeCommandUsage(w io.Writer, cmd command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: hsctl %s %s\n\n%s\nflags:\n", cmd.name, cmd.synopsis, cmd.about)
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
	fmt.Fprintf(w, "\n%s", exitStatusText)
}

// help is "hsctl help [command]": usage on stdout, or usage on stderr and
// errUsage for a command hsctl does not have.
func help(args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) == 0:
		writeUsage(stdout)
		return nil
	case len(args) > 1:
		fmt.Fprintf(stderr, "hsctl: help takes one command\n\n")
	case args[0] == "help" || args[0] == "version":
		writeUsage(stdout)
		return nil
	default:
		if cmd, ok := lookup(args[0]); ok {
			fs := flag.NewFlagSet("hsctl "+cmd.name, flag.ContinueOnError)
			cmd.flags(fs)
			writeCommandUsage(stdout, cmd, fs)
			return nil
		}
		fmt.Fprintf(stderr, "hsctl: unknown command %q\n\n", args[0])
	}
	writeUsage(stderr)
	return errUsage
}

// version is what "hsctl version" prints.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	return versionLine(bi, ok)
}

// versionLine describes the build bi: the main module's version, "(devel)"
// when it has none (a build from a work tree), and the Go version.
func versionLine(bi *debug.BuildInfo, ok bool) string {
	v, goVersion := "(devel)", runtime.Version()
	if ok && bi != nil {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
	}
	return fmt.Sprintf("hsctl %s, built with %s", v, goVersion)
}
