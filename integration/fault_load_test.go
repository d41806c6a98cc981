package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The load driver: virtual users, each with its own cookie jar, log in and
// then click through the app (two clicks, one cart read, over and over) with
// a short think time and now and then a longer pause, through the load
// balancer in front of the app servers. Every response is checked against
// what the user knows it wrote, and counted in the current phase.
const (
	faultUsers     = 40
	faultThinkMin  = 50 * time.Millisecond
	faultThinkMax  = 150 * time.Millisecond
	faultPauseProb = 0.04 // chance of a longer pause after a request
	faultPauseMin  = 400 * time.Millisecond
	faultPauseMax  = 900 * time.Millisecond
	// faultSyncMargin is how much longer than SyncInterval plus the
	// writer's tick the background writer is given to store a write (the
	// time a pass takes), before its loss counts as a loss of a synced
	// update.
	faultSyncMargin = 300 * time.Millisecond
	// faultSyncBound is how far a row may lag the copy in memcached: a
	// cache loss costs at most the writes acknowledged within it
	// (docs/consistency.md, I6).
	faultSyncBound = faultSyncInterval + faultSyncInterval/8 + faultSyncMargin
	faultLogLimit  = 5 // detailed log lines per phase and kind
)

// phaseStats is what the users saw during one phase of a scenario.
type phaseStats struct {
	scenario, name string
	start, end     time.Time
	before, after  tierCounts
	// oldMemory marks a phase in which a node may serve copies older than
	// writes made around it (a node back from a partition with its
	// memory, keys back on their previous owners): until such a copy's
	// next sync its reads may be stale (docs/consistency.md, rule 3), so
	// lost updates and counters that come back are reported, not failed.
	oldMemory bool

	inflight atomic.Int32 // requests of this phase not finished

	mu         sync.Mutex
	requests   int
	perUser    []int // requests per user id
	logouts    int   // a logged-in user's session came back new
	keyLost    int   // a logged-in user's session came back without its durable "user" key
	wrongUser  int   // a session answered with another user's id
	lostOld    int   // counter older than an update synced SyncInterval ago
	lostRecent int   // counter older than the last acknowledged update, but not lostOld
	cameBack   int   // of those, the newer value came back before the user wrote again
	phantom    int   // counter newer than anything the user may have written
	status5xx  int
	status503  int
	bothDown   int // 503s of requests that neither tier could serve (allowed: I7)
	netErrors  int // transport errors (client timeout, connection reset)
	latencies  []time.Duration
	latUser    []int // latUser[i] is the user of latencies[i]
	logged     map[string]int
}

func (p *phaseStats) logf(t *testing.T, kind, format string, args ...any) {
	if p.logged[kind] < faultLogLimit {
		t.Logf("%s / %s: %s: %s", p.scenario, p.name, kind, fmt.Sprintf(format, args...))
	}
	p.logged[kind]++
}

// delta is the app servers' counters over the phase.
func (p *phaseStats) delta() tierCounts { return p.after.sub(p.before) }

func (p *phaseStats) percentile(q float64) time.Duration {
	return percentile(slices.Clone(p.latencies), q)
}

// percentileOf is the latency percentile of the requests of some users
// (in: whether a user id counts).
func (p *phaseStats) percentileOf(in func(user int) bool, q float64) time.Duration {
	var s []time.Duration
	for i, d := range p.latencies {
		if in(p.latUser[i]) {
			s = append(s, d)
		}
	}
	return percentile(s, q)
}

func percentile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// write is one acknowledged value of a user's counter.
type write struct {
	value      int
	start, ack time.Time // request sent, response received
}

// vuser is a virtual user: a browser with a cookie jar.
type vuser struct {
	id       int
	name     string
	client   *http.Client
	jar      *cookiejar.Jar
	loggedIn bool
	step     int
	rng      *rand.Rand
	// hist lists the counter values this user got acknowledged, oldest
	// first, since login or since the counter last went back.
	hist []write
	// unsure counts clicks whose outcome the user does not know (5xx,
	// transport error) since its last acknowledged value.
	unsure int
	// before is hist as it was when the counter last went back, until the
	// user writes again: if the newer value comes back meanwhile, the lower
	// one was only a stale read (the database answering while memcached
	// was unreachable), and nothing was lost.
	before []write
	// lastGood is when the user's last request began whose answer it
	// could check (a login, or a counter read back): whatever memcached
	// lost, it lost after that.
	lastGood time.Time
	token    atomic.Value // string: the session cookie, for node placement
}

// loadDriver runs the virtual users against env until stop.
type loadDriver struct {
	env   *faultEnv
	users []*vuser
	base  *url.URL
	// switching is held to switch phases: a request reads the phase and
	// joins its inflight count under it.
	switching sync.RWMutex
	phase     atomic.Pointer[phaseStats]
	done      chan struct{}
	wg        sync.WaitGroup
	// phases lists every phase begun, in order.
	phases []*phaseStats
	// stopped is set by stop.
	stopped bool
}

// startLoad logs every user in (phase "login") and starts their clicking.
func (env *faultEnv) startLoad() *loadDriver {
	t := env.t
	t.Helper()
	base, err := url.Parse(env.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 2 * faultUsers, MaxIdleConnsPerHost: 2 * faultUsers, IdleConnTimeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	d := &loadDriver{env: env, base: base, done: make(chan struct{})}
	for i := 0; i < faultUsers; i++ {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		d.users = append(d.users, &vuser{
			id:     i,
			name:   fmt.Sprintf("user%02d", i),
			client: &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second},
			jar:    jar,
			rng:    rand.New(rand.NewPCG(uint64(i), 42)),
		})
	}
	login := d.begin("login")
	var wg sync.WaitGroup
	for _, u := range d.users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; !u.loggedIn && attempt < 5; attempt++ {
				d.login(u)
			}
		}()
	}
	wg.Wait()
	for _, u := range d.users {
		if !u.loggedIn {
			t.Fatalf("%s could not log in before the faults: %+v", u.name, login)
		}
	}
	for _, u := range d.users {
		d.wg.Add(1)
		go d.run(u)
	}
	t.Cleanup(d.stop)
	d.hold(500 * time.Millisecond) // warm up (connections, pools) before the baseline
	return d
}

// begin ends the current phase and starts a new one named name; every
// request sent from now on counts in it. It returns once the requests of
// the previous phase have finished, so that the fault the caller injects
// next meets only requests of the new phase.
func (d *loadDriver) begin(name string) *phaseStats { return d.startPhase(name, false) }

// beginOldMemory is begin for a phase in which a node may serve copies
// older than writes made around it (see phaseStats.oldMemory).
func (d *loadDriver) beginOldMemory(name string) *phaseStats { return d.startPhase(name, true) }

func (d *loadDriver) startPhase(name string, oldMemory bool) *phaseStats {
	p := &phaseStats{scenario: d.env.scenario, name: name, oldMemory: oldMemory,
		perUser: make([]int, faultUsers), logged: map[string]int{}}
	d.switching.Lock()
	prev := d.phase.Swap(p)
	d.switching.Unlock()
	d.env.curPhase.Store(p)
	if prev != nil {
		for deadline := time.Now().Add(15 * time.Second); prev.inflight.Load() > 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	now, c := time.Now(), d.env.counts()
	if prev != nil {
		prev.end, prev.after = now, c
	}
	p.start, p.before = now, c
	d.phases = append(d.phases, p)
	return p
}

// hold keeps the current phase running for dur.
func (d *loadDriver) hold(dur time.Duration) { time.Sleep(dur) }

// stop stops the users, closes the last phase and adds every phase (but
// the login) to the report. Calls after the first do nothing.
func (d *loadDriver) stop() {
	if d.stopped {
		return
	}
	d.stopped = true
	close(d.done)
	d.wg.Wait()
	if p := d.phase.Load(); p != nil {
		p.end, p.after = time.Now(), d.env.counts()
	}
	for _, p := range d.phases[1:] {
		d.env.report.add(d.env.backend.name, p)
	}
	d.env.logErrors()
}

func (d *loadDriver) run(u *vuser) {
	defer d.wg.Done()
	for {
		select {
		case <-d.done:
			return
		default:
		}
		switch {
		case !u.loggedIn:
			d.login(u)
		case u.step%3 == 2:
			d.cart(u)
			u.step++
		default:
			d.click(u)
			u.step++
		}
		think := faultThinkMin + time.Duration(u.rng.Int64N(int64(faultThinkMax-faultThinkMin)))
		if u.rng.Float64() < faultPauseProb {
			think = faultPauseMin + time.Duration(u.rng.Int64N(int64(faultPauseMax-faultPauseMin)))
		}
		select {
		case <-d.done:
			return
		case <-time.After(think):
		}
	}
}

// response is one request's outcome.
type response struct {
	status     int
	body       string
	err        error
	start, end time.Time
	phase      *phaseStats
}

func (d *loadDriver) get(u *vuser, path string) response {
	d.switching.RLock()
	p := d.phase.Load()
	p.inflight.Add(1)
	d.switching.RUnlock()
	defer p.inflight.Add(-1)
	r := response{start: time.Now(), phase: p}
	resp, err := u.client.Get(d.env.srv.URL + path)
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.status, r.body, err = resp.StatusCode, string(b), rerr
	}
	r.end, r.err = time.Now(), err
	p.mu.Lock()
	p.requests++
	p.perUser[u.id]++
	p.latencies = append(p.latencies, r.end.Sub(r.start))
	p.latUser = append(p.latUser, u.id)
	switch {
	case err != nil:
		p.netErrors++
		p.logf(d.env.t, "transport error", "%s %s: %v", u.name, path, err)
	case r.status >= 500:
		p.status5xx++
		if r.status == http.StatusServiceUnavailable {
			p.status503++
		}
		p.logf(d.env.t, fmt.Sprintf("HTTP %d", r.status), "%s %s: %q", u.name, path, r.body)
	}
	p.mu.Unlock()
	if c := u.sessionCookie(d.base); c != "" {
		u.token.Store(c)
	}
	return r
}

func (u *vuser) sessionCookie(base *url.URL) string {
	for _, c := range u.jar.Cookies(base) {
		if c.Name == "session" {
			return c.Value
		}
	}
	return ""
}

// login visits anonymously, then logs in (which renews the token).
func (d *loadDriver) login(u *vuser) {
	if r := d.get(u, "/visit"); r.err != nil || r.status != http.StatusOK {
		return
	}
	r := d.get(u, "/login?user="+u.name)
	if r.err != nil || r.status != http.StatusOK {
		return
	}
	u.loggedIn = true
	u.hist, u.before = []write{{value: 0, start: r.start, ack: r.end}}, nil
	u.unsure, u.lastGood = 0, r.start
}

func (d *loadDriver) click(u *vuser) {
	r := d.get(u, "/click")
	n, ok := d.answer(u, r, "/click")
	if !ok {
		if r.err != nil || r.status >= 500 {
			u.unsure++
		}
		return
	}
	d.observe(u, r, n-1)
	u.hist = append(u.hist, write{value: n, start: r.start, ack: r.end})
	u.before = nil // from now on an older copy coming back loses this write
}

func (d *loadDriver) cart(u *vuser) {
	r := d.get(u, "/cart")
	if n, ok := d.answer(u, r, "/cart"); ok {
		d.observe(u, r, n)
	}
}

// answer parses a "user clicks" answer, counting logouts and foreign
// sessions.
func (d *loadDriver) answer(u *vuser, r response, path string) (int, bool) {
	if r.err != nil || r.status >= 500 {
		return 0, false
	}
	p, t := r.phase, d.env.t
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.status == http.StatusUnauthorized {
		if r.body == "existing" {
			p.keyLost++
			p.logf(t, "durable key lost", "%s %s: session without its user id", u.name, path)
		} else {
			p.logouts++
			p.logf(t, "logout", "%s %s: logged out (new session)", u.name, path)
		}
		u.loggedIn = false
		return 0, false
	}
	user, num, _ := strings.Cut(r.body, " ")
	n, err := strconv.Atoi(num)
	if r.status != http.StatusOK || err != nil {
		p.phantom++
		p.logf(t, "bad answer", "%s %s: HTTP %d %q", u.name, path, r.status, r.body)
		return 0, false
	}
	if user != u.name {
		p.wrongUser++
		p.logf(t, "wrong user", "%s %s: got %s's session", u.name, path, user)
		u.loggedIn = false
		return 0, false
	}
	return n, true
}

// observe checks the counter value the store returned at r against what the
// user wrote, and records lost updates.
//
// A lost update counts as "older than SyncInterval" (lostOld) when it was
// acknowledged faultSyncBound before the user's last checked request
// began: memcached held it then, and the background writer brings every
// row up to date within SyncInterval (plus its tick), so the database
// holds it whatever memcached lost since.
func (d *loadDriver) observe(u *vuser, r response, got int) {
	p, t := r.phase, d.env.t
	last := u.hist[len(u.hist)-1]
	if got > last.value && u.before != nil && got <= u.before[len(u.before)-1].value+u.unsure {
		// The lower value read since the last regression was stale, and
		// the user wrote nothing on it: check against the history before.
		p.mu.Lock()
		p.cameBack++
		p.mu.Unlock()
		u.hist, u.before = u.before, nil
		d.observe(u, r, got)
		return
	}
	switch {
	case got == last.value:
	case got > last.value && got <= last.value+u.unsure:
		// A click whose answer was lost did reach the store.
		u.hist = append(u.hist, write{value: got, start: r.start, ack: r.start})
	case got > last.value:
		p.mu.Lock()
		p.phantom++
		p.logf(t, "phantom", "%s: counter %d, but the user wrote at most %d", u.name, got, last.value+u.unsure)
		p.mu.Unlock()
		u.hist, u.before = []write{{value: got, start: r.start, ack: r.start}}, nil
	default:
		floor, floorAt := u.syncedFloor()
		p.mu.Lock()
		if got < floor {
			p.lostOld++
			p.logf(t, "lost update older than SyncInterval", "%s: read %d at %s, but %d was acknowledged at %s, %v before the user's last checked request (%s); last written %d",
				u.name, got, r.start.Format("15:04:05.000"), floor, floorAt.Format("15:04:05.000"), u.lastGood.Sub(floorAt).Round(time.Millisecond),
				u.lastGood.Format("15:04:05.000"), last.value)
		} else {
			p.lostRecent++
			p.logf(t, "lost recent update", "%s: read %d, last written %d", u.name, got, last.value)
		}
		p.mu.Unlock()
		// The counter goes on from what the store holds.
		if u.before == nil {
			u.before = u.hist
		}
		u.hist = []write{{value: got, start: r.start, ack: r.start}}
	}
	u.unsure, u.lastGood = 0, r.start
}

// syncedFloor returns the highest value the database must hold, and when
// it was acknowledged; -1 when none: the newest write acknowledged
// faultSyncBound before the user's last checked request.
func (u *vuser) syncedFloor() (int, time.Time) {
	limit := u.lastGood.Add(-faultSyncBound)
	floor, at := -1, time.Time{}
	for _, w := range u.hist {
		if !w.ack.After(limit) {
			floor, at = w.value, w.ack
		}
	}
	return floor, at
}

// usersOn returns the users whose session lives on node i of nodes.
func (d *loadDriver) usersOn(nodes []*faultNode, i int) []int {
	addrs := make([]string, len(nodes))
	for j, n := range nodes {
		addrs[j] = n.Addr()
	}
	p := newPlacement(d.env.t, addrs...)
	var ids []int
	for _, u := range d.users {
		tok, _ := u.token.Load().(string)
		if tok != "" && p.owner(tok) == i {
			ids = append(ids, u.id)
		}
	}
	return ids
}

// expectClean fails the test for every phase with a logout, a lost durable
// key, a foreign session, a lost update older than SyncInterval, a 5xx or a
// transport error.
func (d *loadDriver) expectClean(phases ...*phaseStats) {
	t := d.env.t
	t.Helper()
	if len(phases) == 0 {
		phases = d.phases[1:]
	}
	for _, p := range phases {
		status5xx := p.status5xx - min(p.bothDown, p.status503, int(p.delta().CacheErrors))
		lostOld, phantom := p.lostOld, p.phantom
		if p.oldMemory {
			if lostOld+phantom > 0 {
				t.Logf("%s: %d lost updates older than SyncInterval and %d counters that came back, read from copies a node kept across the fault (allowed until each copy's next sync)",
					p.name, lostOld, phantom)
			}
			lostOld, phantom = 0, 0
		}
		if p.logouts+p.keyLost+p.wrongUser+lostOld+status5xx+p.netErrors > 0 {
			t.Errorf("%s: %d logouts, %d sessions without their durable key, %d foreign sessions, %d lost updates older than SyncInterval, %d 5xx (%d more with both tiers down), %d transport errors; want none",
				p.name, p.logouts, p.keyLost, p.wrongUser, lostOld, status5xx, p.status5xx-status5xx, p.netErrors)
		} else if p.bothDown > 0 {
			t.Logf("%s: %d 503s of requests neither tier could serve (memcached timed out as well): allowed by I7", p.name, p.bothDown)
		}
		if phantom > 0 {
			t.Errorf("%s: %d counters above anything the user wrote since its last lost update: an older copy of the session overrode newer acknowledged writes",
				p.name, phantom)
		}
		if p.end.Sub(p.start) >= time.Second && p.requests < 50 {
			t.Errorf("%s: only %d requests: the load did not run", p.name, p.requests)
		}
	}
}
