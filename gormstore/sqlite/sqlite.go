// Package sqlite opens SQLite databases for gormstore with a pure-Go
// driver (no cgo), and starts a complete session setup on one in a single
// call — the embedded default for one server, a demo or a first try.
//
// From nothing to sessions in a gin app:
//
//	m, closeSessions, err := sqlite.Start("sessions.db", "127.0.0.1:11211")
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer closeSessions()
//	r.Use(ginsession.New(m, ginsession.Config{}))
//
// The driver is github.com/libtnb/sqlite, a GORM dialector directly on
// modernc.org/sqlite (SQLite compiled to Go). A program that imports this
// package links neither the PostgreSQL nor the MySQL driver.
package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// pragmas are the settings Open applies to every connection: write-ahead
// logging, so readers never wait for the writer, and a 5 s wait for the
// write lock instead of an immediate SQLITE_BUSY.
const pragmas = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"

// closeTimeout bounds how long Start's close function waits for pending
// database writes.
const closeTimeout = 10 * time.Second

// Open opens the SQLite database file at path (created if missing). An
// optional "sqlite://", "sqlite:" prefix is removed; "file:" URIs are
// passed whole.
//
// Every connection uses WAL mode and a busy timeout of 5000 ms; query
// parameters already in path (after a '?', e.g. "_pragma=synchronous(NORMAL)")
// are kept. The pool is limited to one open connection, which serialises
// the Store's statements in this process: SQLite allows one writer at a time
// anyway, and one connection never meets SQLITE_BUSY from its own process
// (other processes sharing the file wait up to the busy timeout). Change it
// with db.DB() and SetMaxOpenConns; the Store is correct either way.
// Measured on a 2-core machine: parallel Saves take about 0.2 ms with one
// connection, and 0.26 to 0.94 ms with four (writers then sleep in SQLite's
// busy handler); parallel Loads take 77 µs with one and 57 µs with four.
//
// GORM's logger is silenced: gormstore returns every error it meets.
// Close the database with db.DB() and Close when done; gormstore.New does
// not.
func Open(path string) (*gorm.DB, error) {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "sqlite://"), "sqlite:")
	dsn := path
	if strings.Contains(dsn, "?") {
		dsn += "&" + pragmas
	} else {
		dsn += "?" + pragmas
	}
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("gormstore/sqlite: open %s: %w", path, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("gormstore/sqlite: open %s: %w", path, err)
	}
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetMaxIdleConns(1)
	sqlDB.SetConnMaxIdleTime(0) // keep the connection: an in-memory database lives in it
	return db, nil
}

// Start opens (creating if missing) the SQLite database at path, and
// builds on it, all with their defaults, the durable tier
// (gormstore.New), a core.Store on the given memcached servers (none:
// database only) with its in-process reaper, and a core.Manager. It returns
// the Manager for an adapter's middleware (or Manager.Handler), and a
// function that stops the reaper, flushes the pending database writes
// (waiting up to 10 s) and closes the database: call it after the HTTP
// server has drained.
//
// Sessions are sealed (core.SealConfig): with the keys in the environment
// variable HYBRIDSESSION_SEAL_KEYS (core.ParseSealKeys) when it is set, and
// otherwise with a key kept in the file path + ".sealkey" (path without
// its query), created with mode 0600 on first use — so sessions survive
// restarts; an in-memory database gets a key that lives as long. Every app server
// sharing the sessions needs the same keys: set the variable on each.
// Start fails rather than store sessions unsealed or under a new key when
// the variable is set but holds no valid key, or when the key file is
// empty, malformed, a symbolic link, or readable by group or others.
//
// The session cookie is Secure, as with core.Config's defaults: browsers
// send it over HTTPS and to http://localhost (Chrome, Firefox, curl;
// Safari does not). The Manager logs a warning the first time it sets it
// on a plain-HTTP request. When you need another setting, build the parts
// yourself: Open, gormstore.New, core.NewStore, core.New.
func Start(path string, memcached ...string) (*core.Manager, func() error, error) {
	keys, err := sealKeys(path)
	if err != nil {
		return nil, nil, err
	}
	db, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	sqlDB, _ := db.DB() // Open checked it
	durable, err := gormstore.New(db, gormstore.Config{})
	if err != nil {
		return nil, nil, errors.Join(err, sqlDB.Close())
	}
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: memcached},
		Durable:   durable,
		Seal:      core.SealConfig{Keys: keys},
	})
	if err != nil {
		return nil, nil, errors.Join(err, sqlDB.Close())
	}
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		return nil, nil, errors.Join(err, store.Close(context.Background()), sqlDB.Close())
	}
	return m, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		return errors.Join(store.Close(ctx), sqlDB.Close())
	}, nil
}

// SealKeysEnv names the environment variable Start reads seal keys from.
const SealKeysEnv = "HYBRIDSESSION_SEAL_KEYS"

// sealKeys returns Start's key ring: SealKeysEnv's when it is set, otherwise
// the key in path + ".sealkey", created on first use. Every doubtful source
// is an error, never an unsealed or freshly keyed Store (OWASP: fail
// securely): the variable set but holding no key, a key file that is empty
// or malformed (a crash while it was written), a symbolic link, or readable
// by anyone but its owner.
func sealKeys(path string) ([][]byte, error) {
	if v, ok := os.LookupEnv(SealKeysEnv); ok {
		keys, err := core.ParseSealKeys(v)
		if err == nil && len(keys) == 0 {
			err = errors.New("no key in it")
		}
		if err != nil {
			return nil, fmt.Errorf("gormstore/sqlite: %s: %w", SealKeysEnv, err)
		}
		return keys, nil
	}
	file, _, _ := strings.Cut(path, "?")
	file = strings.TrimPrefix(file, "file:")
	if file == "" || strings.HasPrefix(file, ":memory:") {
		return [][]byte{core.NewSealKey()}, nil // the database dies with the process too
	}
	file += ".sealkey"
	keys, err := readKeyFile(file)
	if !errors.Is(err, os.ErrNotExist) {
		return keys, err
	}
	return createKeyFile(file)
}

// readKeyFile reads the key ring kept in file, refusing a file that is a
// symbolic link, is readable or writable by group or others, or holds no
// valid key. A missing file is an error wrapping os.ErrNotExist.
func readKeyFile(file string) ([][]byte, error) {
	fi, err := os.Lstat(file)
	switch {
	case err != nil:
		return nil, fmt.Errorf("gormstore/sqlite: %w", err)
	case fi.Mode()&os.ModeSymlink != 0:
		return nil, fmt.Errorf("gormstore/sqlite: %s is a symbolic link; keep the key in a regular file", file)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("gormstore/sqlite: %s has mode %04o; the key must be private to its owner (chmod 600)",
			file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("gormstore/sqlite: %w", err)
	}
	keys, err := core.ParseSealKeys(string(b))
	if err == nil && len(keys) == 0 {
		err = errors.New("no key in it; restore it from a backup, or delete it to start over with every user logged out")
	}
	if err != nil {
		return nil, fmt.Errorf("gormstore/sqlite: %s: %w", file, err)
	}
	return keys, nil
}

// createKeyFile makes a new key and keeps it in file with mode 0600, whole
// or not at all: it is written and flushed under a temporary name, then
// linked into place, which fails if another process created file first (its
// key is then used).
func createKeyFile(file string) ([][]byte, error) {
	key := core.NewSealKey()
	tmp, err := os.CreateTemp(filepath.Dir(file), ".sealkey-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("gormstore/sqlite: keep the seal key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(core.FormatSealKey(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if err = errors.Join(err, tmp.Close()); err == nil {
		err = os.Link(tmp.Name(), file)
	}
	switch {
	case errors.Is(err, os.ErrExist):
		return readKeyFile(file)
	case err != nil:
		return nil, fmt.Errorf("gormstore/sqlite: keep the seal key: %w", err)
	}
	return [][]byte{key}, nil
}
