package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/echo/echoapp"
	"github.com/hybridsession/hybridsession/examples/echo5/echo5app"
	"github.com/hybridsession/hybridsession/examples/fiber/fiberapp"
	"github.com/hybridsession/hybridsession/examples/fiber3/fiber3app"
	"github.com/hybridsession/hybridsession/examples/gin/ginapp"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/examples/nethttp/nethttpapp"
)

// backends are the app servers of the cluster, in round-robin order. Each
// gets its own core.Store and core.Manager, as separate processes would:
// they share sessions only through memcached and the database.
var backends = []struct {
	name  string
	build func(m *core.Manager) setup.Server
}{
	{ginapp.Name, func(m *core.Manager) setup.Server {
		return &http.Server{Handler: ginapp.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}
	}},
	{echoapp.Name, func(m *core.Manager) setup.Server {
		return &http.Server{Handler: echoapp.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}
	}},
	{fiberapp.Name, func(m *core.Manager) setup.Server {
		return fiberapp.Server{App: fiberapp.New(m)}
	}},
	{nethttpapp.Name, func(m *core.Manager) setup.Server {
		return &http.Server{Handler: nethttpapp.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}
	}},
	{echo5app.Name, func(m *core.Manager) setup.Server {
		return &http.Server{Handler: echo5app.New(m), ReadHeaderTimeout: setup.ReadHeaderTimeout}
	}},
	{fiber3app.Name, func(m *core.Manager) setup.Server {
		return fiber3app.Server{App: fiber3app.New(m)}
	}},
}

// Backend is one app server of a running cluster.
type Backend struct {
	Name string
	URL  string
}

// Cluster is a running cluster: the app servers, the load balancer in
// front of them, and the tiers they share.
type Cluster struct {
	// URL is the load balancer's address, http://host:port.
	URL string
	// Backends are the app servers, in round-robin order.
	Backends []Backend

	env   *setup.Env
	log   *slog.Logger
	proxy *running
	apps  []*running
	ops   *opsPanel
	nodes *nodes // nil: no memcached processes of our own
}

// running is a server being served.
type running struct {
	srv  setup.Server
	done chan error // Serve's result
}

// start opens the tiers named by opts — first starting spawn memcached
// processes of its own in place of opts.Memcached when spawn > 0 —, starts
// an in-process reaper, the gin, echo v4, fiber v2, net/http, echo v5 and
// fiber v3 apps on free loopback ports and a round-robin reverse proxy on
// opts.Listen, which also serves the operator panel's
// /ops/ endpoints and /metrics. Close stops it all.
func start(opts setup.Options, spawn int) (_ *Cluster, err error) {
	var procs *nodes
	if spawn > 0 {
		if procs, err = newNodes(); err != nil {
			return nil, err
		}
		var addrs []string
		for range spawn {
			a, err := procs.spawn()
			if err != nil {
				procs.stop()
				return nil, err
			}
			addrs = append(addrs, a)
		}
		opts.Memcached = strings.Join(addrs, ",")
	}
	env, err := setup.Open(opts)
	if err != nil {
		if procs != nil {
			procs.stop()
		}
		return nil, err
	}
	c := &Cluster{env: env, log: env.Logger(), nodes: procs}
	defer func() {
		if err != nil {
			_ = c.Close(context.Background())
		}
	}()
	// A pass every 15s, so that the operator panel shows the reaper at work.
	if err := env.StartReaper(core.ReaperConfig{Interval: 15 * time.Second}); err != nil {
		return nil, err
	}
	names := map[*core.Store]string{}

	var targets []*url.URL
	for _, b := range backends {
		m, err := env.NewManager()
		if err != nil {
			return nil, err
		}
		names[m.Store()] = b.name
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		u := &url.URL{Scheme: "http", Host: l.Addr().String()}
		c.apps = append(c.apps, c.serve(b.name, b.build(m), l))
		c.Backends = append(c.Backends, Backend{Name: b.name, URL: u.String()})
		targets = append(targets, u)
	}

	l, err := net.Listen("tcp", env.Options.Listen)
	if err != nil {
		return nil, err
	}
	c.URL = "http://" + l.Addr().String()
	if c.ops, err = newOpsPanel(env, procs, names); err != nil {
		_ = l.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	c.ops.routes(mux)
	mux.Handle("/", roundRobin(targets, c.log))
	proxy := &http.Server{Handler: mux, ReadHeaderTimeout: setup.ReadHeaderTimeout}
	c.proxy = c.serve("proxy", proxy, l)
	return c, nil
}

// serve runs srv on l in a goroutine.
func (c *Cluster) serve(name string, srv setup.Server, l net.Listener) *running {
	r := &running{srv: srv, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		} else if err != nil {
			c.log.Error("server stopped", "server", name, "error", err)
		}
		r.done <- err
	}()
	return r
}

// stop shuts r down and waits for its Serve to return.
func (r *running) stop(ctx context.Context) error {
	return errors.Join(r.srv.Shutdown(ctx), <-r.done)
}

// roundRobin is the load balancer: each request goes to the next target.
// The apps name themselves in X-Served-By, which it passes on.
func roundRobin(targets []*url.URL, log *slog.Logger) http.Handler {
	var next atomic.Uint64
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[(next.Add(1)-1)%uint64(len(targets))])
			r.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("proxy: backend failed", "backend", r.URL.Host, "error", err)
			http.Error(w, "backend unavailable", http.StatusBadGateway)
		},
	}
}

// Close shuts the proxy and the apps down, waiting for requests in flight
// until ctx ends, then stops the reaper and closes the tiers, writing the
// pending database syncs.
func (c *Cluster) Close(ctx context.Context) error {
	var errs []error
	if c.proxy != nil { // first, so that no request reaches a stopped app
		errs = append(errs, c.proxy.stop(ctx))
	}
	for _, a := range c.apps {
		errs = append(errs, a.stop(ctx))
	}
	c.proxy, c.apps = nil, nil
	if c.ops != nil {
		c.ops.close()
		c.ops = nil
	}
	errs = append(errs, c.env.Close(ctx))
	if c.nodes != nil {
		c.nodes.stop()
	}
	return errors.Join(errs...)
}

// String lists the cluster's addresses, one per line.
func (c *Cluster) String() string {
	s := fmt.Sprintf("hybridsession cluster demo: open %s/ (Prometheus: %s/metrics)\n", c.URL, c.URL)
	for _, b := range c.Backends {
		s += fmt.Sprintf("  %-5s app server: %s/\n", b.Name, b.URL)
	}
	return s
}
