package core_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// countingConn counts writes: gomemcache flushes each command once, so
// one write is one round trip.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

func benchManager(b *testing.B, trips *atomic.Int64) *core.Manager {
	mc := memcachedtest.Start(b, memcachedtest.Options{})
	var d net.Dialer
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{
			Servers: []string{mc.Addr},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return countingConn{c, trips}, nil
			},
		},
		Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchRequests(b *testing.B, modify bool) {
	var trips atomic.Int64
	m := benchManager(b, &trips)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		if modify {
			s.Put("n", s.GetInt("n")+1)
		} else {
			_ = s.GetString("user")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	// Create the session.
	rec := httptest.NewRecorder()
	first := httptest.NewRequest("GET", "/", nil)
	m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("user", "ada")
	})).ServeHTTP(rec, first)
	cookie := rec.Result().Cookies()[0]
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(cookie)

	trips.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	b.StopTimer()
	b.ReportMetric(float64(trips.Load())/float64(b.N), "roundtrips/op")
}

// BenchmarkHandlerReadOnly is a read-only request on an existing session
// through the net/http middleware. Requests come faster than TouchInterval,
// so no touch happens: one memcached round trip.
func BenchmarkHandlerReadOnly(b *testing.B) { benchRequests(b, false) }

// BenchmarkHandlerModify is a modifying request: load and compare-and-swap.
func BenchmarkHandlerModify(b *testing.B) { benchRequests(b, true) }
