// Package setup is the wiring every sample shares: command-line flags and
// environment variables become the two tiers (memcached servers and a
// database), a core.Store and core.Manager per app server, an in-process
// reaper, and a server that shuts down gracefully on SIGINT or SIGTERM,
// flushing pending database syncs.
//
// A sample's main is a few lines:
//
//	opts := setup.ParseFlags("gin", "127.0.0.1:8081")
//	err := setup.Run(opts, func(m *core.Manager) (setup.Server, error) {
//		return &http.Server{Handler: ginapp.New(m)}, nil
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//
// Flags and their environment variables:
//
//	-memcached  HYBRIDSESSION_MEMCACHED  comma-separated host:port list (default 127.0.0.1:11211); "" = database-only
//	-dsn        HYBRIDSESSION_DSN        postgres://..., mysql://..., user:pass@tcp(host:port)/db, or an SQLite file (default sessions.db)
//	-listen     HYBRIDSESSION_LISTEN     the server's address
//
// The seal keys come from the environment only (a flag would show them in
// the process list):
//
//	HYBRIDSESSION_SEAL_KEYS  comma-separated base64 32-byte keys, the sealing key first
//	                         (core.ParseSealKeys); unset: a random key for this process;
//	                         set but blank or malformed: an error
package setup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/mysql"
	"github.com/hybridsession/hybridsession/gormstore/postgres"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
	"github.com/hybridsession/hybridsession/metrics"
	"gorm.io/gorm"
)

// Environment variables that set the flags' defaults.
const (
	EnvMemcached = "HYBRIDSESSION_MEMCACHED"
	EnvDSN       = "HYBRIDSESSION_DSN"
	EnvListen    = "HYBRIDSESSION_LISTEN"
	EnvSealKeys  = "HYBRIDSESSION_SEAL_KEYS"
)

// Defaults used when neither a flag nor its environment variable is set.
const (
	DefaultMemcached = "127.0.0.1:11211"
	DefaultDSN       = "sessions.db"
)

// DurableKeys are the session keys every sample writes to the database at
// once: losing memcached must never lose a login or a cart, even within
// SyncInterval.
var DurableKeys = []string{"user", "cart"}

// Options are the settings the samples share.
type Options struct {
	// Name is the sample's name, used in log lines ("gin", "cluster", ...).
	Name string
	// Memcached lists memcached servers, comma-separated host:port.
	// Empty: database-only.
	Memcached string
	// DSN selects the database: a postgres:// URL, a MySQL DSN
	// (mysql://... or user:pass@tcp(host:port)/db) or an SQLite file path.
	DSN string
	// Listen is the address the sample's server listens on.
	Listen string
	// Logger receives the samples' and the store's log lines.
	// Default: slog.Default().
	Logger *slog.Logger
}

// ParseFlags defines -memcached, -dsn and -listen on flag.CommandLine,
// with defaults from HYBRIDSESSION_MEMCACHED, HYBRIDSESSION_DSN and
// HYBRIDSESSION_LISTEN (or listen), parses the command line and returns the
// options for the sample called name.
func ParseFlags(name, listen string) Options {
	opts := Options{Name: name}
	opts.AddFlags(flag.CommandLine, listen)
	flag.Parse()
	return opts
}

// AddFlags defines -memcached, -dsn and, when listen is not "", -listen on
// fs, storing into o when fs is parsed. An environment variable that is set,
// even to "", overrides the built-in default: HYBRIDSESSION_MEMCACHED=""
// means database-only.
func (o *Options) AddFlags(fs *flag.FlagSet, listen string) {
	fs.StringVar(&o.Memcached, "memcached", env(EnvMemcached, DefaultMemcached),
		"memcached servers, comma-separated host:port; empty: database-only (env "+EnvMemcached+")")
	fs.StringVar(&o.DSN, "dsn", env(EnvDSN, DefaultDSN),
		"database: postgres://..., mysql://... or user:pass@tcp(host:port)/db, or an SQLite file (env "+EnvDSN+")")
	if listen != "" {
		fs.StringVar(&o.Listen, "listen", env(EnvListen, listen), "address to listen on (env "+EnvListen+")")
	}
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// SplitServers splits a comma-separated server list, dropping empty items:
// "" gives none.
func SplitServers(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Env holds the tiers of one process: the database, opened once, and the
// memcached servers. Each app server in the process gets its own core.Store
// and core.Manager on them (NewManager), as separate processes would.
type Env struct {
	// Options are the settings Env was opened with, defaults filled.
	Options Options
	// DB is the database; Env closes it.
	DB *gorm.DB
	// Durable is the database tier on DB.
	Durable *gormstore.Store
	// Outage wraps Durable so that the cluster demo can cut the database
	// for a while; it passes every call through until Cut.
	Outage *Outage
	// Observed wraps Outage: the tier the Stores use. It remembers the
	// reaper's last pass and times the database calls, for the metrics
	// (see the metrics module).
	Observed *metrics.Durable

	sealKeys [][]byte
	log      *slog.Logger
	mu       sync.Mutex
	stores   []*core.Store
	closed   bool
}

// OpenDSN opens the database a DSN names: the samples accept all three
// kinds, so they link all three drivers (an application imports the one
// opener it uses).
func OpenDSN(dsn string) (*gorm.DB, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgres.Open(dsn)
	case strings.HasPrefix(dsn, "mysql://"), strings.Contains(dsn, "@tcp("), strings.Contains(dsn, "@unix("):
		return mysql.Open(dsn)
	}
	return sqlite.Open(dsn)
}

// Open opens the database named by opts.DSN (creating the sessions table if
// needed) and logs which tiers are in use. It does not contact memcached:
// a memcached that is down is handled like one that fails later.
func Open(opts Options) (*Env, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DSN == "" {
		opts.DSN = DefaultDSN
	}
	log := opts.Logger.With("app", opts.Name)
	db, err := OpenDSN(opts.DSN)
	if err != nil {
		return nil, err
	}
	durable, err := gormstore.New(db, gormstore.Config{})
	if err != nil {
		closeDB(db)
		return nil, err
	}
	v, set := os.LookupEnv(EnvSealKeys)
	keys, err := core.ParseSealKeys(v)
	if err == nil && set && len(keys) == 0 {
		err = errors.New("set but holds no key") // a blank secret fails closed
	}
	if err != nil {
		closeDB(db)
		return nil, fmt.Errorf("setup: %s: %w", EnvSealKeys, err)
	}
	if len(keys) == 0 {
		keys = [][]byte{core.NewSealKey()}
		log.Warn(EnvSealKeys+" is not set: sealing sessions with a random key for this process only — "+
			"they do not survive a restart and other processes cannot open them; set it to share sessions",
			"example", EnvSealKeys+"="+core.FormatSealKey(core.NewSealKey()))
	}
	if servers := SplitServers(opts.Memcached); len(servers) == 0 {
		log.Warn("memcached: none configured — running DATABASE-ONLY: every request reads and writes the database",
			"database", db.Dialector.Name())
	} else {
		log.Info("tiers", "memcached", strings.Join(servers, ","), "database", db.Dialector.Name())
	}
	outage := &Outage{Tier: durable}
	return &Env{Options: opts, DB: db, Durable: durable, Outage: outage,
		Observed: metrics.NewDurable(outage, nil), sealKeys: keys, log: log}, nil
}

// Logger returns the logger for this process's log lines.
func (e *Env) Logger() *slog.Logger { return e.log }

// NewStore returns a new core.Store on the Env's tiers, without a reaper of
// its own (StartReaper runs the process's one). Close closes it.
func (e *Env) NewStore() (*core.Store, error) {
	return e.newStore(core.ReaperConfig{Interval: -1})
}

// newStore returns a new core.Store on the Env's tiers that runs a reaper
// with rcfg (a negative Interval: none).
func (e *Env) newStore(rcfg core.ReaperConfig) (*core.Store, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("setup: Env is closed")
	}
	s, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: SplitServers(e.Options.Memcached)},
		Durable:   e.Observed,
		Seal:      e.SealConfig(),
		Logger:    e.Options.Logger,
		Reaper:    rcfg,
	})
	if err != nil {
		return nil, err
	}
	e.stores = append(e.stores, s)
	return s, nil
}

// SealConfig returns the seal keys every Store of this Env uses.
func (e *Env) SealConfig() core.SealConfig { return core.SealConfig{Keys: e.sealKeys} }

// Stores returns the Stores made by NewStore (and StartReaper), oldest first.
func (e *Env) Stores() []*core.Store {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*core.Store(nil), e.stores...)
}

// NewManager returns a core.Manager, on a new Store, configured as every
// sample is: DurableKeys "user" and "cart", and a cookie without the Secure
// attribute.
func (e *Env) NewManager() (*core.Manager, error) {
	s, err := e.NewStore()
	if err != nil {
		return nil, err
	}
	return core.New(core.Config{
		Store:       s,
		DurableKeys: DurableKeys,
		// The samples serve plain HTTP on localhost, and browsers do not
		// send a Secure cookie over plain HTTP, so logins would not stick.
		// Behind TLS in production leave Insecure false.
		Cookie: core.CookieConfig{Insecure: true},
	})
}

// StartReaper starts the process's reaper with cfg, on a Store of its own:
// a pass runs at once and then every cfg.Interval (default 1m). Close stops
// it. An app server usually runs one like this; examples/hsctl (hsctl
// reap) is the standalone form.
func (e *Env) StartReaper(cfg core.ReaperConfig) error {
	if cfg.Interval < 0 {
		return errors.New("setup: StartReaper needs a positive ReaperConfig.Interval, or 0 for the default")
	}
	_, err := e.newStore(cfg)
	return err
}

// Close closes every Store made by NewStore and StartReaper — stopping the
// reaper and writing their pending database syncs, waiting at most until
// ctx ends — and then closes the database.
func (e *Env) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	stores := e.stores
	e.mu.Unlock()
	var errs []error
	for _, s := range stores {
		if err := s.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("setup: flush pending syncs: %w", err))
		}
	}
	errs = append(errs, closeDB(e.DB))
	return errors.Join(errs...)
}

func closeDB(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// ShutdownTimeout bounds a graceful shutdown: in-flight requests, then the
// flush of pending database syncs, each get this long.
const ShutdownTimeout = 10 * time.Second

// ReadHeaderTimeout is the samples' http.Server.ReadHeaderTimeout: a slow
// client may not hold a connection open forever (Slowloris).
const ReadHeaderTimeout = 10 * time.Second
