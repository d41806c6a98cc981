package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

const (
	reapRows       = 100000
	reapAliveEvery = 10 // one expired-looking row in 10 belongs to a session still alive in memcached
)

// BenchmarkReaper is one reaper pass (Reaper.RunOnce, default batch of 500)
// over 100,000 rows whose expires_at has passed, on PostgreSQL. One row in
// ten belongs to a session still alive in memcached (its activity never
// reached the row: the reaper rewrites the row with memcached's copy); the
// rest are dead (deleted). rows/s is rows examined per second of the pass;
// sql/batch and mc-rt/batch are counted on the connections. Run it with
// -benchtime 1x (each iteration loads the rows again, untimed).
func BenchmarkReaper(b *testing.B) {
	dsn := postgresDSN(b)
	mc := startMemcached(b)
	ctx := context.Background()
	counter := new(sqlCounter)
	var trips atomic.Int64
	durable := &claimCounter{Tier: openDurable(b, "hs_reap", counter)}
	st, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, Timeout: memcacheTimeout, DialContext: countingDialer(&trips)},
		Durable:   durable,
		Logger:    quiet,
		Reaper:    core.ReaperConfig{Interval: -1}, // the benchmark runs the passes
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close(context.Background()) })
	reaper, err := st.NewReaper(core.ReaperConfig{})
	if err != nil {
		b.Fatal(err)
	}
	loader, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = loader.Close(context.Background()) })
	filler := memcache.New(mc.Addr)
	filler.MaxIdleConns = 16
	rowPayload, alivePayload := reapPayloads(b, mc.Addr)

	var elapsed, cpu time.Duration
	var examined, extended, deleted int
	var stmts, writes, rts int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		loadExpiredRows(b, loader, filler, i, rowPayload, alivePayload)
		s0, t0, st0 := counter.snap(), trips.Load(), st.Stats()
		durable.claimed.Store(0)
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		err := reaper.RunOnce(ctx)
		cpu += cpuTime() - cpu0
		elapsed += time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		st1 := st.Stats()
		n, ext, del := int(durable.claimed.Load()), int(st1.ReapExtended-st0.ReapExtended), int(st1.ReapDeleted-st0.ReapDeleted)
		if n != reapRows || ext != reapRows/reapAliveEvery || del != reapRows-ext || st1.ReapErrors != st0.ReapErrors {
			b.Fatalf("pass: examined %d, extended %d, deleted %d, errors %d; want %d rows, one in %d extended, the rest deleted",
				n, ext, del, st1.ReapErrors-st0.ReapErrors, reapRows, reapAliveEvery)
		}
		d := counter.snap().sub(s0)
		stmts, writes, rts = stmts+d.stmts, writes+d.writes, rts+trips.Load()-t0
		examined, extended, deleted = examined+n, extended+ext, deleted+del
	}
	b.ReportAllocs()
	reportCPU(b, cpu)
	batches := float64(examined) / 500
	b.ReportMetric(float64(examined)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(stmts)/batches, "sql/batch")
	b.ReportMetric(float64(writes)/batches, "sql-writes/batch")
	b.ReportMetric(float64(rts)/batches, "mc-rt/batch")
	b.ReportMetric(float64(extended)/float64(b.N), "extended/pass")
	b.ReportMetric(float64(deleted)/float64(b.N), "deleted/pass")
}

// claimCounter counts the rows the reaper's batches claim.
type claimCounter struct {
	durable.Tier
	claimed atomic.Int64
}

func (d *claimCounter) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	n, err := d.Tier.Reap(ctx, now, limit, judge)
	d.claimed.Add(int64(n))
	return n, err
}

// reapPayloads returns the payload of a dead session's row and the
// memcached copy of a live session, made through the public API by an app
// server whose clock reads the past: the session was created two hours
// ago and written to its row, then changed a minute ago in memcached alone
// (its row never saw it). The Stores are unsealed, so the bytes are valid
// under any key (a sealed envelope is bound to its key).
func reapPayloads(b *testing.B, addr string) (row, alive []byte) {
	ctx := context.Background()
	clock := newVClock()
	clock.Advance(-2 * time.Hour)
	mem := durabletest.NewMemory()
	const prefix = "reap-gen:"
	st, err := core.NewStore(core.StoreConfig{
		Memcached:    core.MemcachedConfig{Servers: []string{addr}, KeyPrefix: prefix, Timeout: memcacheTimeout},
		Durable:      mem,
		Clock:        clock.Now,
		Logger:       quiet,
		Reaper:       core.ReaperConfig{Interval: -1},
		SyncInterval: 3 * time.Hour,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(ctx)
	values := map[string]any{}
	for _, v := range newValues {
		values[v.key] = v.value
	}
	// The session idles out after 30 minutes and is kept alive by a read
	// every 20; SyncInterval 3h keeps those touches and the last change
	// out of the row, which stays as the session was created.
	m, err := core.New(core.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	var cookie *http.Cookie
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		switch r.URL.Path {
		case "/new":
			for k, v := range values {
				s.Put(k, v)
			}
		case "/change":
			s.Put("n", 1)
		}
	}))
	request := func(path string) {
		req := httptest.NewRequest(http.MethodGet, "https://example.com"+path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if cs := rec.Result().Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
	}
	request("/new")
	key := core.StorageKey(cookie.Value)
	rec, found, err := mem.Load(ctx, key)
	if err != nil || !found || rec.Version != 1 {
		b.Fatalf("the generated row: %+v, found %v, %v; want version 1", rec, found, err)
	}
	for range 5 {
		clock.Advance(20 * time.Minute)
		request("/read")
	}
	clock.Advance(20*time.Minute - time.Minute)
	request("/change")
	if core.StorageKey(cookie.Value) != key {
		b.Fatal("the session did not live through the reads")
	}
	it, err := memcache.New(addr).Get(prefix + key)
	if err != nil {
		b.Fatal(err)
	}
	return rec.Payload, it.Value
}

// loadExpiredRows empties the table and fills it with reapRows rows of
// rowPayload (version 1) that expired an hour ago, with COPY; one in
// reapAliveEvery sessions is also put in memcached as alivePayload: alive,
// with a change the row never saw.
func loadExpiredRows(b *testing.B, conn *pgx.Conn, mc *memcache.Client, pass int, rowPayload, alivePayload []byte) {
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "TRUNCATE hs_reap"); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	created := now.Add(-2 * time.Hour)
	deadline := created.Add(24 * time.Hour)
	expired := now.Add(-time.Hour)

	rows := make([][]any, reapRows)
	for i := range rows {
		key := core.StorageKey("reap-" + strconv.Itoa(pass) + "-" + strconv.Itoa(i))
		rows[i] = []any{key, rowPayload, int64(1), expired.UnixMilli() + int64(i), deadline.UnixMilli(), "",
			created.UnixMilli(), created.UnixMilli()}
		if i%reapAliveEvery == 0 {
			err := mc.Set(&memcache.Item{Key: "hs:" + key, Value: alivePayload, Expiration: int32((29 * time.Minute) / time.Second)})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	cols := []string{"key", "payload", "version", "expires_at", "deadline", "subject", "created_at", "updated_at"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"hs_reap"}, cols, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE hs_reap"); err != nil {
		b.Fatal(err)
	}
}
