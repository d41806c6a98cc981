// Command cluster is the demo of a load-balanced deployment: the gin, echo
// v4, fiber v2, net/http, echo v5 and fiber v3 samples run side by side on
// six loopback ports behind a round-robin reverse proxy, and share their
// sessions through one memcached and one database — so a user logs in on
// one framework, fills the cart on the next and sees it all on the others. Every response names
// the framework that served it, in the X-Served-By header and on the page.
//
//	go run ./examples/cluster -memcached 127.0.0.1:11211 -dsn sessions.db -listen 127.0.0.1:8080
//
// `make demo` runs it with -spawn 2: two memcached processes of its own,
// which the page's operator panel can kill, restart, add and remove (or
// database-only when memcached is not installed, -memcached ""). The page
// shows, for the visitor's session, which app server served it and whether
// it came from memcached or was restored from the database; the panel shows
// each node's state, the hit ratio, database calls per minute against
// what write-through would cost, and the reaper's last pass. /metrics
// serves every app server's metrics for Prometheus. Restart a node while
// logged in: the session is read back from the database.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
)

func main() {
	spawn := flag.Int("spawn", 0, "start this many memcached processes of the demo's own, which the operator panel can kill, restart, add and remove; replaces -memcached")
	opts := setup.ParseFlags("cluster", "127.0.0.1:8080")
	gin.SetMode(gin.ReleaseMode)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := start(opts, *spawn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(c)
	<-ctx.Done()
	stop() // a second signal ends the process at once

	c.log.Info("shutting down: finishing requests, then flushing pending database syncs")
	sctx, cancel := context.WithTimeout(context.Background(), setup.ShutdownTimeout)
	defer cancel()
	if err := c.Close(sctx); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}
