package history

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Slack of the checker's timing judgements. Operation times are taken in
// the test process around each call, so the moment a request acted lies
// between its Start and End; the slacks cover scheduling delays between
// those stamps and the library's own clock reads (2 shared cores). Clock
// offsets are not slack: each request carries its app server's.
const (
	slackTight = 250 * time.Millisecond // expiry judgements (I1, I2, I3)
	slackLag   = 400 * time.Millisecond // when a change reaches the row (I1, I4, I5)
	dbSettle   = time.Second            // a database fault's effects outlast its healing by this

	// breakerRecovery is how long after a node answers again an app
	// server may still have its breaker open: the cooldown, then a dial
	// and a request of the probe.
	breakerRecovery = breakerCool + 2*mcTimeout + slackTight

	// slackClock is the slack of I3's judgements: a request's clock
	// reading lies after its Start and an activity's before its End, both
	// on the app server's own clock, so only the envelope's rounding to
	// the millisecond is left.
	slackClock = 5 * time.Millisecond
)

// never is a time after every history.
var never = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)

// violation is one broken invariant with the evidence.
type violation struct {
	Seed      uint64
	Backend   string
	Profile   string
	Invariant string
	// Known names the open core bug (knownBugs) the violation matches; it
	// is then logged, not failed.
	Known string
	Msg   string
	Trace []string
}

func (v violation) String() string {
	known := ""
	if v.Known != "" {
		known = " [known: " + v.Known + "]"
	}
	return fmt.Sprintf("seed %d (%s, %s): %s%s: %s\n    %s", v.Seed, v.Profile, v.Backend, v.Invariant, known, v.Msg,
		strings.Join(v.Trace, "\n    "))
}

// lineage is one session across its token renewals: values carry over,
// the deadline and the idle timeout stay.
type lineage struct {
	id   int
	scs  bool   // an scs session: Commit sets its expiry, no renewals
	root *opRec // the request that created the session
	idle time.Duration
	life time.Duration
}

// tokenInfo is what the model knows of one token.
type tokenInfo struct {
	tok     string
	lin     *lineage
	parent  *tokenInfo // the token it was renewed from
	created *opRec     // the request whose response carried it first
	subject string
	ops     []*opRec // the requests that found it, and created, by Start
	writes  []*opRec // the acknowledged requests that changed its values
	// destroyers are the requests that may have destroyed it, acked the
	// earliest acknowledged one.
	destroyers []*opRec
	acked      *opRec
	// resurrected: served from its row after memcached lost the logout
	// that the database had not taken (I2's double fault): a live session
	// again, whose data is not judged.
	resurrected bool
	// tainted: served when it must not have been, or found missing when
	// it must have been served; later judgements would report
	// consequences of that first violation.
	tainted bool
}

// model is the reference model built from a history.
type model struct {
	h       *history
	ops     []*opRec // by Start
	faults  []*faultRec
	tokens  map[string]*tokenInfo
	lins    []*lineage
	writes  map[string]*opRec // value -> the request that wrote it
	out     []violation
	noCache bool // the app servers run without memcached
	// excused counts the judgements that an exception of
	// docs/consistency.md decided, by exception, and judged the requests
	// judged, by kind of judgement: evidence that the histories reach them.
	excused, judged map[string]int

	maxSync, maxTick time.Duration // over every configuration the history ran
	retry            time.Duration // the writer's wait after a failed batch: retryDelay, or maxSync if shorter
	minSkew, maxSkew time.Duration // over every app server
	spread           time.Duration // maxSkew - minSkew
	staleWindow      time.Duration // how long a copy left stale may be served after its first use
}

func check(h *history) []violation { return newModel(h).out }

func newModel(h *history) *model {
	h.rec.close()
	m := &model{h: h, ops: append([]*opRec(nil), h.rec.ops...), faults: h.rec.faults,
		tokens: map[string]*tokenInfo{}, writes: map[string]*opRec{}, noCache: h.p.noMemcached,
		excused: map[string]int{}, judged: map[string]int{}}
	sort.SliceStable(m.ops, func(i, j int) bool { return m.ops[i].Start.Before(m.ops[j].Start) })
	m.maxSync = syncInterval
	first := true
	for _, op := range m.ops {
		m.maxSync = max(m.maxSync, op.Sync)
		if first || op.Skew < m.minSkew {
			m.minSkew = op.Skew
		}
		if first || op.Skew > m.maxSkew {
			m.maxSkew = op.Skew
		}
		first = false
	}
	m.maxTick, m.retry = writerTick(m.maxSync), min(retryDelay, m.maxSync)
	m.spread = m.maxSkew - m.minSkew
	m.staleWindow = m.maxSync + touchInterval + m.maxTick + m.spread + slackTight
	m.build()
	for _, op := range m.ops {
		m.judge(op)
	}
	return m
}

// build assigns tokens to lineages (in order of completion, which is when
// a token becomes known) and collects each token's requests, changes and
// destroyers.
func (m *model) build() {
	byEnd := append([]*opRec(nil), m.ops...)
	sort.SliceStable(byEnd, func(i, j int) bool { return byEnd[i].End.Before(byEnd[j].End) })
	for _, op := range byEnd {
		for _, v := range op.Writes {
			m.writes[v] = op
		}
		if op.Kind == "replay" || op.Kind == "final" || op.Kind == "scs-final" || !op.ok() || op.TokenOut == "" || op.TokenOut == op.TokenIn {
			continue
		}
		// A new token: a new session, or a renewal of a found one.
		ti := &tokenInfo{tok: op.TokenOut, created: op}
		if in := m.tokens[op.TokenIn]; op.Found && in != nil {
			ti.lin, ti.subject, ti.parent = in.lin, in.subject, in
		} else {
			l := &lineage{id: len(m.lins), root: op, scs: strings.HasPrefix(op.Kind, "scs-"), idle: op.CfgIdle, life: lifetime}
			if op.Remember {
				l.idle, l.life = rememberIdle, rememberLifetime
			}
			ti.lin = l
			m.lins = append(m.lins, l)
		}
		if op.SetSubject != "" {
			ti.subject = op.SetSubject
		}
		m.tokens[op.TokenOut] = ti
	}
	for _, op := range m.ops {
		if ti := m.tokens[op.TokenIn]; ti != nil && op.Found {
			ti.ops = append(ti.ops, op)
			if op.ok() && op.wrote() && op.TokenOut == op.TokenIn {
				ti.writes = append(ti.writes, op)
			}
		}
		if ti := m.tokens[op.TokenOut]; ti != nil && ti.created == op {
			ti.ops = append(ti.ops, op)
			if op.wrote() {
				ti.writes = append(ti.writes, op)
			}
		}
	}
	for _, op := range m.ops {
		ti := m.tokens[op.TokenIn]
		switch {
		case ti == nil:
		case op.Kind == "destroy" && (op.Destroy || !op.ok()):
			m.destroyer(ti, op, op.ok())
		case op.Kind == "scs-destroy" && (op.Destroy || !op.ok()):
			// A Delete destroys a session its app server still holds
			// alive; one that may have expired there (another may still
			// serve it, within scsstore's overshoot) destroys nothing.
			m.destroyer(ti, op, op.ok() && op.End.Add(op.Skew).Before(ti.scsExpiry(op.Start).Add(-slackTight)))
		case op.Renew && op.Found:
			// RenewToken destroys the old token last, and a failure there
			// (both tiers unavailable) does not fail the request.
			m.destroyer(ti, op, op.ok() && op.TokenOut != op.TokenIn &&
				!(m.dbDown(op.Start, op.End) && m.unreachable(op.Server, op.Start, op.End)))
		}
		if op.DSubject == "" {
			continue
		}
		for _, ti := range m.tokens {
			if ti.subject != op.DSubject || !ti.created.Start.Before(op.End) {
				continue
			}
			// DestroySubject finds the sessions whose rows carry the
			// subject: those acknowledged before it began, once their rows
			// were written, and not yet reaped.
			sure := op.ok() && ti.created.End.Before(op.Start) && m.held(ti.created, ti).Before(op.Start) &&
				!m.mayHaveExpired(ti, op.Start)
			m.destroyer(ti, op, sure)
		}
	}
}

// mayHaveExpired reports whether ti's session may have idled out or
// passed its deadline by t on the fastest app server's clock, whose reaper
// may then have deleted its row (seed 131551: DestroySubject did not find
// it, and a slower clock still served the copy, within the skew).
func (m *model) mayHaveExpired(ti *tokenInfo, t time.Time) bool {
	lin := ti.lin
	if lin.scs || !lin.root.Start.Add(lin.root.Skew+lin.life-m.maxSkew).After(t) {
		return !lin.scs
	}
	var active time.Time // the latest activity recorded, on its recorder's clock, at the earliest
	for _, o := range ti.ops {
		if !o.ok() || !o.Start.Before(t) {
			continue
		}
		a := o.Start.Add(o.Skew)
		if !o.wrote() && o != ti.created {
			a = a.Add(-touchInterval) // a read records activity once per TouchInterval
		}
		if a.After(active) {
			active = a
		}
	}
	return !active.IsZero() && !active.Add(lin.idle-m.maxSkew).After(t)
}

func (m *model) destroyer(ti *tokenInfo, op *opRec, acked bool) {
	ti.destroyers = append(ti.destroyers, op)
	if acked && (ti.acked == nil || op.End.Before(ti.acked.End)) {
		ti.acked = op
	}
}

// scsExpiry returns the latest expiry that an scs Commit acknowledged
// before t gave ti.
func (ti *tokenInfo) scsExpiry(t time.Time) time.Time {
	var exp time.Time
	for _, o := range ti.ops {
		if o.ok() && o.End.Before(t) && o.ScsExpiry.After(exp) {
			exp = o.ScsExpiry
		}
	}
	return exp
}

// maybeDestroyed reports whether a request that may have destroyed ti
// started before t.
func (ti *tokenInfo) maybeDestroyed(t time.Time) bool {
	for _, d := range ti.destroyers {
		if d.Start.Before(t) {
			return true
		}
	}
	return false
}

func (m *model) report(inv string, op *opRec, ti *tokenInfo, format string, args ...any) *violation {
	v := violation{Seed: m.h.seed, Backend: m.h.c.backend, Profile: m.h.p.name, Invariant: inv,
		Msg: fmt.Sprintf(format, args...)}
	var tr []*opRec
	for t := ti; t != nil; t = t.parent {
		for _, o := range t.ops {
			if !o.Start.After(op.End) && !slices.Contains(tr, o) {
				tr = append(tr, o)
			}
		}
		for _, d := range t.destroyers {
			if !slices.Contains(tr, d) {
				tr = append(tr, d)
			}
		}
	}
	if !slices.Contains(tr, op) {
		tr = append(tr, op)
	}
	sort.SliceStable(tr, func(i, j int) bool { return tr[i].Start.Before(tr[j].Start) })
	if len(tr) > 16 {
		tr = tr[len(tr)-16:]
	}
	for _, o := range tr {
		v.Trace = append(v.Trace, o.format(m.h.epoch))
	}
	from := op.Start.Add(-2 * idleTimeout)
	if ti != nil {
		from = ti.lin.root.Start
	}
	for _, f := range m.faults {
		if f.End.After(from) && f.Start.Before(op.End) {
			v.Trace = append(v.Trace, f.format(m.h.epoch))
		}
	}
	m.out = append(m.out, v)
	return &m.out[len(m.out)-1]
}

// Fault predicates over a window [from, to].

func (m *model) any(from, to time.Time, pred func(*faultRec) bool) bool {
	return m.first(from, to, pred) != nil
}

func (m *model) first(from, to time.Time, pred func(*faultRec) bool) *faultRec {
	for _, f := range m.faults {
		if pred(f) && !f.End.Before(from) && !f.Start.After(to) {
			return f
		}
	}
	return nil
}

// dbWindow returns the end of the database trouble overlapping [from, to]
// (the fault's end plus its settling time), or the zero time.
func (m *model) dbWindow(from, to time.Time) time.Time {
	var end time.Time
	for _, f := range m.faults {
		if f.DB && !f.End.Add(dbSettle).Before(from) && !f.Start.After(to) && f.End.Add(dbSettle).After(end) {
			end = f.End.Add(dbSettle)
		}
	}
	return end
}

func (m *model) dbDown(from, to time.Time) bool { return !m.dbWindow(from, to).IsZero() }

// unreachable reports whether some node may have been unreachable to app
// server srv within [from, to]: a fault on it, or its breaker's recovery
// after one.
func (m *model) unreachable(srv int, from, to time.Time) bool {
	return m.any(from.Add(-breakerRecovery), to, func(f *faultRec) bool { return f.Unavail && f.affects(srv) })
}

// cacheThreat returns the first fault that started before by and overlaps
// [from, to] after which a request may not see memcached's copy of a
// session: a loss, a node unreachable (to any app server: it reads and
// writes the row), its breakers' recovery, or a ring change.
func (m *model) cacheThreat(from, to, by time.Time) *faultRec {
	return m.first(from.Add(-breakerRecovery), to, func(f *faultRec) bool {
		return (f.Loss || f.Unavail || f.Ring) && f.Start.Before(by)
	})
}

// queueLost returns when app server srv lost its writer's queue within
// [from, to] — a crash, or a restart while the database refused (Close
// cannot write what it holds then) — or the zero time.
func (m *model) queueLost(srv int, from, to time.Time) time.Time {
	f := m.first(from, to, func(f *faultRec) bool {
		return f.Server == srv && (f.Crash || m.dbDown(f.Start, f.End) || strings.Contains(f.Note, "close:"))
	})
	if f == nil {
		return time.Time{}
	}
	return f.Start
}

// held returns when o's state is in its token's row at the latest, as far
// as the model can tell: at once for a new session, a renewal or a durable
// change while the database answered, and without memcached; otherwise
// when its sync is due (SyncInterval after o, plus the writer's tick and
// the clocks' spread). A database fault defers it to the writer's retry
// after the database answers again, or to the first request after that
// (which schedules the sync anew); an app server that loses its queue
// defers it to the next request.
func (m *model) held(o *opRec, ti *tokenInfo) time.Time {
	if m.noCache || (o.Durable || o == ti.created) && !m.dbDown(o.Start, o.End) && o.ok() {
		return o.End
	}
	t := o.End.Add(o.Sync + writerTick(o.Sync) + m.spread + slackLag)
	for range 8 {
		moved := false
		if end := m.dbWindow(o.Start, t); !end.IsZero() {
			if nt := minTime(end.Add(m.retry+m.maxTick+dbTimeout+slackLag), m.rescue(ti, end)); nt.After(t) {
				t, moved = nt, true
			}
		}
		if lost := m.queueLost(o.Server, o.Start, t); !lost.IsZero() {
			if nt := m.rescue(ti, lost); nt.After(t) {
				t, moved = nt, true
			}
		}
		if !moved {
			break
		}
	}
	return t
}

// rescue returns when the first request on ti after from, late enough to
// record activity (TouchInterval), has its sync written; never when there
// is none.
func (m *model) rescue(ti *tokenInfo, from time.Time) time.Time {
	for _, o := range ti.ops {
		if o.ok() && !o.Start.Before(from.Add(touchInterval)) && !m.dbDown(o.Start, o.End) {
			return o.End.Add(o.Sync + writerTick(o.Sync) + m.spread + slackLag)
		}
	}
	return never
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// judge checks one request against the invariants.
func (m *model) judge(op *opRec) {
	// I7 (liveness): Load answers within loadBound, the request within
	// opBound.
	if !op.LoadEnd.IsZero() {
		if d := op.LoadEnd.Sub(op.Start); d > loadBound {
			m.report("I7 liveness", op, m.tokens[op.TokenIn], "Load took %v (bound %v)", d.Round(time.Millisecond), loadBound)
		}
	}
	if d := op.End.Sub(op.Start); d > opBound {
		m.report("I7 liveness", op, m.tokens[op.TokenIn], "request took %v (bound %v)", d.Round(time.Millisecond), opBound)
	}
	if !op.ok() {
		m.judgeError(op)
	}
	ti := m.tokens[op.TokenIn]
	if ti == nil || ti.tainted || !op.Loaded {
		return // a token never acknowledged (its creating request failed), or Load failed
	}
	if op.Found {
		m.judgeFound(op, ti)
	} else {
		m.judgeAbsent(op, ti)
	}
}

// judgeError: I7, a 503 only when the database could not answer (memcached
// alone unavailable: the row serves; both: a 503).
func (m *model) judgeError(op *opRec) {
	switch {
	case op.Conflict:
		// Gave up after MaxRetries: allowed, not acknowledged.
	case op.Unavail:
		if !m.dbDown(op.Start, op.End) {
			m.report("I7", op, m.tokens[op.TokenIn], "503 (%s) while the database answered", op.Err)
		}
	case op.LongSubject:
		// A named error for a subject the library cannot store is fine.
	default:
		m.report("I7", op, m.tokens[op.TokenIn], "unexpected error: %s", op.Err)
	}
}

// judgeFound checks a request that was served ti's session.
func (m *model) judgeFound(op *opRec, ti *tokenInfo) {
	if d := ti.acked; d != nil && d.End.Before(op.Start) && !ti.resurrected {
		m.judged["I2"]++
		switch {
		case m.logoutLostWithDatabaseDown(d, op):
			ti.resurrected = true
			m.excused["I2 logout lost with the database down"]++
		case m.staleAfter(ti, d.End, d, op):
			// A copy the logout could not reach, until its next sync.
			m.excused["I2 stale copy"]++
		default:
			m.report("I2", op, ti, "token %s served %v after #%d (%s) destroyed it", short(ti.tok),
				op.Start.Sub(d.End).Round(time.Millisecond), d.ID, d.Kind)
			ti.tainted = true
		}
		return // a destroyed session's data is not judged
	}
	if ti.resurrected {
		return
	}
	if !m.judgeExpiry(op, ti) {
		ti.tainted = true
		return
	}
	m.judgeValues(op, ti)
}

// logoutLostWithDatabaseDown reports whether d, a logout made while the
// database did not answer (its tombstone in memcached and in its app
// server's writer), may have been lost to a cache fault before the writer
// brought it to the row, so that r was served from the row (I2's double
// fault).
func (m *model) logoutLostWithDatabaseDown(d, r *opRec) bool {
	end := m.dbWindow(d.Start, d.End)
	if end.IsZero() {
		return false
	}
	landed := end.Add(m.retry + m.maxTick + dbTimeout + slackLag)
	if !m.queueLost(d.Server, d.Start, landed).IsZero() {
		landed = never
	}
	// Lost before it landed, the logout is gone for good: the row serves the session to any later r.
	return m.cacheThreat(d.Start, minTime(landed, r.End), r.End) != nil
}

// staleAfter reports whether r may have been served a copy of ti that
// missed what request w did at `at` (a logout, or a change): a copy on a
// node w's app server could not reach (a fault, or its breaker's
// recovery), or on a node another app server's ring put the key on (a ring
// change: during it, and after it a node may come back into a ring with
// the memory it had, or hold a copy an app server wrote just before its
// ring dropped the node). Such a copy is served until its next sync, which
// its first use schedules — the first request served from memcached after
// w (after the ring change, for a ring change): within SyncInterval plus
// TouchInterval of that use (plus the writer's tick and the clocks'
// spread); a database fault meanwhile defers the sync to the writer's
// retry.
func (m *model) staleAfter(ti *tokenInfo, at time.Time, w, r *opRec) bool {
	for _, f := range m.faults {
		var until time.Time
		from := at
		switch {
		case f.Unavail && f.affects(w.Server) && !f.End.Add(breakerRecovery).Before(w.Start) && !f.Start.After(w.End):
		case f.Ring && !f.End.Before(w.Start) && !f.Start.After(r.End):
			from = maxTime(at, f.End)
			until = f.End.Add(m.staleWindow)
		default:
			continue
		}
		for _, o := range ti.ops {
			if o != ti.created && !o.Start.Before(from) && !o.Start.After(r.Start) && m.readCopy(o) {
				until = maxTime(until, o.Start.Add(m.staleWindow))
				break
			}
		}
		if until.IsZero() {
			continue
		}
		if end := m.dbWindow(from, until); !end.IsZero() {
			until = maxTime(until, end.Add(m.retry+m.maxTick+dbTimeout+m.staleWindow))
		}
		if r.Start.Before(until) {
			return true
		}
	}
	return false
}

// readCopy reports whether o was served a memcached copy (scs requests do
// not say: they may have been, unless memcached was unreachable to their
// app server).
func (m *model) readCopy(o *opRec) bool {
	switch o.Source {
	case "memcached":
		return true
	case "":
		return !m.unreachable(o.Server, o.Start, o.End)
	}
	return false
}

// judgeExpiry checks I3 for a request served ti's session; it reports
// whether the session was alive.
func (m *model) judgeExpiry(op *opRec, ti *tokenInfo) bool {
	lin := ti.lin
	now := op.Start.Add(op.Skew) // the app server's clock, at the earliest
	if lin.scs {
		// scs: the expiry of the last Commit, exact from memcached; a copy
		// read back from the row may be up to SyncInterval past it
		// (scsstore's documented overshoot).
		var exp time.Time
		for _, o := range ti.ops {
			if o != op && o.Start.Before(op.Start) && o.ScsExpiry.After(exp) {
				exp = o.ScsExpiry
			}
		}
		// (Find does not say which tier answered.)
		if over := now.Sub(exp.Add(m.maxSync)); over > slackClock {
			m.report("I3 idle", op, ti, "scs session served %v past its expiry and SyncInterval", over.Round(time.Millisecond))
			return false
		}
		return true
	}
	// The absolute deadline: the lineage's creation on its app server's
	// clock, plus its lifetime.
	root := lin.root
	if over := now.Sub(root.End.Add(root.Skew + lin.life)); over > slackClock {
		m.report("I3 deadline", op, ti, "served %v past the absolute deadline", over.Round(time.Millisecond))
		return false
	}
	// Idle expiry: the latest activity any earlier request may have
	// recorded, on its own app server's clock.
	var active time.Time
	var last *opRec
	for _, o := range ti.ops {
		if o != op && o.Start.Before(op.Start) && o.End.Add(o.Skew).After(active) {
			active, last = o.End.Add(o.Skew), o
		}
	}
	if last == nil {
		return true
	}
	bound := active.Add(lin.idle)
	m.judged["I3"]++
	cacheFault := m.cacheThreat(last.Start.Add(-lin.idle), op.End, op.End) != nil
	if op.Source == "database" && cacheFault {
		if now.After(bound) {
			m.excused["I3 row after a cache fault"]++
		}
		// After a cache loss the row may serve it SyncInterval longer (its
		// writer's; the longest configured).
		bound = bound.Add(m.maxSync)
	}
	over := now.Sub(bound)
	if over <= slackClock {
		return true
	}
	m.report("I3 idle", op, ti, "served %v past IdleTimeout (%v) after its last activity (from %s)",
		over.Round(time.Millisecond), lin.idle, op.Source)
	return false
}

// judgeValues checks what a request saw against the acknowledged changes
// of its session (its token's, and its ancestors' made before the renewal)
// that finished before it started (I4, I5).
func (m *model) judgeValues(op *opRec, ti *tokenInfo) {
	type miss struct {
		w   *opRec
		key string
		inv string
		lag time.Duration
	}
	for key, got := range op.Seen {
		if src := m.writes[got]; src == nil || !m.sameLineage(src, ti.lin) {
			m.report("I4", op, ti, "key %s holds %q, written by no request of this session", key, got)
			return
		}
	}
	m.judged["I4/I5"]++
	var worst *miss
	cutoff := never
	for t := ti; t != nil; t = t.parent {
		for _, w := range t.writes {
			if !w.End.Before(op.Start) || !w.End.Before(cutoff) {
				continue
			}
			for key, want := range w.Writes {
				got := op.Seen[key]
				if got == want {
					continue
				}
				if got != "" {
					src := m.writes[got]
					if !src.ok() || !src.End.Before(w.Start) {
						continue // concurrent with w, or newer, or of unknown fate
					}
					if (src.Durable || src.Source == "database") && m.staleAfter(t, src.End, src, w) {
						// w changed a copy that missed src's write around it: the row took src
						// directly, which counts as later than the copy's changes (I4). That
						// copy is w's token's (t), whatever token op read.
						m.excused["I4 change to a stale copy, lost to a write around it"]++
						continue
					}
				}
				if m.staleAfter(ti, w.End, w, op) {
					m.excused["I4/I5 stale copy"]++
					continue // a copy w did not reach, until its next sync
				}
				durable := w.Durable && !m.dbDown(w.Start, w.End)
				inv := "I5"
				if !durable {
					held := m.held(w, t)
					// A fault that starts while op is in flight can send
					// its read to the row too.
					if f := m.cacheThreat(w.Start, held, op.End); f != nil {
						m.excused["I4 lost to a cache fault"]++
						continue // lost to a cache fault before it reached the row
					}
					if !held.Before(m.vanish(ti.lin)) && !op.Start.Before(m.vanish(ti.lin)) {
						m.excused["I4 lost with a copy memcached dropped before the deadline"]++
						continue
					}
					inv = "I4"
				}
				if lag := op.Start.Sub(w.End); worst == nil || lag > worst.lag {
					worst = &miss{w: w, key: key, inv: inv, lag: lag}
				}
			}
		}
		if t.created != nil && t.parent != nil {
			cutoff = t.created.Start // what the renewal carried over
		}
	}
	if worst != nil {
		got := op.Seen[worst.key]
		if got == "" {
			got = "nothing"
		}
		m.report(worst.inv, op, ti, "key %s: saw %s, %v after #%d acknowledged %s (durable=%v)",
			worst.key, got, worst.lag.Round(time.Millisecond), worst.w.ID, worst.w.Writes[worst.key], worst.w.Durable)
	}
}

// vanish returns when memcached may drop lin's copies whatever their
// activity: their TTL ends at the absolute deadline, and memcached's clock,
// counting whole seconds, may end it up to a second early — an eviction no
// fault records, which takes the changes that had not reached the row.
func (m *model) vanish(lin *lineage) time.Time {
	if lin.scs {
		return never
	}
	return lin.root.Start.Add(lin.root.Skew + lin.life - m.maxSkew - memcachedTick)
}

func (m *model) sameLineage(src *opRec, lin *lineage) bool {
	for _, tok := range []string{src.TokenIn, src.TokenOut} {
		if ti := m.tokens[tok]; ti != nil && ti.lin == lin {
			return true
		}
	}
	return false
}

// judgeAbsent checks a request that found no session for a token it held
// (I1): it must be served while the database answers, until IdleTimeout
// after the last activity the row or memcached must know of.
func (m *model) judgeAbsent(op *opRec, ti *tokenInfo) {
	if ti.maybeDestroyed(op.End) || ti.resurrected {
		return
	}
	if m.dbDown(op.Start, op.End) {
		m.excused["I1 database down"]++
		return
	}
	lin := ti.lin
	var alive time.Time   // the session must be alive before this, on op's app server's clock
	var expires time.Time // IdleTimeout after the latest activity so far
	var from *opRec
	for _, o := range ti.ops {
		if !o.ok() || !o.End.Before(op.Start) {
			continue
		}
		if !expires.IsZero() && !o.Start.Add(m.maxSkew).Before(expires) {
			// o came when the fastest clock had the session expired: a reaper there may have deleted its
			// row, and o found it by a slower clock. Skew moves the timeout by the skew. Every earlier
			// activity set that expiry, also one whose state may be lost with a copy.
			m.excused["I1 activity at a skewed expiry"]++
			return
		}
		active := o.Start // a change or a touch records activity; a read without a touch had one within TouchInterval
		if !o.wrote() && o != ti.created {
			active = active.Add(-touchInterval)
		}
		e := active.Add(lin.idle)
		if lin.scs {
			e = o.ScsExpiry // zero when o committed nothing
		}
		if e.After(expires) {
			expires = e
		}
		held := m.held(o, ti)
		if m.cacheThreat(active, held, op.Start) != nil || !held.Before(active.Add(lin.idle-memcachedTick)) {
			continue // its activity may be lost with memcached's copy
		}
		var until time.Time
		if lin.scs {
			if o.ScsExpiry.IsZero() {
				continue
			}
			until = o.ScsExpiry
		} else {
			// The row expires IdleTimeout plus SyncInterval after the
			// activity it knows of, which lags by the writer's tick at
			// most; the app servers' clocks spread it. At the latest it
			// expires at the deadline, which the creator's clock set and
			// the fastest clock's reaper reaches first: on op's clock,
			// that much sooner than op's own (seed 110999).
			until = active.Add(m.minSkew + lin.idle - m.maxTick - m.spread)
			if d := lin.root.Start.Add(lin.root.Skew + lin.life + op.Skew - m.maxSkew); d.Before(until) {
				until = d
			}
		}
		if until.After(alive) {
			alive, from = until, o
		}
	}
	if from == nil {
		return
	}
	m.judged["I1"]++
	if early := alive.Sub(op.LoadEnd.Add(op.Skew)); early > slackTight {
		m.report("I1", op, ti, "session absent %v before it may expire (activity of #%d)", early.Round(time.Millisecond), from.ID)
		ti.tainted = true
	}
}
