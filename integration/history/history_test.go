package history

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
)

// opRec is one request as the recorder saw it: when it started, when its
// Load returned and when it ended (wall clock of the test process,
// monotonic), what it presented, what it observed and what it changed, and
// the app server's clock offset and configuration.
type opRec struct {
	ID      int
	Client  int
	Server  int
	Kind    string
	Start   time.Time
	LoadEnd time.Time
	End     time.Time
	Skew    time.Duration // the app server's clock offset
	Sync    time.Duration // the app server's SyncInterval
	CfgIdle time.Duration // the app server's Config.IdleTimeout

	TokenIn string
	Loaded  bool              // Load (or Find) answered without error
	Found   bool              // Load returned the stored session
	Source  string            // where Load found it (Session.Source; "" from scs's Find)
	Seen    map[string]string // values observed at Load

	SetSubject  string            // SetSubject called with this
	LongSubject bool              // the subject is longer than 255 bytes, non-ASCII
	Remember    bool              // RememberMe and SetIdleTimeout(rememberIdle)
	Writes      map[string]string // Put key -> unique value
	ScsExpiry   time.Time         // the expiry an scs Commit gave
	Durable     bool              // the change was durable (MarkDurable, DurableKeys, a login)
	Renew       bool
	Destroy     bool
	DSubject    string // DestroySubject of this user
	TokenOut    string // the session's token after Save ("" when destroyed)

	Err      string
	Unavail  bool // the error wraps core.ErrUnavailable (a 503)
	Conflict bool // the error wraps core.ErrConflict
}

func (r *opRec) ok() bool { return r.Err == "" }

// wrote reports whether the request changed values.
func (r *opRec) wrote() bool { return len(r.Writes) > 0 }

func (r *opRec) format(ep time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d c%d s%d %-9s %s..%s tok=%s", r.ID, r.Client, r.Server, r.Kind,
		fmtT(ep, r.Start), fmtT(ep, r.End), short(r.TokenIn))
	if r.TokenIn != "" && r.Loaded {
		fmt.Fprintf(&b, " found=%v", r.Found)
		if r.Found {
			fmt.Fprintf(&b, "(%s)", cmp.Or(r.Source, "none"))
		}
	}
	if len(r.Seen) > 0 {
		fmt.Fprintf(&b, " seen=%s", fmtMap(r.Seen))
	}
	if r.SetSubject != "" {
		fmt.Fprintf(&b, " subject=%s", short(r.SetSubject))
	}
	if r.Remember {
		b.WriteString(" remember")
	}
	if len(r.Writes) > 0 {
		fmt.Fprintf(&b, " put=%s", fmtMap(r.Writes))
	}
	if !r.ScsExpiry.IsZero() {
		fmt.Fprintf(&b, " expiry=%s", fmtT(ep, r.ScsExpiry))
	}
	if r.Durable {
		b.WriteString(" durable")
	}
	if r.Renew {
		b.WriteString(" renew")
	}
	if r.Destroy {
		b.WriteString(" destroy")
	}
	if r.DSubject != "" {
		fmt.Fprintf(&b, " destroy-subject=%s", r.DSubject)
	}
	if r.TokenOut != r.TokenIn {
		fmt.Fprintf(&b, " -> %s", short(r.TokenOut))
	}
	if r.Skew > maxSkew || r.Skew < -maxSkew {
		fmt.Fprintf(&b, " skew=%v", r.Skew)
	}
	if r.Err != "" {
		fmt.Fprintf(&b, " ERR %s", r.Err)
	}
	return b.String()
}

// faultRec is one injected fault.
type faultRec struct {
	Kind    string
	Target  string
	Servers []int // the app servers it cuts off from a node; nil: all
	Server  int   // the app server crashed, restarted or redeployed; -1: none
	Start   time.Time
	End     time.Time // == Start for instantaneous faults
	Loss    bool      // memcached lost data (kill, stop, flush, eviction)
	Unavail bool      // a node unreachable (to Servers) for [Start, End]
	Ring    bool      // app servers' rings changed over [Start, End]
	DB      bool      // the database refused or hung for [Start, End]
	Crash   bool      // an app server died with its writer's queue
	Note    string
}

// affects reports whether f cut app server srv off from its node.
func (f *faultRec) affects(srv int) bool {
	return f.Servers == nil || slices.Contains(f.Servers, srv)
}

func (f *faultRec) format(ep time.Time) string {
	s := fmt.Sprintf("fault %-9s %-6s %s..%s", f.Kind, f.Target, fmtT(ep, f.Start), fmtT(ep, f.End))
	if f.Servers != nil {
		s += fmt.Sprintf(" from s%v", f.Servers)
	}
	if f.Note != "" {
		s += " " + f.Note
	}
	return s
}

func fmtT(epoch, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%6.3fs", t.Sub(epoch).Seconds())
}

func short(tok string) string {
	if len(tok) > 6 {
		return tok[:6]
	}
	if tok == "" {
		return "∅"
	}
	return tok
}

func fmtMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + m[k]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// recorder collects a history.
type recorder struct {
	mu       sync.Mutex
	nextID   int
	ops      []*opRec
	faults   []*faultRec
	observed int  // faults no one injected: an app server saw a tier fail
	closed   bool // the history is over: the checker reads it
}

func (r *recorder) newOp(client, srv int, kind, token string) *opRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	return &opRec{ID: r.nextID, Client: client, Server: srv, Kind: kind, TokenIn: token}
}

func (r *recorder) done(op *opRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

func (r *recorder) fault(f *faultRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, f)
}

// observe records a failure an app server saw, injected or not: on a
// loaded machine memcached and the database time out by themselves, and
// the checker must judge the faults that happened.
func (r *recorder) observe(f *faultRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.faults = append(r.faults, f)
		r.observed++
	}
}

// close ends the history: the app servers still running record no more.
func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
}

// profile weights a history's operations and faults towards some
// invariants and some faults.
type profile struct {
	name string
	// operation weights
	login, put, dput, read, renew, destroy, dsubject, burst, race, probe, replay, scs int
	longSubject                                                                       float64 // share of logins with a long non-ASCII subject
	remember                                                                          float64 // share of clients whose logins are remembered (RememberMe)
	// fault weights
	kill, stop, flush, evict, pause, cut, hole, ring, dbcut, dbhang, crash, restart int
	deploy                                                                          int     // a rolling deploy of a new configuration (see deploy)
	partitionCrash                                                                  int     // an app server crashes inside its partition (see partitionCrash)
	outageDeploy                                                                    int     // a deploy during a database outage (see outageDeploy)
	logoutScript                                                                    int     // add a node, log out everywhere, lose the node (see logoutScript)
	longFaults                                                                      float64 // share of node faults that outlast IdleTimeout
	partial                                                                         float64 // share of cuts and blackholes that cut off only some app servers
	faultGap                                                                        [2]time.Duration
	archiveFail                                                                     float64 // share of failing archive hooks
	duration                                                                        time.Duration
	clients                                                                         int
	networkedDB                                                                     bool // prefers PostgreSQL/MariaDB (database faults)
	noMemcached                                                                     bool // app servers without memcached: database only
	spareFaults                                                                     bool // flush and evict hit only the node that joins and leaves the ring
	ringAtOnce                                                                      bool // ring changes reach every app server at the same moment
	bigSkew                                                                         bool // one app server's clock is minutes off
	probeMin                                                                        time.Duration
	probeMax                                                                        time.Duration
}

var profiles = []profile{
	{name: "mixed", login: 3, put: 8, dput: 2, read: 8, renew: 2, destroy: 1, dsubject: 1, burst: 1, race: 1, probe: 1, replay: 1, scs: 4,
		longSubject: 0.1, remember: 0.3, kill: 2, stop: 1, flush: 1, evict: 2, pause: 1, cut: 1, hole: 1, ring: 1, dbcut: 1, crash: 1, restart: 1,
		deploy: 1, partitionCrash: 1, longFaults: 0.15, partial: 0.6, bigSkew: true,
		faultGap: [2]time.Duration{400 * time.Millisecond, 1200 * time.Millisecond}, archiveFail: 0.2,
		duration: 9 * time.Second, clients: 6, probeMin: idleTimeout - 500*time.Millisecond, probeMax: idleTimeout + syncSlow + time.Second},
	// Idle expiry at production proportions: probes around IdleTimeout,
	// remembered sessions beside short ones, failing archive hooks, few
	// faults.
	{name: "idle", login: 2, put: 3, dput: 1, read: 3, probe: 8, replay: 1, scs: 3, remember: 0.3,
		pause: 1, cut: 1, partial: 0.5, faultGap: [2]time.Duration{3 * time.Second, 6 * time.Second}, archiveFail: 0.7,
		duration: 10 * time.Second, clients: 6, probeMin: idleTimeout - 300*time.Millisecond, probeMax: idleTimeout + syncInterval + 200*time.Millisecond},
	// Log out everywhere beside ring changes: a node joins, a user logs out
	// everywhere, the node loses its data.
	{name: "subject", login: 2, put: 3, read: 5, dsubject: 1, replay: 3, spareFaults: true, ringAtOnce: true,
		flush: 1, evict: 1, logoutScript: 4, faultGap: [2]time.Duration{300 * time.Millisecond, 900 * time.Millisecond},
		duration: 8 * time.Second, clients: 6, probeMin: time.Second, probeMax: 2 * time.Second},
	// No memcached: every change goes to the row.
	{name: "dbonly", login: 1, put: 4, read: 3, race: 8, dput: 1, burst: 2, renew: 1, destroy: 1, dsubject: 1, replay: 1, scs: 8,
		remember: 0.2, crash: 1, restart: 1, faultGap: [2]time.Duration{time.Second, 2 * time.Second},
		duration: 7 * time.Second, clients: 5, noMemcached: true, probeMin: time.Second, probeMax: 2 * time.Second},
	// Durable writes while the database refuses; deploys during the outage;
	// memcached losing the copies.
	{name: "durable", put: 2, dput: 8, read: 4, // no renewals: one failing during an outage ends the session
		kill: 3, flush: 2, dbcut: 1, restart: 1, outageDeploy: 3, faultGap: [2]time.Duration{400 * time.Millisecond, 1000 * time.Millisecond},
		duration: 9 * time.Second, clients: 5, networkedDB: true, probeMin: time.Second, probeMax: 2 * time.Second},
	// The database hangs: requests still answer.
	{name: "hang", login: 6, put: 3, dput: 2, read: 3, renew: 1, longSubject: 0.2,
		dbhang: 1, kill: 1, faultGap: [2]time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond},
		duration: 9 * time.Second, clients: 4, networkedDB: true, probeMin: time.Second, probeMax: 2 * time.Second},
	// Partitions between app servers and nodes, many longer than a short
	// session's idle timeout, app servers crashing inside them, remembered
	// sessions beside short ones, one clock minutes off.
	{name: "partition", login: 2, put: 6, dput: 2, read: 6, renew: 1, destroy: 1, dsubject: 1, burst: 1, probe: 3, replay: 2, scs: 2,
		remember: 0.5, cut: 3, hole: 3, pause: 1, crash: 1, partitionCrash: 2, longFaults: 0.6, partial: 0.8, bigSkew: true,
		faultGap: [2]time.Duration{500 * time.Millisecond, 1500 * time.Millisecond},
		duration: 11 * time.Second, clients: 6, probeMin: idleTimeout - 300*time.Millisecond, probeMax: idleTimeout + syncSlow + time.Second},
	// Rolling changes: ring changes and deploys of new configurations
	// (SyncInterval, IdleTimeout, a seal key added at the end of the ring,
	// then moved to the front) one app server at a time, under load.
	{name: "deploy", login: 2, put: 8, dput: 2, read: 5, burst: 2, renew: 1, dsubject: 2, destroy: 1, replay: 2, probe: 1, scs: 2,
		remember: 0.3, ring: 4, deploy: 4, evict: 1, crash: 1, restart: 1, bigSkew: true,
		faultGap: [2]time.Duration{300 * time.Millisecond, 900 * time.Millisecond},
		duration: 10 * time.Second, clients: 6, probeMin: idleTimeout - 500*time.Millisecond, probeMax: idleTimeout + syncSlow + time.Second},
}

func profileFor(seed uint64) profile { return profiles[seed%uint64(len(profiles))] }

// backendFor picks the database of a seed from the available ones: a
// profile that injects database faults takes a networked database when one
// is configured. The same seed with the same DSNs set picks the same one.
func backendFor(seed uint64, p profile, all []gormtest.Backend) gormtest.Backend {
	var networked []gormtest.Backend
	for _, b := range all {
		if b.DSN != "" {
			networked = append(networked, b)
		}
	}
	n := seed / uint64(len(profiles))
	if p.networkedDB && len(networked) > 0 {
		return networked[n%uint64(len(networked))]
	}
	return all[n%uint64(len(all))]
}

// history is one run: a cluster, clients, faults and the recorder.
type history struct {
	t     testing.TB
	seed  uint64
	epoch time.Time // start of the run, for readable traces
	p     profile
	c     *cluster
	rec   recorder
	stop  chan struct{}

	archiveMu  sync.Mutex
	archiveRng *rand.Rand

	users      []string
	clients    []*client
	crashed    []*core.Store // stores dropped without Close, closed at the end
	faultWG    sync.WaitGroup
	ringBusy   bool
	deployBusy bool
	nodeBusy   []bool
	dbBusy     bool
	busyMu     sync.Mutex
	gate       sync.RWMutex // clients hold R for each operation; scripted faults pause them with W
	faultStat  map[string]int
}

type client struct {
	id       int
	rng      *rand.Rand
	user     string
	remember bool // logs in with RememberMe
	token    string
	old      []string // tokens this client held before (destroyed or renewed)
	scsTok   string   // the client's scs session ("" none)
	scsOld   []string // scs sessions it held before
	seq      int
}

func (h *history) value(op *opRec, key string) string {
	return fmt.Sprintf("o%d%s", op.ID, key)
}

func newHistory(t testing.TB, seed uint64, b gormtest.Backend) *history {
	p := profileFor(seed)
	h := &history{t: t, seed: seed, p: p, stop: make(chan struct{}), faultStat: map[string]int{}}
	h.archiveRng = rand.New(rand.NewPCG(seed, 7))
	setup := rand.New(rand.NewPCG(seed, 1))
	h.c = newCluster(t, b, 3, p.noMemcached, setup, p.bigSkew, &h.rec, func() bool {
		h.archiveMu.Lock()
		defer h.archiveMu.Unlock()
		return h.archiveRng.Float64() >= h.p.archiveFail
	})
	h.nodeBusy = make([]bool, len(h.c.nodes))
	for i := 0; i < (p.clients+1)/2; i++ {
		h.users = append(h.users, fmt.Sprintf("user%d", i))
	}
	for i := 0; i < p.clients; i++ {
		h.clients = append(h.clients, &client{id: i, rng: rand.New(rand.NewPCG(seed, uint64(100+i))), user: h.users[i/2],
			remember: setup.Float64() < p.remember})
	}
	return h
}

// run plays the history: clients and faults for p.duration. Then every
// fault heals; after the database's settling time and the longest
// SyncInterval every client's tokens are read from every app server, the
// app servers' writers run, memcached loses everything, and every token is
// read again: the rows alone must hold every live session and every change
// that had reached them (I1, I4, I5).
func (h *history) run() {
	h.epoch = time.Now()
	if l := h.c.log; l != nil {
		l.mu.Lock()
		l.epoch = h.epoch
		l.mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, cl := range h.clients {
		wg.Add(1)
		go func() { defer wg.Done(); h.clientLoop(cl) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); h.faultLoop(rand.New(rand.NewPCG(h.seed, 2))) }()
	time.Sleep(h.p.duration)
	close(h.stop)
	done := make(chan struct{})
	go func() { wg.Wait(); h.faultWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		h.t.Errorf("seed %d: clients or faults still running 40s after the history ended (an operation never returned)", h.seed)
		return
	}
	time.Sleep(dbSettle + syncSlow + 100*time.Millisecond)
	h.finalReads()
	time.Sleep(syncSlow + writerTick(syncSlow) + 100*time.Millisecond)
	h.flushWriters()
	if h.c.noMemcached {
		return
	}
	h.flushAll()
	h.finalReads()
}

// flushWriters runs every app server's background writer for the rows that
// are due.
func (h *history) flushWriters() {
	for _, s := range h.c.servers {
		s.mu.RLock()
		ctx, cancel := context.WithTimeout(context.Background(), 3*dbTimeout)
		_ = s.store.Flush(ctx)
		cancel()
		s.mu.RUnlock()
	}
}

func (h *history) finalReads() {
	for _, cl := range h.clients {
		for _, tok := range append([]string{cl.scsTok}, cl.scsOld...) {
			if tok == "" {
				continue
			}
			for _, s := range h.c.servers {
				h.scsRequest(cl, s, "scs-final", tok)
			}
		}
		toks := append([]string{cl.token}, cl.old...)
		for _, tok := range toks {
			if tok == "" {
				continue
			}
			for _, s := range h.c.servers {
				h.request(cl, s, "final", tok, nil)
			}
		}
	}
}

func (h *history) stopped() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// sleep waits d or until the history stops; it reports whether it slept
// the whole time.
func (h *history) sleep(d time.Duration) bool {
	select {
	case <-h.stop:
		return false
	case <-time.After(d):
		return true
	}
}

func pick(rng *rand.Rand, weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	if total == 0 {
		return -1
	}
	n := rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return -1
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

func (h *history) server(rng *rand.Rand) *server { return h.c.servers[rng.IntN(len(h.c.servers))] }

func (h *history) clientLoop(cl *client) {
	for !h.stopped() {
		if !h.sleep(between(cl.rng, 30*time.Millisecond, 300*time.Millisecond)) {
			return
		}
		h.gate.RLock()
		h.step(cl)
		h.gate.RUnlock()
	}
}

// step runs one random operation of client cl.
func (h *history) step(cl *client) {
	p := h.p
	{
		switch pick(cl.rng, p.login, p.put, p.dput, p.read, p.renew, p.destroy, p.dsubject, p.burst, p.race, p.probe, p.replay, p.scs) {
		case 0:
			h.login(cl)
		case 1:
			h.put(cl, false)
		case 2:
			h.put(cl, true)
		case 3:
			h.readOnly(cl, "read")
		case 4:
			h.simple(cl, "renew", func(s *core.Session, op *opRec) { s.RenewToken(); op.Renew = true })
		case 5:
			h.destroy(cl)
		case 6:
			h.destroySubject(cl)
		case 7:
			h.burst(cl)
		case 8:
			h.race(cl)
		case 9:
			if cl.token == "" {
				h.login(cl)
				return
			}
			if h.sleep(between(cl.rng, p.probeMin, p.probeMax)) {
				h.readOnly(cl, "probe")
			}
		case 11:
			h.scsStep(cl)
		case 10:
			if len(cl.old) > 0 {
				h.request(cl, h.server(cl.rng), "replay", cl.old[cl.rng.IntN(len(cl.old))], nil)
			}
		}
	}
}

// request runs one request on srv: Load token, fn (nil: read only), Save.
// The operation is recorded when it returns; the caller waits for it
// however long it takes (the liveness check judges the duration).
func (h *history) request(cl *client, srv *server, kind, token string, fn func(*core.Session, *opRec)) *opRec {
	op := h.rec.newOp(cl.id, srv.id, kind, token)
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	begin(op, srv)
	ctx := context.Background() // a request without a deadline: the library must bound its own waits
	s, err := srv.mgr.Load(ctx, token)
	op.LoadEnd = time.Now()
	if err == nil {
		h.observe(s, op)
		if fn != nil {
			fn(s, op)
		}
		if err == nil {
			err = srv.mgr.Save(ctx, s)
		}
		if err == nil {
			op.TokenOut = s.Token()
		}
	}
	op.End = time.Now()
	h.setErr(op, err)
	h.rec.done(op)
	return op
}

// begin stamps op with its start and its app server's clock offset and
// configuration; srv.mu is held.
func begin(op *opRec, srv *server) {
	op.Skew, op.Sync, op.CfgIdle = srv.skew, srv.cfg.sync, srv.cfg.idle
	op.Start = time.Now()
}

func (h *history) observe(s *core.Session, op *opRec) {
	op.Loaded = true
	op.Found = op.TokenIn != "" && !s.IsNew()
	if !op.Found {
		return
	}
	op.Source = s.Source()
	op.Seen = map[string]string{}
	for _, k := range s.Keys() {
		op.Seen[k] = getString(s, k)
	}
}

func (h *history) setErr(op *opRec, err error) {
	if err == nil {
		return
	}
	op.Err = err.Error()
	op.Unavail = errors.Is(err, core.ErrUnavailable)
	op.Conflict = errors.Is(err, core.ErrConflict)
	op.TokenOut = ""
}

// after updates the client's token from a finished request.
func (cl *client) after(op *opRec) {
	if !op.ok() {
		return
	}
	if op.TokenOut != cl.token {
		if cl.token != "" && op.Kind != "replay" && op.Kind != "final" {
			// Renewed, destroyed, or found missing: replays try it later.
			cl.old = append(cl.old, cl.token)
		}
		cl.token = op.TokenOut
	}
}

func (h *history) simple(cl *client, kind string, fn func(*core.Session, *opRec)) {
	if cl.token == "" {
		h.login(cl)
		return
	}
	op := h.request(cl, h.server(cl.rng), kind, cl.token, func(s *core.Session, op *opRec) {
		if !op.Found {
			return // expired or destroyed: a fresh session; nothing to do
		}
		fn(s, op)
	})
	cl.after(op)
}

// login sets the subject and renews the token (or starts a session).
func (h *history) login(cl *client) {
	subject := cl.user
	long := cl.rng.Float64() < h.p.longSubject
	if long {
		// A unique prefix, then 2-byte characters placed so that byte 255
		// falls inside one.
		prefix := fmt.Sprintf("%d-%d-", cl.id, cl.seq)
		if (255-len(prefix))%2 == 0 {
			prefix += "x"
		}
		subject = prefix + strings.Repeat("ü", 140)
		cl.seq++
	}
	op := h.request(cl, h.server(cl.rng), "login", cl.token, func(s *core.Session, op *opRec) {
		s.SetSubject(subject)
		op.SetSubject, op.LongSubject = subject, long
		if cl.remember {
			s.RememberMe(rememberLifetime)
			s.SetIdleTimeout(rememberIdle)
			op.Remember = true
		}
		op.Durable = true // a new session, a subject and a renewal are durable changes
		s.RenewToken()
		op.Renew = op.Found
		op.Writes = map[string]string{"u": h.value(op, "u")}
		s.Put("u", op.Writes["u"])
	})
	cl.after(op)
}

func (h *history) put(cl *client, durable bool) {
	if cl.token == "" {
		h.login(cl)
		return
	}
	keys := []string{"k0", "k1", "k2"}
	if durable && cl.rng.IntN(2) == 0 {
		keys = []string{"d0", "d1"}
	}
	n := 1 + cl.rng.IntN(2)
	markDurable := durable && keys[0][0] == 'k'
	chosen := map[string]bool{}
	for i := 0; i < n; i++ {
		chosen[keys[cl.rng.IntN(len(keys))]] = true
	}
	kind := "put"
	if durable {
		kind = "dput"
	}
	op := h.request(cl, h.server(cl.rng), kind, cl.token, func(s *core.Session, op *opRec) {
		if !op.Found {
			return // expired or destroyed: only a login starts a session
		}
		op.Writes = map[string]string{}
		for k := range chosen {
			op.Writes[k] = h.value(op, k)
			s.Put(k, op.Writes[k])
			if k[0] == 'd' {
				op.Durable = true
			}
		}
		if markDurable {
			s.MarkDurable()
			op.Durable = true
		}
	})
	cl.after(op)
}

func (h *history) readOnly(cl *client, kind string) {
	if cl.token == "" {
		h.login(cl)
		return
	}
	op := h.request(cl, h.server(cl.rng), kind, cl.token, nil)
	cl.after(op)
}

func (h *history) destroy(cl *client) {
	if cl.token == "" {
		h.login(cl)
		return
	}
	op := h.request(cl, h.server(cl.rng), "destroy", cl.token, func(s *core.Session, op *opRec) {
		if !op.Found {
			return
		}
		if err := s.Destroy(context.Background()); err != nil {
			h.setErr(op, err)
			return
		}
		op.Destroy = true
	})
	if op.Err != "" {
		return // may still exist: keep using it
	}
	cl.after(op)
}

// destroySubject logs out every session of this client's user (shared
// with another client) or of another user.
func (h *history) destroySubject(cl *client) {
	user := cl.user
	if cl.rng.IntN(3) == 0 {
		user = h.users[cl.rng.IntN(len(h.users))]
	}
	srv := h.server(cl.rng)
	op := h.rec.newOp(cl.id, srv.id, "dsubject", "")
	op.DSubject = user
	srv.mu.RLock()
	begin(op, srv)
	_, err := srv.mgr.DestroySubject(context.Background(), user)
	op.End = time.Now()
	srv.mu.RUnlock()
	h.setErr(op, err)
	h.rec.done(op)
}

// burst runs 2–4 concurrent writers on the client's session, each on its
// own key and a random app server.
func (h *history) burst(cl *client) {
	if cl.token == "" {
		h.login(cl)
		return
	}
	n := 2 + cl.rng.IntN(3)
	srvs := make([]*server, n)
	for i := range srvs {
		srvs[i] = h.server(cl.rng)
	}
	tok := cl.token
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("b%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.request(cl, srvs[i], "burst", tok, func(s *core.Session, op *opRec) {
				if !op.Found {
					return
				}
				op.Writes = map[string]string{key: h.value(op, key)}
				s.Put(key, op.Writes[key])
			})
		}()
	}
	wg.Wait()
}

// race interleaves a writer W and a read-only request R on one session,
// on two app servers: W loads, R loads, W saves, R saves — R's touch, if
// due, must not undo W's change.
func (h *history) race(cl *client) {
	if cl.token == "" {
		h.login(cl)
		return
	}
	// Let the session's last activity age past TouchInterval, so that R's
	// touch is due.
	if !h.sleep(touchInterval + 50*time.Millisecond) {
		return
	}
	sw, sr := h.server(cl.rng), h.server(cl.rng)
	w := h.rec.newOp(cl.id, sw.id, "race-w", cl.token)
	r := h.rec.newOp(cl.id, sr.id, "race-r", cl.token)
	sw.mu.RLock()
	defer sw.mu.RUnlock()
	if sr != sw {
		sr.mu.RLock()
		defer sr.mu.RUnlock()
	}
	ctx := context.Background()
	begin(w, sw)
	ws, werr := sw.mgr.Load(ctx, cl.token)
	w.LoadEnd = time.Now()
	if werr == nil {
		h.observe(ws, w)
	}
	begin(r, sr)
	rs, rerr := sr.mgr.Load(ctx, cl.token)
	r.LoadEnd = time.Now()
	if rerr == nil {
		h.observe(rs, r)
	}
	if werr == nil {
		if w.Found {
			key := []string{"k0", "k1", "k2"}[cl.rng.IntN(3)]
			w.Writes = map[string]string{key: h.value(w, key)}
			ws.Put(key, w.Writes[key])
		}
		werr = sw.mgr.Save(ctx, ws)
		if werr == nil {
			w.TokenOut = ws.Token()
		}
	}
	w.End = time.Now()
	if rerr == nil {
		rerr = sr.mgr.Save(ctx, rs)
		if rerr == nil {
			r.TokenOut = rs.Token()
		}
	}
	r.End = time.Now()
	h.setErr(w, werr)
	h.setErr(r, rerr)
	h.rec.done(w)
	h.rec.done(r)
}

// faultLoop injects faults from the profile's weights until the history
// stops. Each fault runs in its own goroutine and heals itself.
func (h *history) faultLoop(rng *rand.Rand) {
	p := h.p
	for h.sleep(between(rng, p.faultGap[0], p.faultGap[1])) {
		dbw := [3]int{p.dbcut, p.dbhang, p.outageDeploy}
		if h.c.dbProxy == nil {
			dbw = [3]int{}
		}
		kind := pick(rng, p.kill, p.stop, p.flush, p.evict, p.pause, p.cut, p.hole, p.ring, dbw[0], dbw[1], p.crash, p.restart,
			dbw[2], p.logoutScript, p.deploy, p.partitionCrash)
		dur := between(rng, 300*time.Millisecond, 1800*time.Millisecond)
		if rng.Float64() < p.longFaults {
			dur = between(rng, idleTimeout+500*time.Millisecond, idleTimeout+2*time.Second) // a short session idles out meanwhile
		}
		sub := rand.New(rand.NewPCG(h.seed, rng.Uint64()))
		switch kind {
		case 0, 1, 4, 5, 6:
			ni := h.pickNode(rng)
			if ni < 0 {
				continue
			}
			var cut []int // nil: every app server
			if (kind == 5 || kind == 6) && rng.Float64() < p.partial {
				cut = h.someServers(rng)
			}
			h.spawn(func() { h.nodeFault(nodeFaultNames[kind], ni, cut, dur) })
		case 2:
			n := h.c.nodes[rng.IntN(len(h.c.nodes))]
			if p.spareFaults {
				n = h.c.nodes[h.c.spare]
			}
			f := &faultRec{Kind: "flush", Target: n.name, Loss: true, Server: -1}
			f.Start = time.Now()
			err := n.raw().FlushAll()
			f.End = time.Now()
			if err != nil {
				f.Note = err.Error()
			}
			h.record(f)
		case 3:
			h.evict(rng)
		case 7:
			if h.claim(&h.ringBusy) {
				h.spawn(func() { h.ringChange(sub) })
			}
		case 8, 9:
			if h.claim(&h.dbBusy) {
				if kind == 9 {
					dur = dbHangDuration
				} else {
					dur = between(rng, 500*time.Millisecond, 2500*time.Millisecond)
				}
				h.spawn(func() { h.dbFault(kind == 9, dur) })
			}
		case 10, 11:
			h.appFault(h.c.servers[rng.IntN(len(h.c.servers))], kind == 10)
		case 12:
			if h.claim(&h.dbBusy) {
				h.outageDeploy(rng)
			}
		case 13:
			if h.claim(&h.ringBusy) {
				h.logoutScript(rng)
			}
		case 14:
			if h.claim(&h.deployBusy) {
				h.spawn(func() { h.deploy(sub) })
			}
		case 15:
			if ni := h.pickNode(rng); ni >= 0 {
				h.spawn(func() { h.partitionCrash(sub, ni) })
			}
		}
	}
}

// claim sets *busy and reports whether it was clear.
func (h *history) claim(busy *bool) bool {
	h.busyMu.Lock()
	defer h.busyMu.Unlock()
	if *busy {
		return false
	}
	*busy = true
	return true
}

func (h *history) release(busy *bool) {
	h.busyMu.Lock()
	*busy = false
	h.busyMu.Unlock()
}

// someServers returns a random non-empty proper subset of the app servers.
func (h *history) someServers(rng *rand.Rand) []int {
	n := len(h.c.servers)
	k := 1 + rng.IntN(n-1)
	cut := rng.Perm(n)[:k]
	slices.Sort(cut)
	return cut
}

func (h *history) spawn(fn func()) {
	h.faultWG.Add(1)
	go func() { defer h.faultWG.Done(); fn() }()
}

func (h *history) record(f *faultRec) {
	h.busyMu.Lock()
	h.faultStat[f.Kind]++
	h.busyMu.Unlock()
	h.rec.fault(f)
}

func (h *history) pickNode(rng *rand.Rand) int {
	i := rng.IntN(len(h.c.nodes))
	h.busyMu.Lock()
	defer h.busyMu.Unlock()
	if h.nodeBusy[i] {
		return -1
	}
	h.nodeBusy[i] = true
	return i
}

var nodeFaultNames = map[int]string{0: "kill", 1: "stop", 4: "pause", 5: "cut", 6: "blackhole"}

// nodeFault makes node i unreachable for dur: the process killed or
// stopped (and restarted empty), paused (memory kept), or the proxies of
// the app servers cut (nil: all) refusing (cut) or swallowing (blackhole)
// their traffic — a partition, after which the node comes back with the
// memory it had.
func (h *history) nodeFault(kind string, i int, cut []int, dur time.Duration) {
	n := h.c.nodes[i]
	f := &faultRec{Kind: kind, Target: n.name, Servers: cut, Unavail: true, Loss: kind == "kill" || kind == "stop", Server: -1}
	proxies := func() []*proxy {
		var ps []*proxy
		for _, s := range h.c.servers {
			if f.affects(s.id) {
				ps = append(ps, s.proxies[i])
			}
		}
		return ps
	}
	f.Start = time.Now()
	switch kind {
	case "kill":
		n.mc.Kill()
	case "stop":
		n.mc.Stop()
	case "pause":
		n.mc.Pause()
	case "cut":
		for _, p := range proxies() {
			p.Cut()
		}
	case "blackhole":
		for _, p := range proxies() {
			if err := p.Blackhole(); err != nil {
				f.Note = err.Error()
			}
		}
	}
	time.Sleep(dur) // heals even after the history stops: bounded
	switch kind {
	case "kill", "stop":
		n.mc.Restart()
	case "pause":
		n.mc.Resume()
	case "cut":
		for _, p := range proxies() {
			if err := p.Restore(); err != nil {
				f.Note = err.Error()
			}
		}
	case "blackhole":
		for _, p := range proxies() {
			if err := p.Unblackhole(); err != nil {
				f.Note = err.Error()
			}
		}
	}
	f.End = time.Now()
	h.record(f)
	h.busyMu.Lock()
	h.nodeBusy[i] = false
	h.busyMu.Unlock()
}

// partitionCrash cuts one app server off from node i for longer than
// IdleTimeout, crashes it inside the partition (its writer's queue is
// lost; its replacement is cut off too), and heals the partition.
func (h *history) partitionCrash(rng *rand.Rand, i int) {
	s := h.c.servers[rng.IntN(len(h.c.servers))]
	kind := "cut"
	if rng.IntN(2) == 0 {
		kind = "blackhole"
	}
	dur := between(rng, idleTimeout+500*time.Millisecond, idleTimeout+2*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(between(rng, 500*time.Millisecond, 2*time.Second))
		for range 20 {
			if h.appFault(s, true) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	h.nodeFault(kind, i, []int{s.id}, dur)
	<-done
}

// evict deletes the memcached entries of a few clients' sessions on every
// node, as memcached's LRU would.
func (h *history) evict(rng *rand.Rand) {
	f := &faultRec{Kind: "evict", Loss: true, Server: -1}
	f.Start = time.Now()
	var names []string
	for _, cl := range h.clients {
		if rng.IntN(2) == 0 {
			continue
		}
		// The client's token is read racily on purpose: any recent token will do.
		tok := h.lastToken(cl.id)
		if tok == "" {
			continue
		}
		names = append(names, fmt.Sprintf("c%d", cl.id))
		for i, n := range h.c.nodes {
			if !h.p.spareFaults || i == h.c.spare {
				_ = n.raw().Delete("hs:" + core.StorageKey(tok))
			}
		}
	}
	f.End = time.Now()
	f.Target = strings.Join(names, ",")
	h.record(f)
}

// lastToken returns the newest token the recorder saw client id get.
func (h *history) lastToken(id int) string {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	for i := len(h.rec.ops) - 1; i >= 0; i-- {
		if op := h.rec.ops[i]; op.Client == id && op.TokenOut != "" {
			return op.TokenOut
		}
	}
	return ""
}

// setRing adds the spare node to app server s's ring, or removes it.
func (h *history) setRing(s *server, add bool) error {
	spare := h.c.nodes[h.c.spare]
	s.mu.RLock()
	var err error
	if add {
		err = s.store.AddServer(spare.mc.Addr, 1)
	} else {
		err = s.store.RemoveServer(spare.mc.Addr)
	}
	s.mu.RUnlock()
	h.busyMu.Lock()
	s.nodes[spare.mc.Addr] = add
	h.busyMu.Unlock()
	return err
}

func (h *history) spareIn() bool {
	h.busyMu.Lock()
	defer h.busyMu.Unlock()
	return h.c.servers[0].nodes[h.c.nodes[h.c.spare].mc.Addr]
}

// ringChange adds the spare node to every app server's ring (or removes
// it, when it is in), one server at a time with a random gap, waits, and
// undoes the change the same way (or leaves it for the rest of the
// history).
func (h *history) ringChange(rng *rand.Rand) {
	defer h.release(&h.ringBusy)
	roll := func(add bool) {
		f := &faultRec{Kind: "ring-add", Target: h.c.nodes[h.c.spare].name, Ring: true, Server: -1}
		if !add {
			f.Kind = "ring-del"
		}
		f.Start = time.Now()
		var notes []string
		for j, si := range rng.Perm(len(h.c.servers)) {
			if j > 0 && !h.p.ringAtOnce {
				time.Sleep(between(rng, 100*time.Millisecond, 900*time.Millisecond))
			}
			err := h.setRing(h.c.servers[si], add)
			notes = append(notes, fmt.Sprintf("s%d@%s", si, fmtT(h.epoch, time.Now())))
			if err != nil {
				notes = append(notes, err.Error())
			}
		}
		f.End = time.Now()
		f.Note = strings.Join(notes, " ")
		h.record(f)
	}
	in := h.spareIn()
	roll(!in)
	if time.Sleep(between(rng, 500*time.Millisecond, 2500*time.Millisecond)); rng.IntN(3) > 0 {
		roll(in)
	}
}

func (h *history) dbFault(hang bool, dur time.Duration) {
	f := &faultRec{Kind: "db-refuse", Target: "db", DB: true, Server: -1}
	if hang {
		f.Kind = "db-hang"
	}
	f.Start = time.Now()
	if hang {
		if err := h.c.dbProxy.Blackhole(); err != nil {
			f.Note = err.Error()
		}
	} else {
		h.c.dbProxy.Cut()
	}
	time.Sleep(dur)
	if hang {
		if err := h.c.dbProxy.Unblackhole(); err != nil {
			f.Note = err.Error()
		}
	} else if err := h.c.dbProxy.Restore(); err != nil {
		f.Note = err.Error()
	}
	f.End = time.Now()
	h.record(f)
	h.release(&h.dbBusy)
}

// logoutScript is a scripted sequence: the spare node joins every app
// server's ring at once; moments later a user logs out everywhere, through
// a random app server; then the spare node loses its data (the tombstones
// of the keys that moved to it); after a while the node leaves the ring
// again. The user's tokens must stay dead (I2).
func (h *history) logoutScript(rng *rand.Rand) {
	defer h.release(&h.ringBusy)
	spare := h.c.nodes[h.c.spare]
	setRing := func(add bool) {
		f := &faultRec{Kind: "ring-add", Target: spare.name, Ring: true, Note: "at once", Server: -1}
		if !add {
			f.Kind = "ring-del"
		}
		f.Start = time.Now()
		for _, s := range h.c.servers {
			if err := h.setRing(s, add); err != nil {
				f.Note += " " + err.Error()
			}
		}
		f.End = time.Now()
		h.record(f)
	}
	if h.spareIn() {
		setRing(false)
		time.Sleep(between(rng, 300*time.Millisecond, 800*time.Millisecond))
	}
	// The clients pause from the ring change to the loss: a request in
	// between would move its session to the new node, or see its tombstone.
	h.gate.Lock()
	setRing(true)
	time.Sleep(between(rng, 50*time.Millisecond, 300*time.Millisecond))
	srv := h.server(rng)
	op := h.rec.newOp(-1, srv.id, "dsubject", "")
	op.DSubject = h.users[rng.IntN(len(h.users))]
	srv.mu.RLock()
	begin(op, srv)
	_, err := srv.mgr.DestroySubject(context.Background(), op.DSubject)
	op.End = time.Now()
	srv.mu.RUnlock()
	h.setErr(op, err)
	h.rec.done(op)
	time.Sleep(between(rng, 20*time.Millisecond, 200*time.Millisecond))
	f := &faultRec{Kind: "flush", Target: spare.name, Loss: true, Server: -1}
	f.Start = time.Now()
	if err := spare.raw().FlushAll(); err != nil {
		f.Note = err.Error()
	}
	f.End = time.Now()
	h.record(f)
	h.gate.Unlock()
	time.Sleep(between(rng, time.Second, 2*time.Second))
	setRing(false)
}

// outageDeploy is a scripted sequence: the database refuses while clients
// write durably; the clients pause and every app server is restarted
// gracefully (a deploy) during the outage; the database comes back; after
// SyncInterval and the database's settling time memcached loses everything;
// then the clients go on. Durable changes acknowledged before the outage
// are in the rows (I5); those tried during it failed.
func (h *history) outageDeploy(rng *rand.Rand) {
	f := &faultRec{Kind: "db-refuse", Target: "db", DB: true, Note: "deploy", Server: -1}
	f.Start = time.Now()
	h.c.dbProxy.Cut()
	time.Sleep(between(rng, 400*time.Millisecond, 900*time.Millisecond))
	h.gate.Lock()
	for _, s := range h.c.servers {
		s.mu.Lock()
		h.replaceServer(s, false, "restart")
		s.mu.Unlock()
	}
	if err := h.c.dbProxy.Restore(); err != nil {
		f.Note += " " + err.Error()
	}
	f.End = time.Now()
	h.record(f)
	h.release(&h.dbBusy)
	time.Sleep(syncSlow + dbSettle + 200*time.Millisecond)
	h.flushAll()
	h.gate.Unlock()
}

// deploy rolls a new configuration out, one app server at a time with a
// random gap: each is restarted (gracefully, or crashed) with another
// SyncInterval and IdleTimeout, and the seal key ring one step further
// (k2 added at the end of every server's ring, then moved to the front once
// every server holds it).
func (h *history) deploy(rng *rand.Rand) {
	defer h.release(&h.deployBusy)
	step := 2
	for _, s := range h.c.servers {
		s.mu.RLock()
		step = min(step, s.cfg.sealStep+1)
		s.mu.RUnlock()
	}
	for j, si := range rng.Perm(len(h.c.servers)) {
		if j > 0 {
			time.Sleep(between(rng, 200*time.Millisecond, 800*time.Millisecond))
		}
		s := h.c.servers[si]
		cfg := config{sync: []time.Duration{syncInterval, syncSlow}[rng.IntN(2)],
			idle: []time.Duration{idleTimeout, idleLong}[rng.IntN(2)], sealStep: step}
		s.mu.Lock()
		s.cfg = cfg
		h.replaceServer(s, rng.IntN(4) == 0, "deploy")
		s.mu.Unlock()
	}
}

func (h *history) flushAll() {
	f := &faultRec{Kind: "flush-all", Target: "all", Loss: true, Server: -1}
	f.Start = time.Now()
	for _, n := range h.c.nodes {
		if err := n.raw().FlushAll(); err != nil {
			f.Note = err.Error()
		}
	}
	f.End = time.Now()
	h.record(f)
}

// appFault crashes an app server (its Store is dropped without Close: its
// writer's queue dies with it) or restarts it gracefully (Close, whose
// error is recorded). Either way a new Store takes its place with the same
// ring and configuration. It reports false when a request was in flight
// there (nothing done).
func (h *history) appFault(s *server, crash bool) bool {
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	h.replaceServer(s, crash, "restart")
	return true
}

// replaceServer crashes or closes s's Store and starts a new one with
// s.cfg; s.mu is held.
func (h *history) replaceServer(s *server, crash bool, kind string) {
	f := &faultRec{Kind: kind, Target: fmt.Sprintf("s%d", s.id), Server: s.id, Note: s.cfg.String()}
	f.Start = time.Now()
	if crash {
		f.Crash = true
		f.Kind += "-crash"
		s.dead.Store(true)
		h.crashed = append(h.crashed, s.store)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := s.store.Close(ctx); err != nil {
			f.Note += " close: " + err.Error()
		}
		cancel()
	}
	h.busyMu.Lock()
	var addrs []string
	for _, n := range h.c.nodes {
		if s.nodes[n.mc.Addr] {
			addrs = append(addrs, n.mc.Addr)
		}
	}
	h.busyMu.Unlock()
	s.dead = new(atomic.Bool)
	h.c.startServer(s, addrs)
	f.End = time.Now()
	h.record(f)
}

func (h *history) cleanup() {
	for _, st := range h.crashed {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_ = st.Close(ctx)
		cancel()
	}
}

// scsStep runs one scs request of client cl on its scs session, through
// scsstore as scs's session manager would call it: Find at the start of a
// request, Commit with a new idle expiry when the request changed the
// session, Delete at logout. Kinds: scs-new, scs-write, scs-read,
// scs-probe (a read after idling about IdleTimeout), scs-destroy, and
// scs-race (a modifying request that read before a concurrent logout
// committed).
func (h *history) scsStep(cl *client) {
	srv := h.server(cl.rng)
	if cl.scsTok == "" {
		tok := core.NewToken()
		op := h.rec.newOp(cl.id, srv.id, "scs-new", "")
		op.Writes = map[string]string{"s": h.value(op, "s")}
		srv.mu.RLock()
		begin(op, srv)
		op.ScsExpiry = time.Now().Add(idleTimeout)
		err := srv.scs.Commit(tok, []byte(op.Writes["s"]), op.ScsExpiry)
		op.End = time.Now()
		srv.mu.RUnlock()
		h.setErr(op, err)
		if err == nil {
			op.TokenOut, cl.scsTok = tok, tok
		}
		h.rec.done(op)
		return
	}
	tok := cl.scsTok
	switch pick(cl.rng, 4, 4, 2, 1, 2) {
	case 0, 1: // write or read
		kind := "scs-read"
		if cl.rng.IntN(2) == 0 {
			kind = "scs-write"
		}
		h.scsRequest(cl, srv, kind, tok)
	case 2:
		if h.sleep(between(cl.rng, idleTimeout-300*time.Millisecond, idleTimeout+syncSlow+time.Second)) {
			h.scsRequest(cl, srv, "scs-probe", tok)
		}
	case 3:
		op := h.rec.newOp(cl.id, srv.id, "scs-destroy", tok)
		srv.mu.RLock()
		begin(op, srv)
		err := srv.scs.Delete(tok)
		op.End = time.Now()
		srv.mu.RUnlock()
		h.setErr(op, err)
		op.Destroy = err == nil
		h.rec.done(op)
		if err == nil {
			cl.scsOld = append(cl.scsOld, tok)
			cl.scsTok = ""
		}
	case 4:
		h.scsRace(cl, srv, h.server(cl.rng), tok)
	}
}

// scsRequest runs Find and, for scs-write, Commit on tok.
func (h *history) scsRequest(cl *client, srv *server, kind, tok string) *opRec {
	op := h.rec.newOp(cl.id, srv.id, kind, tok)
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	begin(op, srv)
	b, found, err := srv.scs.Find(tok)
	op.LoadEnd = time.Now()
	op.Loaded = err == nil
	if err == nil && found {
		op.Found, op.Seen = true, map[string]string{"s": string(b)}
		if kind == "scs-write" {
			op.Writes = map[string]string{"s": h.value(op, "s")}
			op.ScsExpiry = time.Now().Add(idleTimeout)
			err = srv.scs.Commit(tok, []byte(op.Writes["s"]), op.ScsExpiry)
		}
	}
	op.End = time.Now()
	h.setErr(op, err)
	if err == nil && found {
		op.TokenOut = tok
	}
	h.rec.done(op)
	if err == nil && !found && kind != "scs-final" {
		cl.scsOld = append(cl.scsOld, tok)
		cl.scsTok = ""
	}
	return op
}

// scsRace: request W finds the session, a logout L on another app server
// deletes it, then W commits its change. The logout must win (I2).
func (h *history) scsRace(cl *client, sw, sl *server, tok string) {
	w := h.rec.newOp(cl.id, sw.id, "scs-write", tok)
	l := h.rec.newOp(cl.id, sl.id, "scs-destroy", tok)
	sw.mu.RLock()
	defer sw.mu.RUnlock()
	if sl != sw {
		sl.mu.RLock()
		defer sl.mu.RUnlock()
	}
	begin(w, sw)
	b, found, werr := sw.scs.Find(tok)
	w.LoadEnd = time.Now()
	w.Loaded = werr == nil
	begin(l, sl)
	lerr := sl.scs.Delete(tok)
	l.End = time.Now()
	if werr == nil && found {
		w.Found, w.Seen = true, map[string]string{"s": string(b)}
		w.Writes = map[string]string{"s": h.value(w, "s")}
		w.ScsExpiry = time.Now().Add(idleTimeout)
		werr = sw.scs.Commit(tok, []byte(w.Writes["s"]), w.ScsExpiry)
		if werr == nil {
			w.TokenOut = tok
		}
	}
	w.End = time.Now()
	h.setErr(w, werr)
	h.setErr(l, lerr)
	l.Destroy = lerr == nil
	h.rec.done(w)
	h.rec.done(l)
	if lerr == nil {
		cl.scsOld = append(cl.scsOld, tok)
		cl.scsTok = ""
	}
}

// getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
