package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/rs/zerolog"
	"gorm.io/gorm"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/hybridsession/hybridsession/scsstore"
)

// Timing of every history. IdleTimeout, SyncInterval, the reaper's
// Interval and TouchInterval keep the proportions of the defaults (30m, 2m,
// 1m, 1m), scaled to one tenth of a second a minute, so that idle expiry,
// syncs and reaping all happen many times within one history. Timeouts of
// the network and the database cannot shrink with them.
const (
	unit          = 100 * time.Millisecond // one minute of production time
	idleTimeout   = 30 * unit              // Config.IdleTimeout of most app servers
	idleLong      = 40 * unit              // Config.IdleTimeout after some deploys
	syncInterval  = 2 * unit               // StoreConfig.SyncInterval of most app servers
	syncSlow      = 4 * unit               // StoreConfig.SyncInterval after some deploys
	touchInterval = unit                   // Config.TouchInterval
	lifetime      = 80 * unit              // Config.Lifetime: shorter than production's, so deadlines pass within a history
	// A remembered session (Session.RememberMe with SetIdleTimeout) outlives
	// every history and every partition, beside sessions that idle out.
	rememberIdle     = 120 * unit
	rememberLifetime = 200 * unit

	mcTimeout   = 150 * time.Millisecond
	breakerCool = 200 * time.Millisecond
	dbTimeout   = time.Second // StoreConfig.DBTimeout
	// retryDelay is how long the background writer waits after a failed
	// batch before it tries again (core's retryDelay), or SyncInterval if
	// shorter.
	retryDelay = 5 * time.Second
	// memcachedTick: memcached's clock counts whole seconds, so an item
	// may vanish up to a second before its TTL.
	memcachedTick = time.Second
	maxSkew       = 40 * time.Millisecond // ordinary clock offsets
	// A skewed app server's clock is minutes off (scaled).
	bigSkewMin, bigSkewMax = 2 * unit, 5 * unit
	// loadBound and opBound bound a request's Load and the whole request
	// (I7): Load is one memcached read and one row read, each bounded, and
	// a refill; a renewal makes up to four database calls.
	loadBound      = 3*mcTimeout + dbTimeout + 500*time.Millisecond
	opBound        = 6 * time.Second
	dbHangDuration = 7 * time.Second // longer than opBound, so a hang that blocks shows
)

// writerTick is the background writer's tick for a SyncInterval (core:
// SyncInterval/8, at least 10ms).
func writerTick(sync time.Duration) time.Duration { return max(sync/8, 10*time.Millisecond) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// storeLog collects what the app servers log (breakers opening and
// closing, background write failures) for HISTORY_TRACE: each line
// stamped with its time since the history began.
type storeLog struct {
	mu    sync.Mutex
	epoch time.Time
	lines []string
}

func (l *storeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmtT(l.epoch, time.Now())+" "+strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logger returns app server id's logger: quiet unless the history is traced.
func (l *storeLog) logger(id int) *slog.Logger {
	if l == nil {
		return quiet
	}
	drop := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	h := slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: drop})
	return slog.New(h).With("srv", id)
}

// cacheFaults records every memcached operation of app server srv that
// failed (protocol answers are not failures) as that server's node being
// unreachable for the operation's span, and logs it for HISTORY_TRACE.
type cacheFaults struct {
	c   *cluster
	srv int
}

func (f cacheFaults) StartCacheOp(_ context.Context, op, addr string) func(error) {
	start := time.Now()
	return func(err error) {
		if err == nil || errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrNotStored) ||
			errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrServerError) {
			return
		}
		f.c.rec.observe(&faultRec{Kind: "mc-failed", Target: addr, Servers: []int{f.srv}, Server: -1,
			Start: start, End: time.Now(), Unavail: true, Note: op})
		if f.c.log != nil {
			fmt.Fprintf(f.c.log, "srv=%d memcached %s %s: %v\n", f.srv, op, addr, err)
		}
	}
}

var silenceToxiproxy sync.Once

func newToxiproxy() *toxiproxy.ApiServer {
	silenceToxiproxy.Do(func() { zerolog.SetGlobalLevel(zerolog.Disabled) })
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
}

// proxy is a toxiproxy proxy used as a library: cut (connections refused
// and reset) or blackholed (accepted, nothing answered).
type proxy struct {
	p    *toxiproxy.Proxy
	Addr string

	mu         sync.Mutex
	cut, holed bool
}

func startProxy(t testing.TB, srv *toxiproxy.ApiServer, name, upstream string) *proxy {
	t.Helper()
	// A port below the ephemeral range: Restore listens on it again, and an
	// outgoing connection may have taken an ephemeral one meanwhile. A
	// process that does not reserve its ports may still take one between
	// FreePort's check and the proxy's listen: nothing uses the port yet,
	// so another is tried.
	var err error
	for range 3 {
		var port int
		if port, err = memcachedtest.FreePort(); err != nil {
			break
		}
		p := toxiproxy.NewProxy(srv, name, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), upstream)
		if err = p.Start(); err == nil {
			t.Cleanup(func() { memcachedtest.ReleasePort(port) }) // after Stop
			t.Cleanup(p.Stop)
			return &proxy{p: p, Addr: p.Listen}
		}
		memcachedtest.ReleasePort(port)
	}
	t.Fatalf("toxiproxy %s: %v", name, err)
	return nil
}

var holeToxics = []string{"upstream", "downstream"}

func (p *proxy) Blackhole() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holed {
		return nil
	}
	for _, s := range holeToxics {
		js := fmt.Sprintf(`{"name":"hole_%s","type":"timeout","stream":%q,"toxicity":1,"attributes":{"timeout":0}}`, s, s)
		if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return err
		}
	}
	p.holed = true
	return nil
}

func (p *proxy) Unblackhole() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.holed {
		return nil
	}
	for _, s := range holeToxics {
		if err := p.p.Toxics.RemoveToxic(context.Background(), "hole_"+s); err != nil {
			return err
		}
	}
	p.holed = false
	return nil
}

func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.p.Stop()
		p.cut = true
	}
}

func (p *proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return nil
	}
	if err := p.p.Start(); err != nil {
		return err
	}
	p.cut = false
	return nil
}

// node is a memcached process. App servers know it by its address (the
// ring hashes that) and reach it through their own proxy (server.proxies),
// so that a partition can cut some app servers off and not others.
type node struct {
	name string
	mc   *memcachedtest.Server
}

// raw returns a client straight to the process, for evictions: a new one
// each time, as the process may have been restarted since.
func (n *node) raw() *memcache.Client {
	c := memcache.New(n.mc.Addr)
	c.Timeout = time.Second
	return c
}

// crashable wraps an app server's durable tier so that a crash stops its
// writes: a dead process's background writer and reaper write nothing.
type crashable struct {
	durable.Tier
	dead *atomic.Bool
	rec  *recorder
}

var errCrashed = errors.New("history: app server crashed")

func (c crashable) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	if c.dead.Load() {
		return nil, errCrashed
	}
	start := time.Now()
	applied, err := c.Tier.Write(ctx, batch)
	c.observe(ctx, start, err)
	return applied, err
}

func (c crashable) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	start := time.Now()
	rec, found, err := c.Tier.Load(ctx, key)
	c.observe(ctx, start, err)
	return rec, found, err
}

func (c crashable) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	start := time.Now()
	recs, err := c.Tier.List(ctx, subject, after, limit)
	c.observe(ctx, start, err)
	return recs, err
}

// observe records a failed call the caller did not cancel as the
// database refusing for its span.
func (c crashable) observe(ctx context.Context, start time.Time, err error) {
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		c.rec.observe(&faultRec{Kind: "db-failed", Target: "db", Server: -1, Start: start, End: time.Now(), DB: true})
	}
}

func (c crashable) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	if c.dead.Load() {
		return 0, errCrashed
	}
	return c.Tier.Reap(ctx, now, limit, judge)
}

// config is an app server's configuration; deploys change it.
type config struct {
	sync     time.Duration // StoreConfig.SyncInterval
	idle     time.Duration // Config.IdleTimeout
	sealStep int           // the seal key ring: 0 [k1], 1 [k1 k2], 2 [k2 k1]
}

func (c config) String() string {
	return fmt.Sprintf("sync=%v idle=%v seal=%s", c.sync, c.idle, [...]string{"k1", "k1+k2", "k2+k1"}[c.sealStep])
}

// server is one app server: a Store and a Manager with their own clock
// offset, configuration, view of the memcached ring and proxies to the
// nodes.
type server struct {
	id      int
	skew    time.Duration
	mu      sync.RWMutex // requests hold R; crash and restart hold W
	cfg     config
	store   *core.Store
	mgr     *core.Manager
	scs     *scsstore.Store // scs's store on the same core.Store
	dead    *atomic.Bool
	nodes   map[string]bool // node addresses in this server's ring
	proxies []*proxy        // this server's way to each node, by node index
}

// cluster is one history's world.
type cluster struct {
	t         testing.TB
	backend   string
	tox       *toxiproxy.ApiServer
	nodes     []*node
	spare     int // index of the node that starts outside the ring
	dbProxy   *proxy
	appDB     *gorm.DB
	table     string
	servers   []*server
	keys      [2][]byte   // seal keys k1, k2
	log       *storeLog   // nil unless traced
	archiveOK func() bool // the reaper's archive hook succeeds when true
	rec       *recorder   // takes the failures the app servers see
	// noMemcached runs the app servers on the database alone.
	noMemcached bool
}

func newCluster(t testing.TB, b gormtest.Backend, nServers int, noMemcached bool, rng *rand.Rand, bigSkew bool, rec *recorder,
	archiveOK func() bool) *cluster {
	t.Helper()
	c := &cluster{t: t, backend: b.Name, tox: newToxiproxy(), spare: 2, archiveOK: archiveOK, noMemcached: noMemcached, rec: rec,
		keys: [2][]byte{core.NewSealKey(), core.NewSealKey()}}
	if os.Getenv(envTrace) != "" {
		c.log = &storeLog{epoch: time.Now()}
	}
	for i := 0; i < 3; i++ {
		c.nodes = append(c.nodes, &node{name: fmt.Sprintf("n%d", i), mc: memcachedtest.Start(t, memcachedtest.Options{})})
	}
	var adminDB *gorm.DB
	switch b.DSN {
	case "":
		db, err := gormtest.Open(filepath.Join(t.TempDir(), "sessions.db"))
		if err != nil {
			t.Fatal(err)
		}
		closeDB(t, db)
		c.appDB, adminDB = db, db
	default:
		upstream, rewrite, err := proxiedDSN(b.DSN)
		if err != nil {
			t.Fatalf("%s DSN: %v", b.Name, err)
		}
		adminDB = b.Open(t)
		c.dbProxy = startProxy(t, c.tox, "db", upstream)
		db, err := gormtest.Open(rewrite(c.dbProxy.Addr))
		if err != nil {
			t.Fatal(err)
		}
		closeDB(t, db)
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.SetMaxOpenConns(appConns) // the database is shared with other engineers' tests
			sqlDB.SetMaxIdleConns(appConns)
			warmPool(t, sqlDB)
		}
		c.appDB = db
	}
	c.table = gormtest.UniqueTable("hist_")
	if _, err := gormstore.New(adminDB, gormstore.Config{TableName: c.table}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adminDB.Migrator().DropTable(c.table) })
	skewed := -1
	if bigSkew {
		skewed = rng.IntN(nServers)
	}
	for i := 0; i < nServers; i++ {
		skew := time.Duration(rng.Int64N(int64(2*maxSkew+1))) - maxSkew
		if i == skewed {
			skew = bigSkewMin + time.Duration(rng.Int64N(int64(bigSkewMax-bigSkewMin)))
			if rng.IntN(2) == 0 {
				skew = -skew
			}
		}
		c.servers = append(c.servers, c.newServer(i, skew))
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			s.mu.Lock()
			s.dead.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.store.Close(ctx)
			cancel()
			s.mu.Unlock()
		}
	})
	return c
}

// appConns is the size of the app servers' shared connection pool, and
// warmConns how many of them are opened before the history starts.
const (
	appConns  = 12
	warmConns = 4
)

// warmPool opens warmConns connections of the pool before the history
// starts, enough for its first requests: the checker judges the database
// reachable while no fault is injected, and on a loaded machine setting up
// a connection can take longer than DBTimeout.
func warmPool(t testing.TB, sqlDB *sql.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]*sql.Conn, 0, warmConns)
	defer func() {
		for _, c := range conns {
			c.Close() // back to the pool, idle
		}
	}()
	for range warmConns {
		c, err := sqlDB.Conn(ctx)
		if err == nil {
			err = c.PingContext(ctx)
		}
		if err != nil {
			t.Fatalf("warming the database pool: %v", err)
		}
		conns = append(conns, c)
	}
}

func closeDB(t testing.TB, db *gorm.DB) {
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
}

// newServer starts app server id with the initial ring (every node but the
// spare), its proxies and the initial configuration.
func (c *cluster) newServer(id int, skew time.Duration) *server {
	s := &server{id: id, skew: skew, dead: new(atomic.Bool), nodes: map[string]bool{},
		cfg: config{sync: syncInterval, idle: idleTimeout}}
	var addrs []string
	for i, n := range c.nodes {
		s.proxies = append(s.proxies, startProxy(c.t, c.tox, fmt.Sprintf("s%d-%s", id, n.name), n.mc.Addr))
		if i != c.spare {
			addrs = append(addrs, n.mc.Addr)
			s.nodes[n.mc.Addr] = true
		}
	}
	c.startServer(s, addrs)
	return s
}

// dialer connects app server s to a node through its own proxy.
func (c *cluster) dialer(s *server) func(ctx context.Context, network, addr string) (net.Conn, error) {
	byAddr := map[string]string{}
	for i, n := range c.nodes {
		byAddr[n.mc.Addr] = s.proxies[i].Addr
	}
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p, ok := byAddr[addr]; ok {
			addr = p
		}
		return d.DialContext(ctx, network, addr)
	}
}

func (c *cluster) sealKeys(step int) [][]byte {
	switch step {
	case 1:
		return [][]byte{c.keys[0], c.keys[1]}
	case 2:
		return [][]byte{c.keys[1], c.keys[0]}
	}
	return [][]byte{c.keys[0]}
}

func (c *cluster) startServer(s *server, addrs []string) {
	d, err := gormstore.New(c.appDB, gormstore.Config{TableName: c.table, SkipMigration: true})
	if err != nil {
		c.t.Fatal(err)
	}
	skew := s.skew
	if c.noMemcached {
		addrs = nil
	}
	archiveOK := c.archiveOK
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{
			Servers:          addrs,
			Timeout:          mcTimeout,
			BreakerThreshold: 3,
			BreakerCooldown:  breakerCool,
			DialContext:      c.dialer(s),
			Tracer:           cacheFaults{c: c, srv: s.id}.StartCacheOp,
		},
		Seal:         core.SealConfig{Keys: c.sealKeys(s.cfg.sealStep)},
		Durable:      crashable{Tier: d, dead: s.dead, rec: c.rec},
		SyncInterval: s.cfg.sync,
		DBTimeout:    dbTimeout,
		Reaper: core.ReaperConfig{
			Interval: s.cfg.sync / 2, // the default proportion: 1m to 2m
			Batch:    50,
			Archive: func(context.Context, core.ArchivedSession) error {
				if archiveOK() {
					return nil
				}
				return errors.New("history: archive hook failed")
			},
		},
		Logger: c.log.logger(s.id),
		Clock:  func() time.Time { return time.Now().Add(skew) },
	})
	if err != nil {
		c.t.Fatal(err)
	}
	mgr, err := core.New(core.Config{
		Store:         store,
		IdleTimeout:   s.cfg.idle,
		Lifetime:      lifetime,
		TouchInterval: touchInterval,
		DurableKeys:   []string{"d0", "d1"},
		Cookie:        core.CookieConfig{Insecure: true},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	sc, err := scsstore.New(store, scsstore.Config{})
	if err != nil {
		c.t.Fatal(err)
	}
	s.store, s.mgr, s.scs = store, mgr, sc
}

// proxiedDSN returns the host:port of a PostgreSQL URL DSN or a
// go-sql-driver MySQL DSN, and a function that points the DSN at another
// address.
func proxiedDSN(dsn string) (string, func(string) string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", nil, err
		}
		port := u.Port()
		if port == "" {
			port = "5432"
		}
		return net.JoinHostPort(u.Hostname(), port), func(addr string) string {
			v := *u
			v.Host = addr
			return v.String()
		}, nil
	}
	re := regexp.MustCompile(`@tcp\(([^)]*)\)`)
	m := re.FindStringSubmatch(dsn)
	if m == nil {
		return "", nil, fmt.Errorf("need a postgres:// URL or a user:pass@tcp(host:port)/db DSN")
	}
	return m[1], func(addr string) string {
		return re.ReplaceAllLiteralString(dsn, "@tcp("+addr+")")
	}, nil
}
