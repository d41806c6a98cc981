package core_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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

func benchManager(b *testing.B, trips *atomic.Int64, keys [][]byte) *core.Manager {
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
		Seal:   core.SealConfig{Keys: keys},
		Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchRequests(b *testing.B, modify bool, pad int) {
	b.Run("plain", func(b *testing.B) { benchRequestsWith(b, modify, pad, nil) })
	b.Run("sealed", func(b *testing.B) { benchRequestsWith(b, modify, pad, [][]byte{core.NewSealKey()}) })
}

func benchRequestsWith(b *testing.B, modify bool, pad int, keys [][]byte) {
	var trips atomic.Int64
	m := benchManager(b, &trips, keys)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		if modify {
			s.Put("n", getInt(s, "n")+1)
		} else {
			_ = getString(s, "user")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	// Create the session.
	rec := httptest.NewRecorder()
	first := httptest.NewRequest("GET", "/", nil)
	m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Put("user", "ada")
		if pad > 0 {
			s.Put("pad", strings.Repeat("x", pad))
		}
	})).ServeHTTP(rec, first)
	cookies := rec.Result().Cookies()
	if len(cookies) == 0 {
		b.Fatalf("creating the session: status %d, no cookie: %s", rec.Code, rec.Body)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(cookies[0])

	trips.Store(0)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	b.StopTimer()
	b.ReportMetric(float64(trips.Load())/float64(b.N), "roundtrips/op")
	// CPU time of this process per request: what the library and the
	// client cost, without the wait for memcached (which wall time on a
	// shared machine buries in noise).
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkHandlerReadOnly is a read-only request on an existing session
// through the net/http middleware, with plain and with sealed envelopes
// (the ratio of the two is what sealing costs). Requests come faster than TouchInterval,
// so no touch happens: one memcached round trip.
func BenchmarkHandlerReadOnly(b *testing.B) { benchRequests(b, false, 0) }

// BenchmarkHandlerReadOnly1KB is BenchmarkHandlerReadOnly on a session of
// about 1 KB.
func BenchmarkHandlerReadOnly1KB(b *testing.B) { benchRequests(b, false, 1000) }

// BenchmarkHandlerModify is a modifying request: load and compare-and-swap.
func BenchmarkHandlerModify(b *testing.B) { benchRequests(b, true, 0) }

// BenchmarkHandlerModify1KB is BenchmarkHandlerModify on a session of about
// 1 KB.
func BenchmarkHandlerModify1KB(b *testing.B) { benchRequests(b, true, 1000) }
