package setup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/hybridsession/hybridsession/core"
)

// Server is what Run serves: *http.Server as it is, or a small wrapper
// around another framework's server (fiber's App).
type Server interface {
	// Serve accepts connections on l until Shutdown; it returns
	// http.ErrServerClosed (or nil) after a Shutdown.
	Serve(l net.Listener) error
	// Shutdown stops accepting connections and waits for the requests in
	// flight, at most until ctx ends.
	Shutdown(ctx context.Context) error
}

// Run is a sample's main: it opens the tiers (Open), starts an in-process
// reaper, builds the sample's server with a fresh Manager, listens on
// opts.Listen and serves until SIGINT or SIGTERM. Then it shuts the server
// down gracefully, stops the reaper and closes the Store, which writes the
// pending database syncs. A second signal kills the process at once.
func Run(opts Options, build func(m *core.Manager) (Server, error)) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // from now on a second signal ends the process at once
	}()

	env, err := Open(opts)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := env.Close(ctx); err != nil {
			env.log.Error("closing the store", "error", err)
		}
	}()
	if err := env.StartReaper(core.ReaperConfig{}); err != nil {
		return err
	}
	m, err := env.NewManager()
	if err != nil {
		return err
	}
	srv, err := build(m)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", env.Options.Listen)
	if err != nil {
		return err
	}
	env.log.Info(fmt.Sprintf("%s sample: open http://%s/", opts.Name, l.Addr()))
	return Serve(ctx, env, srv, l)
}

// Serve serves srv on l until ctx ends, then shuts it down within
// ShutdownTimeout. It returns the server's error if it stopped by itself.
func Serve(ctx context.Context, env *Env, srv Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		return err
	case <-ctx.Done():
	}
	env.log.Info("shutting down: finishing requests, then flushing pending database syncs")
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
