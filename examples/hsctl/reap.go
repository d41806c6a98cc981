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
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

const reapAbout = `Runs the reaper: deletes the database rows of dead sessions and of
tombstones past their deadline (after appending each dead session to
-archive FILE, when given) and rewrites the expired rows of sessions still
alive in memcached with memcached's copy. A pass every -interval until
interrupted, or one pass with -once (for cron: exit status 1 if it failed).
Each pass prints a summary line; a long one reports its progress on stderr.

It needs the app servers' seal keys in ` + setup.EnvSealKeys + ` (comma-separated
base64 keys, as theirs) and refuses to start without them. The table must
exist (hsctl migrate creates it). -memcached "" reaps a database-only
deployment: every expired row is judged from the database alone.
`

// reapFlags defines "hsctl reap"'s flags and returns the command.
func reapFlags(fs *flag.FlagSet) runFunc {
	db := addDatabaseFlags(fs)
	memcached := fs.String("memcached", envOr(setup.EnvMemcached, setup.DefaultMemcached),
		"memcached servers, comma-separated host:port, as the app servers'; empty: database-only (env "+setup.EnvMemcached+")")
	once := fs.Bool("once", false, "make one pass and exit (for cron)")
	interval := fs.Duration("interval", time.Minute, "time between passes")
	batch := fs.Int("batch", 500, "rows per database transaction and memcached GetMulti")
	archive := fs.String("archive", "", "append each archived session to this file as a JSON line")
	progress := fs.Duration("progress", 2*time.Second, "during a long pass, print the rows examined so far this often (0: never)")
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		if err := db.check("reap"); err != nil {
			return err
		}
		if *interval <= 0 || *batch <= 0 {
			return refusef("reap: -interval and -batch must be positive")
		}
		keys, err := sealKeys("reap")
		if err != nil {
			return err
		}
		cfg := config{db: *db, memcached: *memcached, keys: keys, once: *once, interval: *interval, batch: *batch,
			archive: *archive, progress: *progress, progressOut: stderr}
		return run(ctx, cfg, stdout)
	}
}

// envOr returns the environment variable key when it is set, even to "",
// and def otherwise.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// sealKeys returns the key ring in HYBRIDSESSION_SEAL_KEYS, refusing to go
// on when it is unset, blank or malformed: a reaper without the app
// servers' keys can read no row.
func sealKeys(cmd string) ([][]byte, error) {
	v, ok := os.LookupEnv(setup.EnvSealKeys)
	if !ok {
		return nil, refusef("%s: %s is not set: give it the app servers' seal keys", cmd, setup.EnvSealKeys)
	}
	keys, err := core.ParseSealKeys(v)
	if err == nil && len(keys) == 0 {
		err = errors.New("set but holds no key")
	}
	if err != nil {
		return nil, refusef("%s: %s: %v", cmd, setup.EnvSealKeys, err)
	}
	return keys, nil
}

// config is what a reaper run needs, checked by reapFlags' command.
type config struct {
	db        database
	memcached string   // comma-separated host:port; "": database-only
	keys      [][]byte // the app servers' seal keys
	once      bool
	interval  time.Duration
	batch     int
	archive   string
	// progress is how often a pass in progress reports its rows to
	// progressOut; 0 or a nil progressOut: never.
	progress    time.Duration
	progressOut io.Writer
}

// run makes one pass (cfg.once) or a pass every cfg.interval until ctx
// ends, writing a summary line per pass to out. With cfg.once it returns
// the pass's error; otherwise failed passes are reported and the next one
// follows.
func run(ctx context.Context, cfg config, out io.Writer) error {
	db, tier, err := cfg.db.open("reap", false)
	if err != nil {
		return err
	}
	defer closeDB(db)
	servers := setup.SplitServers(cfg.memcached)
	if len(servers) == 0 {
		slog.Warn("reap: no memcached servers: judging every expired row from the database alone, " +
			"which is right only when the app servers run database-only too")
	}
	durable := &progressDurable{Tier: tier, every: cfg.progress, out: cfg.progressOut}
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: servers},
		Durable:   durable,
		Seal:      core.SealConfig{Keys: cfg.keys},
		Reaper:    core.ReaperConfig{Interval: -1}, // none in the Store: this command is the reaper
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), setup.ShutdownTimeout)
		defer cancel()
		_ = store.Close(cctx)
	}()
	rcfg := core.ReaperConfig{Interval: cfg.interval, Batch: cfg.batch}
	var archivedN atomic.Int64 // sessions the archive hook wrote
	if cfg.archive != "" {
		f, err := os.OpenFile(cfg.archive, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		rcfg.Archive = archiveTo(f, &archivedN)
	}
	reaper, err := store.NewReaper(rcfg)
	if err != nil {
		return err
	}
	return passes(ctx, cfg, store, reaper, durable, &archivedN, out)
}

// passes runs the reaper's passes for run and prints their summaries.
func passes(ctx context.Context, cfg config, store *core.Store, reaper *core.Reaper, durable *progressDurable,
	archivedN *atomic.Int64, out io.Writer) error {
	t := time.NewTicker(cfg.interval)
	defer t.Stop()
	for {
		before, start := store.Stats(), time.Now()
		durable.begin(start)
		archivedN.Store(0)
		err := reaper.RunOnce(ctx)
		rep := report(before, store.Stats(), durable.claimed(), archivedN.Load(), time.Since(start))
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

// report sums up a pass: the rows its batches claimed, the sessions it
// archived, and what the Store's reaper counters grew by from before to
// after.
func report(before, after core.Stats, examined int, archived int64, d time.Duration) string {
	return fmt.Sprintf("examined=%d extended=%d archived=%d deleted=%d errors=%d duration=%s",
		examined, after.ReapExtended-before.ReapExtended, archived, after.ReapDeleted-before.ReapDeleted,
		after.ReapErrors-before.ReapErrors, d.Round(time.Millisecond))
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
	Codec        uint8          `json:"codec"`
	Values       map[string]any `json:"values,omitempty"`
	Payload      []byte         `json:"payload,omitempty"`
}

// archiveTo returns an archive hook appending JSON lines to f, one write
// per session, so that a failed write keeps the row for the next pass.
// A batch that fails after its lines are written is archived again next
// time: the file is at-least-once.
func archiveTo(f *os.File, n *atomic.Int64) func(context.Context, core.ArchivedSession) error {
	return func(_ context.Context, s core.ArchivedSession) error {
		a := archived{
			Key: s.Key, Subject: s.Subject, Created: s.Created, LastActivity: s.LastActivity,
			Deadline: s.Deadline, Codec: s.Codec, Values: s.Values,
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
		if _, err = f.Write(append(b, '\n')); err == nil {
			n.Add(1)
		}
		return err
	}
}

// progressDurable counts the rows the reaper's batches claim in a pass,
// and reports a long pass as it goes: every `every` it prints the rows
// claimed so far.
type progressDurable struct {
	durable.Tier
	every time.Duration
	out   io.Writer

	mu       sync.Mutex
	start    time.Time
	rows     int
	reported time.Time
}

// begin starts counting a pass that starts at t.
func (p *progressDurable) begin(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start, p.rows, p.reported = t, 0, t
}

// claimed returns the rows claimed since begin.
func (p *progressDurable) claimed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rows
}

// Reap runs the batch and reports the pass's progress when due.
func (p *progressDurable) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	n, err := p.Tier.Reap(ctx, now, limit, judge)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows += n
	if p.every <= 0 || p.out == nil {
		return n, err
	}
	t := time.Now()
	if n == limit && t.Sub(p.reported) >= p.every {
		p.reported = t
		rate := float64(p.rows) / t.Sub(p.start).Seconds()
		fmt.Fprintf(p.out, "%s pass in progress: %d rows examined (%.0f rows/s)\n", t.Format(time.RFC3339), p.rows, rate)
	}
	return n, err
}
