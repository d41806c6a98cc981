package bench

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gofiber/fiber/v2"
	"github.com/labstack/echo/v4"
)

// BenchmarkRead is a read-only request on an existing session. Our Stores
// run on a virtual clock that advances 5 s per request — one user clicking
// every 5 s — so the throttled activity refresh (TouchInterval, 1m by
// default) happens at its real rate: one request in 12 also writes
// memcached, and the background writer, driven in virtual time, brings the
// activity to the row once per SyncInterval (2m: one request in 24).
func BenchmarkRead(b *testing.B) { forTargets(b, benchSerial("/read")) }

// BenchmarkModify is a request that changes one value of an existing
// session, 5 s after the previous one (virtual clock, for ours): with the
// default 2m SyncInterval, one request in 24 is due for a database sync,
// which the background writer performs off the request path. In the
// write-through targets every change is durable: written to the database
// before the response.
func BenchmarkModify(b *testing.B) { forTargets(b, benchSerial("/modify")) }

// BenchmarkNew is the request that creates a session: a request without a
// cookie that stores four values.
func BenchmarkNew(b *testing.B) { forTargets(b, benchNew) }

// BenchmarkParallel16 is 16 clients, each on its own session, sending
// requests as fast as they are answered; 9 in 10 read, 1 in 10 modifies.
// req/s is the throughput of the 16 together. Our virtual clock advances
// 5s/16 per request, so each session sees a click every 5 s.
func BenchmarkParallel16(b *testing.B) { forTargets(b, benchParallel) }

// BenchmarkOneSession16 sends 16 requests at once on one session, each
// adding a different key, then counts the keys the session kept.
// keys-kept-min is the minimum over the iterations (16 means no update was
// lost, every time); ns/op covers the 16 concurrent requests.
func BenchmarkOneSession16(b *testing.B) { forTargets(b, benchOneSession) }

// warmup is how many requests run before the timer starts: more than 24, so
// that the sync and touch cycles are at their steady state.
const warmup = 30

// benchSerial measures path, requested again and again on one session.
// Our targets' background writer makes its passes between requests, off
// the measurement (time, CPU and allocations are the requests' own); its
// statements are counted.
func benchSerial(path string) func(b *testing.B, t *target) {
	return func(b *testing.B, t *target) {
		t.writer.serial(true)
		defer t.writer.serial(false)
		c := t.newClient()
		cookie := t.newSession(b, c)
		for range warmup {
			t.tick(clickInterval)
			if _, _, st := c.do(path, cookie, false); st != 200 {
				b.Fatalf("%s %s: status %d", t.name, path, st)
			}
			t.writerPass(b)
		}
		if t.flush != nil {
			t.flush()
		}
		r0 := t.read()
		b.ReportAllocs()
		b.ResetTimer()
		var passes time.Duration // CPU time of the writer's passes
		cpu0 := cpuTime()
		for range b.N {
			t.tick(clickInterval)
			if _, _, st := c.do(path, cookie, false); st != 200 {
				b.Fatalf("%s %s: status %d", t.name, path, st)
			}
			passes += t.writerPass(b)
		}
		cpu := cpuTime() - cpu0 - passes
		b.StopTimer()
		reportCPU(b, cpu)
		t.report(b, r0, b.N)
	}
}

func benchNew(b *testing.B, t *target) {
	t.writer.serial(true)
	defer t.writer.serial(false)
	c := t.newClient()
	t.newSession(b, c) // warm up connections and statement caches
	if t.flush != nil {
		t.flush()
	}
	r0 := t.read()
	b.ReportAllocs()
	b.ResetTimer()
	var passes time.Duration
	cpu0 := cpuTime()
	for range b.N {
		t.tick(clickInterval)
		if _, _, st := c.do("/new", "", false); st != 200 {
			b.Fatalf("%s /new: status %d", t.name, st)
		}
		passes += t.writerPass(b)
	}
	cpu := cpuTime() - cpu0 - passes
	b.StopTimer()
	reportCPU(b, cpu)
	t.report(b, r0, b.N)
}

// reportCPU reports the process CPU time per iteration (the client side:
// this process's framework, library and driver work, not memcached's or
// PostgreSQL's).
func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

const parallelClients = 16

func benchParallel(b *testing.B, t *target) {
	clients := make([]client, parallelClients)
	cookies := make([]string, parallelClients)
	for i := range clients {
		clients[i] = t.newClient()
		cookies[i] = t.newSession(b, clients[i])
	}
	step := clickInterval / parallelClients
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	if t.flush != nil {
		t.flush()
	}
	r0 := t.read()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := range clients {
		wg.Add(1)
		go func(c client, cookie string) {
			defer wg.Done()
			for j := 0; next.Add(1) <= int64(b.N); j++ {
				path := "/read"
				if j%10 == 9 {
					path = "/modify"
				}
				t.tick(step)
				if _, _, st := c.do(path, cookie, false); st != 200 {
					failed.Add(1)
				}
			}
		}(clients[i], cookies[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%s: %d requests failed", t.name, n)
	}
	reportCPU(b, cpuTime()-cpu0)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	t.report(b, r0, b.N)
}

func benchOneSession(b *testing.B, t *target) {
	main := t.newClient()
	clients := make([]client, len(addKeys))
	paths := make([]string, len(addKeys))
	for i := range clients {
		clients[i] = t.newClient()
		paths[i] = "/add/" + addKeys[i]
	}
	minKept, total := len(addKeys), 0
	var wg sync.WaitGroup
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		cookie := t.newSession(b, main)
		start := make(chan struct{})
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				t.tick(time.Millisecond)
				c.do(paths[i], cookie, false)
			}()
		}
		b.StartTimer()
		close(start)
		wg.Wait()
		b.StopTimer()
		t.tick(clickInterval)
		_, body, st := main.do("/count", cookie, false)
		kept, err := strconv.Atoi(string(body))
		if st != 200 || err != nil {
			b.Fatalf("%s /count: status %d, body %q", t.name, st, body)
		}
		minKept = min(minKept, kept)
		total += kept
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(minKept), "keys-kept-min")
	b.ReportMetric(float64(total)/float64(b.N), "keys-kept-mean")
}

// BenchmarkBaseline is a request through each framework and the benchmark's
// client with no session middleware at all: what the tables' figures
// include besides the session library.
func BenchmarkBaseline(b *testing.B) {
	apps := []struct {
		name string
		c    client
	}{
		{"nethttp", newHTTPClient(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(ok) }), "session")},
		{"gin", func() client {
			r := gin.New()
			r.GET("/read", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
			return newHTTPClient(r, "session")
		}()},
		{"echo", func() client {
			e := echo.New()
			e.GET("/read", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
			return newHTTPClient(e, "session")
		}()},
		{"fiber", func() client {
			app := newFiberApp()
			app.Get("/read", func(c *fiber.Ctx) error { return c.SendString("ok") })
			return newFiberClient(app.Handler(), "session")
		}()},
	}
	for _, a := range apps {
		b.Run(a.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, _, st := a.c.do("/read", "0123456789012345678901234567890123456789abc", false); st != 200 {
					b.Fatalf("status %d", st)
				}
			}
		})
	}
}
