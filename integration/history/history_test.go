package history

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
)

// opRec is one request as the recorder saw it: when it started and ended
// (wall clock of the test process, monotonic), what it presented, what it
// observed and what it changed.
type opRec struct {
	ID     int
	Client int
	Server int
	Kind   string
	Start  time.Time
	End    time.Time

	TokenIn string
	Found   bool              // Load returned the stored session
	Seen    map[string]string // values observed at Load
	Subject string            // subject observed at Load

	SetSubject  string            // SetSubject called with this
	LongSubject bool              // the subject is longer than 255 bytes, non-ASCII
	Writes      map[string]string // Put key -> unique value
	Durable     bool              // the change was durable (MarkDurable or DurableKeys)
	Renew       bool
	Destroy     bool
	DSubject    string // DestroySubject of this user
	TokenOut    string // the session's token after Save ("" when destroyed)

	Err      string
	Unavail  bool // the error wraps core.ErrUnavailable (a 503)
	Conflict bool // the error wraps core.ErrConflict
}

func (r *opRec) ok() bool { return r.Err == "" }

func (r *opRec) format(ep time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d c%d s%d %-8s %s..%s tok=%s", r.ID, r.Client, r.Server, r.Kind,
		fmtT(ep, r.Start), fmtT(ep, r.End), short(r.TokenIn))
	if r.TokenIn != "" {
		fmt.Fprintf(&b, " found=%v", r.Found)
	}
	if len(r.Seen) > 0 {
		fmt.Fprintf(&b, " seen=%s", fmtMap(r.Seen))
	}
	if r.SetSubject != "" {
		fmt.Fprintf(&b, " subject=%s", short(r.SetSubject))
	}
	if len(r.Writes) > 0 {
		fmt.Fprintf(&b, " put=%s", fmtMap(r.Writes))
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
	if r.Err != "" {
		fmt.Fprintf(&b, " ERR %s", r.Err)
	}
	return b.String()
}

// faultRec is one injected fault.
type faultRec struct {
	Kind    string
	Target  string
	Start   time.Time
	End     time.Time // == Start for instantaneous faults
	Loss    bool      // memcached lost data (kill, stop, flush, eviction, ring change)
	Unavail bool      // memcached unreachable for [Start, End]
	DB      bool      // the database refused or hung for [Start, End]
	Crash   bool      // an app server died with its queue
	Note    string
}

func (f *faultRec) format(ep time.Time) string {
	s := fmt.Sprintf("fault %-9s %-6s %s..%s", f.Kind, f.Target, fmtT(ep, f.Start), fmtT(ep, f.End))
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
	mu     sync.Mutex
	nextID int
	ops    []*opRec
	faults []*faultRec
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

// profile weights a history's operations and faults towards some defects.
type profile struct {
	name string
	// operation weights
	login, put, dput, read, renew, destroy, dsubject, burst, race, probe, replay int
	scs                                                                          int     // weight of scs requests (scsstore), each client its own scs session
	longSubject                                                                  float64 // share of logins with a long non-ASCII subject
	// fault weights
	kill, stop, flush, evict, pause, cut, hole, ring, dbcut, dbhang, crash, restart int
	faultGap                                                                        [2]time.Duration
	archiveFail                                                                     float64 // share of failing archive hooks
	// reapEvery is the mean time between reaper passes (each ±50%): at
	// most SyncInterval/1.5, so that passes are at most SyncInterval apart
	// (I1's condition on ReaperConfig.Interval)
	reapEvery          time.Duration
	duration           time.Duration
	clients            int
	networkedDB        bool // prefers PostgreSQL/MariaDB (DB faults)
	noMemcached        bool // app servers without memcached: database only
	spareFaults        bool // flush and evict hit only the node that joins and leaves the ring
	ringAtOnce         bool // ring changes reach every app server at the same moment
	logoutScript       int  // weight of the scripted add-node, log-out-everywhere, lose-node sequence (see logoutScript)
	outageDeploy       int  // weight of the scripted outage-and-deploy sequence (see outageDeploy)
	probeMin, probeMax time.Duration
}

var profiles = []profile{
	{name: "mixed", login: 3, put: 8, dput: 2, read: 8, renew: 2, destroy: 1, dsubject: 1, burst: 1, race: 1, probe: 1, replay: 1, scs: 4,
		longSubject: 0.1, kill: 2, stop: 1, flush: 1, evict: 2, pause: 1, cut: 1, hole: 1, ring: 1, dbcut: 1, dbhang: 0, crash: 1, restart: 1,
		faultGap: [2]time.Duration{400 * time.Millisecond, 1200 * time.Millisecond}, archiveFail: 0.2, reapEvery: time.Second,
		duration: 8 * time.Second, clients: 6, probeMin: idleTimeout - 500*time.Millisecond, probeMax: idleTimeout + syncInterval + time.Second},
	// a, b: idle sessions come back from the database row (ordinary expiry;
	// reaper postponement). Few faults: an ordinary expiry is the case.
	{name: "idle", login: 2, put: 3, dput: 1, read: 3, probe: 8, replay: 1, scs: 3,
		pause: 1, faultGap: [2]time.Duration{3 * time.Second, 6 * time.Second}, archiveFail: 0.7, reapEvery: 400 * time.Millisecond,
		duration: 10 * time.Second, clients: 6, probeMin: idleTimeout - 300*time.Millisecond, probeMax: idleTimeout + syncInterval + reapPostpone},
	// c: DestroySubject after AddServer; the new owner then loses its copy.
	// The ring changes on every app server at once: divergent rings are
	// the rolling profile's business.
	{name: "subject", login: 2, put: 3, read: 5, dsubject: 1, replay: 3, spareFaults: true, ringAtOnce: true,
		flush: 1, evict: 1, logoutScript: 4, faultGap: [2]time.Duration{300 * time.Millisecond, 900 * time.Millisecond}, reapEvery: time.Second,
		duration: 8 * time.Second, clients: 6, probeMin: time.Second, probeMax: 2 * time.Second},
	// d: reads race writes while memcached is out of the picture.
	{name: "dbonly", login: 1, put: 4, read: 3, race: 8, dput: 1, burst: 2, renew: 1, destroy: 1, dsubject: 1, replay: 1, scs: 8,
		crash: 1, restart: 1, faultGap: [2]time.Duration{time.Second, 2 * time.Second}, reapEvery: time.Second,
		duration: 7 * time.Second, clients: 5, noMemcached: true, probeMin: time.Second, probeMax: 2 * time.Second},
	// e: durable writes while the database refuses; graceful restarts; then
	// memcached loses the copies.
	{name: "durable", put: 2, dput: 8, read: 4, // no renewals: one failing during an outage ends the session

		kill: 3, flush: 2, dbcut: 1, restart: 1, outageDeploy: 3, faultGap: [2]time.Duration{400 * time.Millisecond, 1000 * time.Millisecond}, reapEvery: time.Second,
		duration: 9 * time.Second, clients: 5, networkedDB: true, probeMin: time.Second, probeMax: 2 * time.Second},
	// f: the database hangs: logins must still answer.
	{name: "hang", login: 6, put: 3, dput: 2, read: 3, renew: 1,
		dbhang: 1, kill: 1, faultGap: [2]time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond}, reapEvery: time.Second,
		duration: 9 * time.Second, clients: 4, networkedDB: true, probeMin: time.Second, probeMax: 2 * time.Second},
	// g: long non-ASCII subjects; memcached down or losing data.
	{name: "longsubj", login: 6, put: 3, read: 4, dsubject: 1, longSubject: 0.6,
		kill: 3, cut: 2, flush: 2, faultGap: [2]time.Duration{400 * time.Millisecond, 900 * time.Millisecond}, reapEvery: time.Second,
		duration: 8 * time.Second, clients: 4, networkedDB: true, probeMin: time.Second, probeMax: 2 * time.Second},
	// i: ring changes rolled across app servers under load.
	{name: "rolling", login: 2, put: 8, dput: 2, read: 5, burst: 2, renew: 1, dsubject: 2, destroy: 1, replay: 2,
		ring: 6, evict: 1, faultGap: [2]time.Duration{300 * time.Millisecond, 900 * time.Millisecond}, reapEvery: time.Second,
		duration: 8 * time.Second, clients: 6, probeMin: time.Second, probeMax: 2 * time.Second},
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

	users     []string
	clients   []*client
	crashed   []*core.Store // stores dropped without Close, closed at the end
	faultWG   sync.WaitGroup
	ringBusy  bool
	nodeBusy  []bool
	dbBusy    bool
	busyMu    sync.Mutex
	gate      sync.RWMutex // clients hold R for each operation; scripted faults pause them with W
	faultStat map[string]int
}

type client struct {
	id     int
	rng    *rand.Rand
	user   string
	token  string
	old    []string // tokens this client held before (destroyed or renewed)
	scsTok string   // the client's scs session ("" none)
	scsOld []string // scs sessions it held before
	seq    int
}

func (h *history) value(op *opRec, key string) string {
	return fmt.Sprintf("o%d%s", op.ID, key)
}

func newHistory(t testing.TB, seed uint64, b gormtest.Backend) *history {
	p := profileFor(seed)
	h := &history{t: t, seed: seed, p: p, stop: make(chan struct{}), faultStat: map[string]int{}}
	h.archiveRng = rand.New(rand.NewPCG(seed, 7))
	setup := rand.New(rand.NewPCG(seed, 1))
	h.c = newCluster(t, b, 3, p.noMemcached, setup, func() bool {
		h.archiveMu.Lock()
		defer h.archiveMu.Unlock()
		return h.archiveRng.Float64() >= h.p.archiveFail
	})
	h.nodeBusy = make([]bool, len(h.c.nodes))
	for i := 0; i < (p.clients+1)/2; i++ {
		h.users = append(h.users, fmt.Sprintf("user%d", i))
	}
	for i := 0; i < p.clients; i++ {
		h.clients = append(h.clients, &client{id: i, rng: rand.New(rand.NewPCG(seed, uint64(100+i))), user: h.users[i/2]})
	}
	return h
}

// run plays the history: clients and faults for p.duration, then every
// fault is healed, and after SyncInterval every client's tokens are read
// from every app server.
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
	// The reaper passes until the final reads, as in production, where
	// one passes every ReaperConfig.Interval (I1 assumes it).
	reapStop, reaped := make(chan struct{}), make(chan struct{})
	go func() { defer close(reaped); h.reaperLoop(rand.New(rand.NewPCG(h.seed, 3)), reapStop) }()
	stopReaper := sync.OnceFunc(func() { close(reapStop); <-reaped })
	defer stopReaper()
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
	// Everything is healed. Give background syncs one SyncInterval (and a
	// database its settling time), then read every token from every app
	// server; then memcached loses everything, and the database alone must
	// hold every session and every change up to SyncInterval before the
	// newest, and every durable change (I1, I4, I5).
	time.Sleep(syncInterval + dbSettle + 300*time.Millisecond)
	stopReaper()
	h.finalReads()
	if h.c.noMemcached {
		return
	}
	h.flushAll()
	h.finalReads()
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
	ctx := context.Background() // a request without a deadline: the library must bound its own waits
	op.Start = time.Now()
	s, err := srv.mgr.Load(ctx, token)
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

func (h *history) observe(s *core.Session, op *opRec) {
	op.Found = op.TokenIn != "" && !s.IsNew()
	if !op.Found {
		return
	}
	op.Subject = s.Subject()
	op.Seen = map[string]string{}
	for _, k := range s.Keys() {
		op.Seen[k] = s.GetString(k)
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
	op.Start = time.Now()
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
	w.Start = time.Now()
	ws, werr := sw.mgr.Load(ctx, cl.token)
	if werr == nil {
		h.observe(ws, w)
	}
	r.Start = time.Now()
	rs, rerr := sr.mgr.Load(ctx, cl.token)
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

func (h *history) reaperLoop(rng *rand.Rand, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(between(rng, h.p.reapEvery/2, h.p.reapEvery*3/2)):
		}
		srv := h.server(rng)
		srv.mu.RLock()
		ctx, cancel := context.WithTimeout(context.Background(), opBound)
		_, _ = srv.reaper.RunOnce(ctx)
		cancel()
		srv.mu.RUnlock()
	}
}

// faultLoop injects faults from the profile's weights until the history
// stops. Each fault runs in its own goroutine and heals itself.
func (h *history) faultLoop(rng *rand.Rand) {
	p := h.p
	for h.sleep(between(rng, p.faultGap[0], p.faultGap[1])) {
		dbw := [2]int{p.dbcut, p.dbhang}
		if h.c.dbProxy == nil {
			dbw = [2]int{}
		}
		deploy := p.outageDeploy
		if h.c.dbProxy == nil {
			deploy = 0
		}
		kind := pick(rng, p.kill, p.stop, p.flush, p.evict, p.pause, p.cut, p.hole, p.ring, dbw[0], dbw[1], p.crash, p.restart, deploy, p.logoutScript)
		dur := between(rng, 300*time.Millisecond, 1800*time.Millisecond)
		sub := rand.New(rand.NewPCG(h.seed, rng.Uint64()))
		switch kind {
		case 0, 1, 4, 5, 6:
			ni := h.pickNode(rng)
			if ni < 0 {
				continue
			}
			h.spawn(func() { h.nodeFault(kind, ni, dur) })
		case 2:
			n := h.c.nodes[rng.IntN(len(h.c.nodes))]
			if p.spareFaults {
				n = h.c.nodes[h.c.spare]
			}
			f := &faultRec{Kind: "flush", Target: n.name, Loss: true}
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
			h.busyMu.Lock()
			busy := h.ringBusy
			h.ringBusy = true
			h.busyMu.Unlock()
			if !busy {
				h.spawn(func() { h.ringChange(sub) })
			}
		case 8, 9:
			h.busyMu.Lock()
			busy := h.dbBusy
			h.dbBusy = true
			h.busyMu.Unlock()
			if !busy {
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
			h.busyMu.Lock()
			busy := h.dbBusy
			h.dbBusy = true
			h.busyMu.Unlock()
			if !busy {
				h.outageDeploy(rng)
			}
		case 13:
			h.busyMu.Lock()
			busy := h.ringBusy
			h.ringBusy = true
			h.busyMu.Unlock()
			if !busy {
				h.logoutScript(rng)
			}
		}
	}
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

func (h *history) nodeFault(kind, i int, dur time.Duration) {
	n := h.c.nodes[i]
	f := &faultRec{Kind: nodeFaultNames[kind], Target: n.name, Unavail: true, Loss: kind <= 1}
	f.Start = time.Now()
	switch kind {
	case 0:
		n.mc.Kill()
	case 1:
		n.mc.Stop()
	case 4:
		n.mc.Pause()
	case 5:
		n.proxy.Cut()
	case 6:
		if err := n.proxy.Blackhole(); err != nil {
			f.Note = err.Error()
		}
	}
	time.Sleep(dur) // heals even after the history stops: bounded
	switch kind {
	case 0, 1:
		n.mc.Restart()
	case 4:
		n.mc.Resume()
	case 5:
		if err := n.proxy.Restore(); err != nil {
			f.Note = err.Error()
		}
	case 6:
		if err := n.proxy.Unblackhole(); err != nil {
			f.Note = err.Error()
		}
	}
	f.End = time.Now()
	h.record(f)
	h.busyMu.Lock()
	h.nodeBusy[i] = false
	h.busyMu.Unlock()
}

// evict deletes the memcached entries of a few clients' sessions on every
// node, as memcached's LRU would.
func (h *history) evict(rng *rand.Rand) {
	f := &faultRec{Kind: "evict", Loss: true}
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

// ringChange adds the spare node to every app server's ring (or removes
// it, when it is in), one server at a time with a random gap, waits, and
// undoes the change the same way (or leaves it for the rest of the
// history).
func (h *history) ringChange(rng *rand.Rand) {
	defer func() {
		h.busyMu.Lock()
		h.ringBusy = false
		h.busyMu.Unlock()
	}()
	spare := h.c.nodes[h.c.spare]
	roll := func(add bool) {
		f := &faultRec{Kind: "ring-add", Target: spare.name, Loss: true}
		if !add {
			f.Kind = "ring-del"
		}
		f.Start = time.Now()
		order := rng.Perm(len(h.c.servers))
		var notes []string
		for j, si := range order {
			if j > 0 && !h.p.ringAtOnce {
				time.Sleep(between(rng, 100*time.Millisecond, 900*time.Millisecond))
			}
			s := h.c.servers[si]
			s.mu.RLock()
			var err error
			if add {
				err = s.store.AddServer(spare.proxy.Addr, 1)
			} else {
				err = s.store.RemoveServer(spare.proxy.Addr)
			}
			s.mu.RUnlock()
			h.busyMu.Lock()
			s.nodes[spare.proxy.Addr] = add
			h.busyMu.Unlock()
			notes = append(notes, fmt.Sprintf("s%d@%s", si, fmtT(h.epoch, time.Now())))
			if err != nil {
				notes = append(notes, err.Error())
			}
		}
		f.End = time.Now()
		f.Note = strings.Join(notes, " ")
		h.record(f)
	}
	h.busyMu.Lock()
	in := h.c.servers[0].nodes[spare.proxy.Addr]
	h.busyMu.Unlock()
	roll(!in)
	if time.Sleep(between(rng, 500*time.Millisecond, 2500*time.Millisecond)); rng.IntN(3) > 0 {
		roll(in)
	}
}

func (h *history) dbFault(hang bool, dur time.Duration) {
	f := &faultRec{Kind: "db-refuse", Target: "db", DB: true}
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
	h.busyMu.Lock()
	h.dbBusy = false
	h.busyMu.Unlock()
}

// logoutScript is a scripted sequence: the spare node joins every app
// server's ring at once; moments later a user logs out everywhere, through
// a random app server; then the spare node loses its data (the tombstones
// of the keys that moved to it); after a while the node leaves the ring
// again. The user's tokens must stay dead (I2) — in particular, a miss on
// the new node must not move the previous owner's live copy back.
func (h *history) logoutScript(rng *rand.Rand) {
	defer func() {
		h.busyMu.Lock()
		h.ringBusy = false
		h.busyMu.Unlock()
	}()
	spare := h.c.nodes[h.c.spare]
	setRing := func(add bool) {
		f := &faultRec{Kind: "ring-add", Target: spare.name, Loss: true, Note: "at once"}
		if !add {
			f.Kind = "ring-del"
		}
		f.Start = time.Now()
		for _, s := range h.c.servers {
			s.mu.RLock()
			var err error
			if add {
				err = s.store.AddServer(spare.proxy.Addr, 1)
			} else {
				err = s.store.RemoveServer(spare.proxy.Addr)
			}
			s.mu.RUnlock()
			h.busyMu.Lock()
			s.nodes[spare.proxy.Addr] = add
			h.busyMu.Unlock()
			if err != nil {
				f.Note += " " + err.Error()
			}
		}
		f.End = time.Now()
		h.record(f)
	}
	h.busyMu.Lock()
	in := h.c.servers[0].nodes[spare.proxy.Addr]
	h.busyMu.Unlock()
	if in {
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
	op.Start = time.Now()
	_, err := srv.mgr.DestroySubject(context.Background(), op.DSubject)
	op.End = time.Now()
	srv.mu.RUnlock()
	h.setErr(op, err)
	h.rec.done(op)
	time.Sleep(between(rng, 20*time.Millisecond, 200*time.Millisecond))
	f := &faultRec{Kind: "flush", Target: spare.name, Loss: true}
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
// then the clients go on. A durable change acknowledged before the deploy
// must have reached the database by then, or Close must have said it could
// not (I5).
func (h *history) outageDeploy(rng *rand.Rand) {
	f := &faultRec{Kind: "db-refuse", Target: "db", DB: true, Note: "deploy"}
	f.Start = time.Now()
	h.c.dbProxy.Cut()
	time.Sleep(between(rng, 400*time.Millisecond, 900*time.Millisecond))
	h.gate.Lock()
	for _, s := range h.c.servers {
		s.mu.Lock()
		h.replaceServer(s, false)
		s.mu.Unlock()
	}
	if err := h.c.dbProxy.Restore(); err != nil {
		f.Note += " " + err.Error()
	}
	f.End = time.Now()
	h.record(f)
	h.busyMu.Lock()
	h.dbBusy = false
	h.busyMu.Unlock()
	time.Sleep(syncInterval + dbSettle + 200*time.Millisecond)
	h.flushAll()
	h.gate.Unlock()
}

func (h *history) flushAll() {
	f := &faultRec{Kind: "flush-all", Target: "all", Loss: true}
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
// queued syncs die with it) or restarts it gracefully (Close, whose error
// is recorded). Either way a new Store takes its place with the same ring.
func (h *history) appFault(s *server, crash bool) {
	if !s.mu.TryLock() {
		return // a request is in flight there; try another time
	}
	defer s.mu.Unlock()
	h.replaceServer(s, crash)
}

// replaceServer crashes or closes s's Store and starts a new one; s.mu is
// held.
func (h *history) replaceServer(s *server, crash bool) {
	f := &faultRec{Kind: "restart", Target: fmt.Sprintf("s%d", s.id)}
	f.Start = time.Now()
	if crash {
		f.Kind, f.Crash = "crash", true
		s.dead.Store(true)
		h.crashed = append(h.crashed, s.store)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := s.store.Close(ctx); err != nil {
			f.Note = "close: " + err.Error()
		}
		cancel()
	}
	h.busyMu.Lock()
	var addrs []string
	for _, n := range h.c.nodes {
		if s.nodes[n.proxy.Addr] {
			addrs = append(addrs, n.proxy.Addr)
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
		op.Start = time.Now()
		err := srv.scs.Commit(tok, []byte(op.Writes["s"]), time.Now().Add(idleTimeout))
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
		if h.sleep(between(cl.rng, idleTimeout-300*time.Millisecond, idleTimeout+syncInterval+time.Second)) {
			h.scsRequest(cl, srv, "scs-probe", tok)
		}
	case 3:
		op := h.rec.newOp(cl.id, srv.id, "scs-destroy", tok)
		srv.mu.RLock()
		op.Start = time.Now()
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
	op.Start = time.Now()
	b, found, err := srv.scs.Find(tok)
	if err == nil && found {
		op.Found, op.Seen = true, map[string]string{"s": string(b)}
		if kind == "scs-write" {
			op.Writes = map[string]string{"s": h.value(op, "s")}
			err = srv.scs.Commit(tok, []byte(op.Writes["s"]), time.Now().Add(idleTimeout))
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
	w.Start = time.Now()
	b, found, werr := sw.scs.Find(tok)
	l.Start = time.Now()
	lerr := sl.scs.Delete(tok)
	l.End = time.Now()
	if werr == nil && found {
		w.Found, w.Seen = true, map[string]string{"s": string(b)}
		w.Writes = map[string]string{"s": h.value(w, "s")}
		werr = sw.scs.Commit(tok, []byte(w.Writes["s"]), time.Now().Add(idleTimeout))
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
