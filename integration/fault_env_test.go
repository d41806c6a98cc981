package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// Tunables of the fault tests: short but realistic, so that "an update older
// than SyncInterval" can be checked in real time.
const (
	faultTimeout          = 100 * time.Millisecond // memcached Timeout
	faultBreakerThreshold = 3
	faultBreakerCooldown  = 200 * time.Millisecond
	faultSyncInterval     = time.Second
	faultIdleTimeout      = time.Hour
	faultAppServers       = 2
	faultNodes            = 3
	// faultBreakerWait bounds how long a scenario waits for breakers to open
	// or close.
	faultBreakerWait = 5 * time.Second
)

// faultBackend is a database the fault tests run on. dsn is empty for
// SQLite, which cannot be put behind a proxy.
type faultBackend struct {
	name string
	dsn  string
}

const postgresDSNEnv = gormtest.PostgresEnv

// faultBackends returns SQLite always and PostgreSQL when
// HYBRIDSESSION_POSTGRES_DSN is set.
func faultBackends(t *testing.T) []faultBackend {
	list := []faultBackend{{name: "sqlite"}}
	if dsn := os.Getenv(postgresDSNEnv); dsn != "" {
		list = append(list, faultBackend{name: "postgres", dsn: dsn})
	} else {
		t.Logf("%s not set: the fault scenarios run on SQLite only, and those that need a networked database are skipped", postgresDSNEnv)
	}
	return list
}

// requireNetworkedDB skips (or, in CI, fails) a scenario that must cut the
// database off, when the backend is SQLite.
func requireNetworkedDB(t *testing.T, b faultBackend) {
	t.Helper()
	if b.dsn != "" {
		return
	}
	if os.Getenv(postgresDSNEnv) == "" && os.Getenv("CI") != "" {
		t.Fatalf("%s is not set: CI must run the database fault scenarios on PostgreSQL", postgresDSNEnv)
	}
	t.Skipf("needs a networked database behind a proxy (SQLite is embedded); runs on PostgreSQL when %s is set", postgresDSNEnv)
}

// faultNode is one memcached process behind its proxy. The app servers know
// it by the proxy's address.
type faultNode struct {
	name  string
	mc    *memcachedtest.Server
	proxy *faultProxy
}

func (n *faultNode) Addr() string { return n.proxy.Addr }

// faultEnv is one scenario's cluster: memcached nodes and a database, each
// behind a proxy, and faultAppServers app servers (a Store and a Manager
// each, all on the same tiers) behind one round-robin load balancer.
type faultEnv struct {
	t       *testing.T
	backend faultBackend
	tox     *toxiproxy.ApiServer
	nodes   []*faultNode
	dbProxy *faultProxy // nil on SQLite
	table   string
	// admin reaches the database directly (never through the proxy), to
	// inspect rows.
	admin    *gormstore.Store
	stores   []*core.Store
	managers []*core.Manager
	srv      *httptest.Server
	report   *faultReport
	scenario string

	errMu    sync.Mutex
	errors   map[string]int // Load/Save errors answered by the error handler, by phase and message
	curPhase atomic.Pointer[phaseStats]
}

// faultEnvOptions adjusts a scenario's cluster.
type faultEnvOptions struct {
	// nodeMemoryMB[i] is memcached's -m for node i (0: the default).
	nodeMemoryMB []int
}

func newFaultEnv(t *testing.T, b faultBackend, rep *faultReport, opts faultEnvOptions) *faultEnv {
	t.Helper()
	env := &faultEnv{t: t, backend: b, tox: newToxiproxy(), report: rep, scenario: path.Base(t.Name())}
	for i := 0; i < faultNodes; i++ {
		mem := 0
		if i < len(opts.nodeMemoryMB) {
			mem = opts.nodeMemoryMB[i]
		}
		env.nodes = append(env.nodes, env.startNode(fmt.Sprintf("n%d", i), mem))
	}

	// The database: the app servers' pool goes through the proxy.
	var appDB, adminDB *gorm.DB
	if b.dsn == "" {
		db, err := sqlite.Open(filepath.Join(t.TempDir(), "sessions.db"))
		if err != nil {
			t.Fatal(err)
		}
		closeOnCleanup(t, db)
		appDB, adminDB = db, db
	} else {
		upstream, proxied, err := proxiedPostgresDSN(b.dsn)
		if err != nil {
			t.Fatalf("%s: %v", postgresDSNEnv, err)
		}
		adminDB = openPostgres(t, b.dsn)
		env.dbProxy = startProxy(t, env.tox, "postgres", upstream)
		appDB = openPostgres(t, proxied(env.dbProxy.Addr))
		sqlDB, err := appDB.DB()
		if err != nil {
			t.Fatal(err)
		}
		sqlDB.SetMaxOpenConns(16) // the database is shared with other tests
		sqlDB.SetMaxIdleConns(16)
	}
	env.table = gormtest.UniqueTable("it_")
	admin, err := gormstore.New(adminDB, gormstore.Config{TableName: env.table})
	if err != nil {
		t.Fatal(err)
	}
	env.admin = admin
	t.Cleanup(func() {
		if err := adminDB.Migrator().DropTable(env.table); err != nil {
			t.Errorf("drop table %s: %v", env.table, err)
		}
	})

	addrs := make([]string, len(env.nodes))
	for i, n := range env.nodes {
		addrs[i] = n.Addr()
	}
	handlers := make([]http.Handler, faultAppServers)
	for i := range handlers {
		d, err := gormstore.New(appDB, gormstore.Config{TableName: env.table, SkipMigration: true})
		if err != nil {
			t.Fatal(err)
		}
		store, err := core.NewStore(core.StoreConfig{
			Memcached: core.MemcachedConfig{
				Servers:          addrs,
				Timeout:          faultTimeout,
				BreakerThreshold: faultBreakerThreshold,
				BreakerCooldown:  faultBreakerCooldown,
			},
			Durable:      d,
			SyncInterval: faultSyncInterval,
			DBTimeout:    2 * time.Second,
			Reaper:       core.ReaperConfig{Interval: -1},
			Logger:       quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := store.Close(ctx); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
		m, err := core.New(core.Config{
			Store:       store,
			IdleTimeout: faultIdleTimeout,
			DurableKeys: []string{"user"},
			Cookie:      core.CookieConfig{Insecure: true},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				env.recordError(err)
				http.Error(w, http.StatusText(core.StatusCode(err)), core.StatusCode(err))
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		env.stores = append(env.stores, store)
		env.managers = append(env.managers, m)
		handlers[i] = m.Handler(faultApp())
	}
	// A scenario that fails halfway may leave a fault in place: lift it
	// before the Stores close (they flush their pending syncs).
	t.Cleanup(func() {
		for _, n := range env.nodes {
			n.proxy.Unblackhole()
			n.proxy.Restore()
		}
		if env.dbProxy != nil {
			env.dbProxy.Restore()
		}
	})
	env.srv = httptest.NewServer(&roundRobin{handlers: handlers})
	t.Cleanup(env.srv.Close)
	return env
}

// recordError counts an error the middleware answered, by message.
func (env *faultEnv) recordError(err error) {
	msg := portRE.ReplaceAllString(err.Error(), ":PORT")
	if p := env.curPhase.Load(); p != nil {
		msg = p.name + ": " + msg
		if bothTiersDown(err) {
			p.mu.Lock()
			p.bothDown++
			p.mu.Unlock()
		}
	}
	env.errMu.Lock()
	defer env.errMu.Unlock()
	if env.errors == nil {
		env.errors = map[string]int{}
	}
	env.errors[msg]++
}

var portRE = regexp.MustCompile(`:\d{2,5}\b`)

// bothTiersDown reports whether err, answered with a 503, says that the
// database could not serve a request that memcached did not serve either:
// what I7 allows (docs/consistency.md). The Store names the database in
// such errors; expectClean allows them only as far as memcached failed in
// the same phase (on a loaded test machine a read on loopback can exceed
// the scenarios' 100 ms Timeout).
func bothTiersDown(err error) bool {
	return errors.Is(err, core.ErrUnavailable) && strings.Contains(err.Error(), "database:")
}

// logErrors logs the errors the middleware answered, most frequent first.
func (env *faultEnv) logErrors() {
	env.errMu.Lock()
	defer env.errMu.Unlock()
	msgs := make([]string, 0, len(env.errors))
	for m := range env.errors {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return env.errors[msgs[i]] > env.errors[msgs[j]] })
	for i, m := range msgs {
		if i == faultLogLimit {
			env.t.Logf("... and %d other error messages", len(msgs)-i)
			break
		}
		env.t.Logf("error handler: %d× %s", env.errors[m], m)
	}
}

func (env *faultEnv) startNode(name string, memoryMB int) *faultNode {
	mc := memcachedtest.Start(env.t, memcachedtest.Options{MemoryMB: memoryMB})
	return &faultNode{name: name, mc: mc, proxy: startProxy(env.t, env.tox, name, mc.Addr)}
}

func closeOnCleanup(t *testing.T, db *gorm.DB) {
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
}

func openPostgres(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	closeOnCleanup(t, db)
	return db
}

// proxiedPostgresDSN returns the host:port of a PostgreSQL DSN (URL or
// keyword/value form) and a function that rewrites the DSN to another
// address.
func proxiedPostgresDSN(dsn string) (upstream string, rewrite func(addr string) string, err error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", nil, err
		}
		host, port := u.Hostname(), u.Port()
		if host == "" || strings.HasPrefix(host, "/") {
			return "", nil, fmt.Errorf("the fault tests need a TCP host in the DSN")
		}
		if port == "" {
			port = "5432"
		}
		return net.JoinHostPort(host, port), func(addr string) string {
			v := *u
			v.Host = addr
			return v.String()
		}, nil
	}
	host, port := "", "5432"
	var rest []string
	for _, f := range strings.Fields(dsn) {
		switch {
		case strings.HasPrefix(f, "host="):
			host = strings.TrimPrefix(f, "host=")
		case strings.HasPrefix(f, "port="):
			port = strings.TrimPrefix(f, "port=")
		default:
			rest = append(rest, f)
		}
	}
	if host == "" || strings.HasPrefix(host, "/") {
		return "", nil, fmt.Errorf("the fault tests need host= (TCP) in the DSN")
	}
	return net.JoinHostPort(host, port), func(addr string) string {
		h, p, _ := net.SplitHostPort(addr)
		return strings.Join(append([]string{"host=" + h, "port=" + p}, rest...), " ")
	}, nil
}

// roundRobin is the load balancer: each request goes to the next app server.
type roundRobin struct {
	next     atomic.Uint64
	handlers []http.Handler
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.handlers[rr.next.Add(1)%uint64(len(rr.handlers))].ServeHTTP(w, r)
}

// profileBlob is what login stores besides the user id, so that a session
// weighs about 1 KiB in memcached, like a real one with a few preferences.
var profileBlob = strings.Repeat("preferences;", 85)

// faultApp is the application behind the session middleware:
//
//	/visit     an anonymous visit (creates the session)
//	/login     puts the user id (a durable key) and renews the token
//	/click     adds an item to the cart: clicks+1; answers "user clicks"
//	/cart      reads the cart; answers "user clicks"
//
// /click and /cart answer 401 with "new" or "existing" when the session
// holds no user: a logout, or a session that lost its durable key.
func faultApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Put("visits", getInt(s, "visits")+1)
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Put("user", r.FormValue("user"))
		s.Put("profile", profileBlob)
		s.RenewToken()
		fmt.Fprint(w, "ok")
	})
	loggedIn := func(w http.ResponseWriter, s *core.Session) string {
		u := getString(s, "user")
		if u == "" {
			w.WriteHeader(http.StatusUnauthorized)
			if s.IsNew() {
				fmt.Fprint(w, "new")
			} else {
				fmt.Fprint(w, "existing")
			}
		}
		return u
	}
	mux.HandleFunc("/click", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		u := loggedIn(w, s)
		if u == "" {
			return
		}
		n := getInt(s, "clicks") + 1
		s.Put("clicks", n)
		fmt.Fprintf(w, "%s %d", u, n)
	})
	mux.HandleFunc("/cart", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		if u := loggedIn(w, s); u != "" {
			fmt.Fprintf(w, "%s %d", u, getInt(s, "clicks"))
		}
	})
	return mux
}

// tierCounts is the sum of the app servers' Stats counters the fault tests
// look at.
type tierCounts struct {
	CacheHits, CacheMisses, CacheErrors uint64
	DBReads, DBWrites, DBErrors         uint64
	SyncDropped, Conflicts, Merges      uint64
}

func (env *faultEnv) counts() tierCounts {
	var c tierCounts
	for _, s := range env.stores {
		st := s.Stats()
		c.CacheHits += st.CacheHits
		c.CacheMisses += st.CacheMisses
		c.CacheErrors += st.CacheErrors
		c.DBReads += st.DBReads
		c.DBWrites += st.DBWrites
		c.DBErrors += st.DBErrors
		c.SyncDropped += st.SyncDropped
		c.Conflicts += st.Conflicts
		c.Merges += st.Merges
	}
	return c
}

func (c tierCounts) sub(o tierCounts) tierCounts {
	return tierCounts{
		CacheHits: c.CacheHits - o.CacheHits, CacheMisses: c.CacheMisses - o.CacheMisses,
		CacheErrors: c.CacheErrors - o.CacheErrors,
		DBReads:     c.DBReads - o.DBReads, DBWrites: c.DBWrites - o.DBWrites, DBErrors: c.DBErrors - o.DBErrors,
		SyncDropped: c.SyncDropped - o.SyncDropped, Conflicts: c.Conflicts - o.Conflicts, Merges: c.Merges - o.Merges,
	}
}

// hitRatio is CacheHits / (CacheHits + CacheMisses + CacheErrors): about
// the share of session reads that memcached answered, counting its failed
// operations (failed writes too) as reads it could not answer.
func (c tierCounts) hitRatio() float64 {
	total := c.CacheHits + c.CacheMisses + c.CacheErrors
	if total == 0 {
		return 0
	}
	return float64(c.CacheHits) / float64(total)
}

// waitBreaker waits until node's breaker is open (or closed) on every app
// server, and fails the test after faultBreakerWait.
func (env *faultEnv) waitBreaker(node *faultNode, open bool) time.Duration {
	env.t.Helper()
	start := time.Now()
	for {
		all := true
		for _, s := range env.stores {
			o, known := nodeOpen(s, node.Addr())
			if !known {
				env.t.Fatalf("%s (%s) missing from Stats().Nodes", node.name, node.Addr())
			}
			all = all && o == open
		}
		if all {
			return time.Since(start)
		}
		if time.Since(start) > faultBreakerWait {
			state := "open"
			if !open {
				state = "closed"
			}
			env.t.Fatalf("%s's breaker not %s on every app server after %v: %+v", node.name, state, faultBreakerWait, env.stores[0].Stats().Nodes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ownerOf returns the index in nodes of the node that owns token's session,
// as the stores' consistent hashing places it.
func ownerOf(t *testing.T, nodes []*faultNode, token string) int {
	t.Helper()
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	return newPlacement(t, addrs...).owner(token)
}

// memcachedStat reads one counter of memcached's "stats" directly from the
// process (not through the proxy).
func memcachedStat(t *testing.T, addr, name string) int64 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(c)
	var v int64 = -1
	for sc.Scan() {
		line := sc.Text()
		if line == "END" {
			break
		}
		if f := strings.Fields(line); len(f) == 3 && f[0] == "STAT" && f[1] == name {
			v, _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return v
}
