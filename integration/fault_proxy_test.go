package integration

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/hybridsession/hybridsession/memcachedtest"
)

// The fault tests put a toxiproxy proxy (Shopify's toxiproxy, used as a
// library: no toxiproxy process, no HTTP API) between the app servers and
// every memcached node and the networked database, so that a node can be cut
// off or blackholed without touching its process.

var silenceToxiproxy sync.Once

// newToxiproxy returns a toxiproxy server that only hosts proxies: its API is
// never served. toxiproxy logs through zerolog, partly through zerolog's
// global logger, so the global level is turned off for this test binary.
func newToxiproxy() *toxiproxy.ApiServer {
	silenceToxiproxy.Do(func() { zerolog.SetGlobalLevel(zerolog.Disabled) })
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
}

// faultProxy is one TCP proxy in front of a server, with three modes:
// pass (the default), cut (the listener is closed and every connection
// through it is closed: clients get "connection refused", as from a dead
// host) and blackhole (connections are accepted, and nothing is answered or
// forwarded in either direction, as from a hung host or a dropped route).
type faultProxy struct {
	t *testing.T
	p *toxiproxy.Proxy
	// Addr is the proxy's "127.0.0.1:port", fixed for its whole life: the
	// address the app servers use instead of the upstream's.
	Addr string

	mu         sync.Mutex
	cut        bool
	blackholed bool
}

// startProxy starts a proxy to upstream on a free loopback port and stops it
// when the test ends.
func startProxy(t *testing.T, srv *toxiproxy.ApiServer, name, upstream string) *faultProxy {
	t.Helper()
	// A port below the ephemeral range: Restore listens on it again, and an
	// outgoing connection may have taken an ephemeral one meanwhile.
	port, err := memcachedtest.FreePort()
	if err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	p := toxiproxy.NewProxy(srv, name, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	fp := &faultProxy{t: t, p: p, Addr: p.Listen}         // Start resolved Listen to the bound port
	t.Cleanup(func() { memcachedtest.ReleasePort(port) }) // after Stop
	t.Cleanup(p.Stop)
	return fp
}

// blackholeToxics drop every byte in both directions and never close the
// connection: toxiproxy's "timeout" toxic with timeout 0.
var blackholeToxics = []string{"blackhole_upstream", "blackhole_downstream"}

// Blackhole makes the upstream a black hole: new connections are accepted
// and existing ones stay open, but no byte gets through either way.
func (fp *faultProxy) Blackhole() {
	fp.t.Helper()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.blackholed {
		return
	}
	for _, name := range blackholeToxics {
		stream := strings.TrimPrefix(name, "blackhole_")
		js := fmt.Sprintf(`{"name":%q,"type":"timeout","stream":%q,"toxicity":1,"attributes":{"timeout":0}}`, name, stream)
		if _, err := fp.p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			fp.t.Fatalf("toxiproxy %s: add %s: %v", fp.p.Name, name, err)
		}
	}
	fp.blackholed = true
}

// Unblackhole removes the black hole. Connections opened during it are
// closed (the timeout toxic's cleanup), so clients reconnect.
func (fp *faultProxy) Unblackhole() {
	fp.t.Helper()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if !fp.blackholed {
		return
	}
	for _, name := range blackholeToxics {
		if err := fp.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
			fp.t.Fatalf("toxiproxy %s: remove %s: %v", fp.p.Name, name, err)
		}
	}
	fp.blackholed = false
}

// Cut disables the proxy: its listener closes (new connections are
// refused) and every connection through it is closed.
func (fp *faultProxy) Cut() {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if !fp.cut {
		fp.p.Stop()
		fp.cut = true
	}
}

// Restore re-enables a cut proxy on the same address.
func (fp *faultProxy) Restore() {
	fp.t.Helper()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if !fp.cut {
		return
	}
	if err := fp.p.Start(); err != nil {
		fp.t.Fatalf("toxiproxy %s: restart on %s: %v", fp.p.Name, fp.Addr, err)
	}
	fp.cut = false
}
