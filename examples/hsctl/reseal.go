package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

// errNoKeys is resealCmd's answer without seal keys in the environment.
var errNoKeys = errors.New("reseal: no seal keys: set " + setup.EnvSealKeys + " to the new ring (the key to seal with first)")

// resealCmd is "hsctl reseal": after a key rotation it rewrites every live
// session still sealed with another key of the ring under the first one
// (core.Store.Reseal), page by page, printing progress, so that the retired
// key can leave the ring once it has run to the end.
func resealCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hsctl reseal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := setup.Options{Name: "hsctl"}
	opts.AddFlags(fs, "")
	page := fs.Int("page", 500, "rows per page")
	if err := fs.Parse(args); err != nil {
		return err
	}
	keys, err := core.ParseSealKeys(os.Getenv(setup.EnvSealKeys))
	if err != nil {
		return fmt.Errorf("reseal: %w", err)
	}
	if len(keys) == 0 {
		return errNoKeys
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
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: setup.SplitServers(opts.Memcached)},
		Durable:   env.Durable,
		Seal:      core.SealConfig{Keys: keys},
		Logger:    env.Options.Logger,
		ReapMode:  core.ReapExternal, // this command only reseals
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), setup.ShutdownTimeout)
		defer cancel()
		_ = store.Close(cctx)
	}()
	start := time.Now()
	pages, total := 0, 0
	for after := ""; ; {
		next, n, err := store.Reseal(ctx, after, *page)
		total += n
		if err != nil {
			return fmt.Errorf("reseal: after %d pages (%d resealed): %w", pages, total, err)
		}
		if next == "" {
			break
		}
		pages++
		after = next
		if pages%20 == 0 {
			fmt.Fprintf(stdout, "%d pages, %d resealed so far (%s)\n", pages, total, time.Since(start).Round(time.Millisecond))
		}
	}
	fmt.Fprintf(stdout, "resealed %d rows and memcached copies in %d pages (%s)\n", total, pages, time.Since(start).Round(time.Millisecond))
	return nil
}
