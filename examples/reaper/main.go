// Command reaper runs hybridsession's reaper against the memcached servers
// and the database of a deployment: it deletes the database rows of dead
// sessions (optionally archiving them first) and extends the rows of
// sessions still alive in memcached with memcached's latest copy.
//
// Run it as a daemon, one pass every -interval:
//
//	go run ./examples/reaper -memcached 10.0.0.1:11211,10.0.0.2:11211 -dsn 'postgres://...' -interval 1m
//
// or from cron with -once, one pass and exit (status 1 if the pass failed):
//
//	*/5 * * * * /usr/local/bin/reaper -once -memcached 10.0.0.1:11211 -dsn 'postgres://...'
//
// Every pass prints one summary line: examined, extended, archived,
// deleted, skipped, errors and duration. With -archive FILE each archived
// session is appended to FILE as a JSON line before its row is deleted.
// Any number of reapers may run against one database at once.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

func main() {
	opts := setup.Options{Name: "reaper"}
	opts.AddFlags(flag.CommandLine, "")
	once := flag.Bool("once", false, "make one pass and exit (for cron)")
	interval := flag.Duration("interval", time.Minute, "time between passes")
	batch := flag.Int("batch", 500, "rows per database transaction and memcached GetMulti")
	archive := flag.String("archive", "", "append each archived session to this file as a JSON line")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, config{once: *once, interval: *interval, batch: *batch, archive: *archive}, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		os.Exit(1)
	}
}

type config struct {
	once     bool
	interval time.Duration
	batch    int
	archive  string
}

// run makes one pass (cfg.once) or a pass every cfg.interval until ctx
// ends, writing a summary line per pass to out. With cfg.once it returns
// the pass's error; otherwise failed passes are reported and the next one
// follows.
func run(ctx context.Context, opts setup.Options, cfg config, out io.Writer) error {
	if cfg.interval <= 0 || cfg.batch <= 0 {
		return errors.New("-interval and -batch must be positive")
	}
	env, err := setup.Open(opts)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), setup.ShutdownTimeout)
		defer cancel()
		_ = env.Close(cctx)
	}()
	store, err := env.NewStore()
	if err != nil {
		return err
	}
	rcfg := core.ReaperConfig{Interval: cfg.interval, Batch: cfg.batch}
	if cfg.archive != "" {
		f, err := os.OpenFile(cfg.archive, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		rcfg.Archive = archiveTo(f)
	}
	reaper, err := store.NewReaper(rcfg)
	if err != nil {
		return err
	}

	t := time.NewTicker(cfg.interval)
	defer t.Stop()
	for {
		rep, err := reaper.RunOnce(ctx)
		if ctx.Err() != nil {
			fmt.Fprintf(out, "%s pass interrupted: %s\n", time.Now().Format(time.RFC3339), rep)
			return nil
		}
		line := fmt.Sprintf("%s pass: %s", time.Now().Format(time.RFC3339), rep)
		if err != nil {
			line += " failed: " + err.Error()
		}
		fmt.Fprintln(out, line)
		if cfg.once {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// archived is one line of the -archive file. Values are the decoded
// session values; Payload (base64) appears only when no codec could decode
// them. The token is not known: Key is its hash.
type archived struct {
	Key          string         `json:"key"`
	Subject      string         `json:"subject,omitempty"`
	Created      time.Time      `json:"created"`
	LastActivity time.Time      `json:"last_activity"`
	Deadline     time.Time      `json:"deadline"`
	Version      uint64         `json:"version"`
	Codec        uint8          `json:"codec"`
	Values       map[string]any `json:"values,omitempty"`
	Payload      []byte         `json:"payload,omitempty"`
}

// archiveTo returns an archive hook appending JSON lines to f, one write
// per session, so that a failed write keeps the row for the next pass.
// A batch that fails after its lines are written is archived again next
// time: the file is at-least-once.
func archiveTo(f *os.File) func(context.Context, core.ArchivedSession) error {
	return func(_ context.Context, s core.ArchivedSession) error {
		a := archived{
			Key: s.Key, Subject: s.Subject, Created: s.Created, LastActivity: s.LastActivity,
			Deadline: s.Deadline, Version: s.Version, Codec: s.Codec, Values: s.Values,
		}
		if s.Values == nil {
			a.Payload = s.Payload
		}
		b, err := json.Marshal(a)
		if err != nil {
			slog.Warn("reaper: session values are not JSON; archiving the raw payload", "error", err)
			a.Values, a.Payload = nil, s.Payload
			if b, err = json.Marshal(a); err != nil {
				return err
			}
		}
		_, err = f.Write(append(b, '\n'))
		return err
	}
}
