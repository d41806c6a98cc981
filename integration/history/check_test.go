package history

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Slack of the checker's timing judgements. Operation times are taken in
// the test process around each call, so the moment a request acted lies
// between its Start and End; the slacks cover scheduling delays between
// those stamps and the library's own clock reads (2 shared cores), and the
// app servers' clock skew.
const (
	// breakerRecovery is how long after a node answers again an app
	// server may still have its breaker open: the cooldown, then a dial
	// and a request of the probe.
	breakerRecovery = breakerCool + 2*mcTimeout + slackTight

	slackTight = 250*time.Millisecond + 2*maxSkew // expiry judgements (I1, I3)
	slackLag   = 500 * time.Millisecond           // data lag judgements (I4, I5)
	dbSettle   = time.Second                      // a database fault's effects outlast its healing by this
)

// violation is one broken invariant with the evidence.
type violation struct {
	Seed      uint64
	Backend   string
	Profile   string
	Invariant string
	Msg       string
	Trace     []string
}

func (v violation) String() string {
	return fmt.Sprintf("seed %d (%s, %s): %s: %s\n    %s", v.Seed, v.Profile, v.Backend, v.Invariant, v.Msg,
		strings.Join(v.Trace, "\n    "))
}

// lineage is one session across its token renewals: values carry over,
// the deadline stays.
type lineage struct {
	id  int
	scs bool // an scs session: only commits extend it, no absolute deadline
	// tainted: the session was served when it must not have been (I2,
	// I3). Later judgements on it would report consequences of that
	// first violation, so they are skipped.
	tainted bool
	created *opRec // the request that created the session
	ops     []*opRec
}

type tokenInfo struct {
	tok      string
	lin      *lineage
	subject  string
	created  *opRec
	gone     time.Time // acknowledged destroyed (Destroy, RenewToken, DestroySubject) at; zero: never
	goneBy   *opRec
	maybe    time.Time // a destroying request started at; zero: never
	dbFaulty bool      // created while the database was in trouble
}

// model is the reference model built from a history.
type model struct {
	h      *history
	ops    []*opRec
	faults []*faultRec
	tokens map[string]*tokenInfo
	lins   []*lineage
	writes map[string]*opRec // value -> the request that wrote it
	out    []violation
}

func check(h *history) []violation {
	m := &model{h: h, ops: append([]*opRec(nil), h.rec.ops...), faults: h.rec.faults,
		tokens: map[string]*tokenInfo{}, writes: map[string]*opRec{}}
	sort.Slice(m.ops, func(i, j int) bool { return m.ops[i].Start.Before(m.ops[j].Start) })
	m.build()
	for _, op := range m.ops {
		m.judge(op)
	}
	return m.out
}

// build assigns tokens to lineages (in order of completion, which is when
// a token becomes known) and works out when each token was destroyed.
func (m *model) build() {
	byEnd := append([]*opRec(nil), m.ops...)
	sort.Slice(byEnd, func(i, j int) bool { return byEnd[i].End.Before(byEnd[j].End) })
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
			ti.lin, ti.subject = in.lin, in.subject
		} else {
			ti.lin = &lineage{id: len(m.lins), created: op, scs: strings.HasPrefix(op.Kind, "scs-")}
			m.lins = append(m.lins, ti.lin)
		}
		if op.SetSubject != "" {
			ti.subject = op.SetSubject
		}
		ti.dbFaulty = m.dbFault(op.Start.Add(-dbSettle), op.End)
		m.tokens[op.TokenOut] = ti
	}
	for _, op := range m.ops {
		if tl := m.tokens[op.TokenIn]; tl != nil && op.Found && op.Kind != "replay" {
			tl.lin.ops = append(tl.lin.ops, op)
		}
		if tl := m.tokens[op.TokenOut]; tl != nil && tl.created == op {
			tl.lin.ops = append(tl.lin.ops, op)
		}
	}
	for _, l := range m.lins {
		sort.Slice(l.ops, func(i, j int) bool { return l.ops[i].Start.Before(l.ops[j].Start) })
		l.ops = dedup(l.ops)
	}
	gone := func(ti *tokenInfo, op *opRec, acked bool) {
		if ti.maybe.IsZero() || op.Start.Before(ti.maybe) {
			ti.maybe = op.Start
		}
		if acked && (ti.gone.IsZero() || op.End.Before(ti.gone)) {
			ti.gone, ti.goneBy = op.End, op
		}
	}
	for _, op := range m.ops {
		ti := m.tokens[op.TokenIn]
		switch {
		case ti == nil:
		case (op.Kind == "destroy" || op.Kind == "scs-destroy") && (op.Destroy || !op.ok()):
			gone(ti, op, op.ok())
		case op.Renew && op.Found:
			gone(ti, op, op.ok() && op.TokenOut != op.TokenIn)
		}
		if op.DSubject == "" {
			continue
		}
		for _, ti := range m.tokens {
			if ti.subject != op.DSubject || !ti.created.Start.Before(op.End) {
				continue
			}
			// Only sessions whose subject was acknowledged before the
			// logout began, with the database healthy meanwhile, must be
			// found by it.
			sure := op.ok() && ti.created.End.Before(op.Start) && !ti.dbFaulty &&
				!m.dbFault(ti.created.Start, op.End)
			gone(ti, op, sure)
		}
	}
}

func dedup(ops []*opRec) []*opRec {
	out := ops[:0]
	for i, op := range ops {
		if i > 0 && ops[i-1] == op {
			continue
		}
		out = append(out, op)
	}
	return out
}

func (m *model) report(inv string, op *opRec, lin *lineage, format string, args ...any) {
	v := violation{Seed: m.h.seed, Backend: m.h.c.backend, Profile: m.h.p.name, Invariant: inv,
		Msg: fmt.Sprintf(format, args...)}
	if lin != nil {
		var tr []*opRec
		for _, o := range lin.ops {
			if !o.Start.After(op.End) {
				tr = append(tr, o)
			}
		}
		if len(tr) > 14 {
			tr = tr[len(tr)-14:]
		}
		for _, o := range tr {
			v.Trace = append(v.Trace, o.format(m.h.epoch))
		}
	}
	if lin == nil || lin.ops == nil || !contains(lin.ops, op) {
		v.Trace = append(v.Trace, op.format(m.h.epoch))
	}
	if ti := m.tokens[op.TokenIn]; ti != nil && ti.goneBy != nil && (lin == nil || !contains(lin.ops, ti.goneBy)) {
		v.Trace = append(v.Trace, ti.goneBy.format(m.h.epoch))
	}
	from := op.Start.Add(-idleTimeout - syncInterval)
	if lin != nil && len(lin.ops) > 0 {
		from = lin.ops[0].Start
	}
	for _, f := range m.faults {
		if f.End.After(from) && f.Start.Before(op.End) {
			v.Trace = append(v.Trace, f.format(m.h.epoch))
		}
	}
	m.out = append(m.out, v)
}

func contains(ops []*opRec, op *opRec) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// Fault predicates over a window [from, to].

func (m *model) any(from, to time.Time, pred func(*faultRec) bool) bool {
	for _, f := range m.faults {
		if pred(f) && !f.End.Before(from) && !f.Start.After(to) {
			return true
		}
	}
	return false
}

func (m *model) dbFault(from, to time.Time) bool {
	return m.any(from.Add(-dbSettle), to, func(f *faultRec) bool { return f.DB })
}

func (m *model) cacheFault(from, to time.Time) bool {
	return m.any(from, to, func(f *faultRec) bool { return f.Loss || f.Unavail })
}

// breakerRecovering reports whether w ran while a node unreachable before
// it may still have been unreachable to w's app server: its breaker closes
// at the first probe after the node answers (BreakerCooldown, then a dial
// and a request), and until then that app server writes around the node.
func (m *model) breakerRecovering(w *opRec) bool {
	return m.any(w.Start.Add(-breakerRecovery), w.End, func(f *faultRec) bool { return f.Unavail })
}

// purgePending reports whether a memcached node may have been unreachable
// to the destroying app server while destroy ran (the fault, or its
// breaker's recovery after it: seed 900198) and at is no later than that
// server's probe after the node came back.
func (m *model) purgePending(destroy *opRec, at time.Time) bool {
	if destroy == nil {
		return false
	}
	for _, f := range m.faults {
		if f.Unavail && !f.End.Add(breakerRecovery).Before(destroy.Start) && !f.Start.After(destroy.End) &&
			at.Before(f.End.Add(breakerRecovery)) {
			return true
		}
	}
	return false
}

// tombstoneHeld reports whether destroy ran while the database failed, so
// that its row's tombstone waited in the destroying app server's background
// writer, a cache fault since may have hidden memcached's tombstone, and
// either at is no later than the writer's retry after the database
// recovered (one DBTimeout for an attempt caught by a hang, then the
// longest backoff) or that app server stopped before then, with the
// tombstone in its queue: I5's double fault (docs/consistency.md, I2).
func (m *model) tombstoneHeld(destroy *opRec, at time.Time) bool {
	if destroy == nil || !m.cacheFault(destroy.Start, at) {
		return false
	}
	server := fmt.Sprintf("s%d", destroy.Server)
	for _, f := range m.faults {
		if !f.DB || f.Start.After(destroy.End) || f.End.Add(dbSettle).Before(destroy.Start) {
			continue
		}
		landed := f.End.Add(dbSettle + dbTimeout + retryBackoffCap + slackTight)
		if at.Before(landed) || m.any(destroy.Start, landed, func(c *faultRec) bool {
			return c.Target == server && (c.Crash || c.Kind == "restart" && c.Note != "")
		}) {
			return true
		}
	}
	return false
}

func (m *model) cacheLoss(from, to time.Time) bool {
	return m.any(from, to, func(f *faultRec) bool { return f.Loss })
}

func (m *model) crash(from, to time.Time) bool {
	return m.any(from, to, func(f *faultRec) bool { return f.Crash || (f.Kind == "restart" && f.Note != "") })
}

// doubleFault reports whether, within [from, to], memcached lost or could
// not serve data while the database or an app server's queue could not
// stand in for it.
func (m *model) doubleFault(from, to time.Time) bool {
	return (m.dbFault(from, to) || m.crash(from, to)) && m.cacheFault(from, to)
}

// judge checks one request against the invariants.
func (m *model) judge(op *opRec) {
	// I7 (liveness): every request answers within opBound.
	if d := op.End.Sub(op.Start); d > opBound {
		m.report("I7 liveness", op, nil, "request took %v (bound %v)", d.Round(time.Millisecond), opBound)
	}
	if !op.ok() {
		m.judgeError(op)
	}
	if op.TokenIn == "" {
		return
	}
	ti := m.tokens[op.TokenIn]
	if ti == nil {
		return // a token never acknowledged (its creating request failed)
	}
	if op.Found {
		m.judgeFound(op, ti)
	} else if op.Err == "" || op.Unavail {
		if !op.Unavail {
			m.judgeAbsent(op, ti)
		}
	}
}

func (m *model) judgeError(op *opRec) {
	switch {
	case op.Conflict:
		// Gave up after MaxRetries: allowed, not acknowledged.
	case op.Unavail:
		// I7: 503 only when both tiers are unavailable for the session.
		if !m.dbFault(op.Start, op.End) && !m.crash(op.Start, op.End) {
			m.report("I7", op, m.linOf(op), "503 (%s) while the database was reachable", op.Err)
		}
	case op.LongSubject:
		// A named error for a subject the library cannot store is fine.
	default:
		m.report("I7", op, m.linOf(op), "unexpected error: %s", op.Err)
	}
}

func (m *model) linOf(op *opRec) *lineage {
	if ti := m.tokens[op.TokenIn]; ti != nil {
		return ti.lin
	}
	return nil
}

// judgeFound checks a request that was served token's session.
func (m *model) judgeFound(op *opRec, ti *tokenInfo) {
	lin := ti.lin
	if lin.tainted {
		return
	}
	// I2: a destroyed token is never served again — except, as
	// docs/consistency.md states, when the destroy could not reach the
	// session's memcached node: an app server that reaches the node again
	// before the destroying one has purged it (its next probe) may serve
	// the node's copy until then; and when the destroy's database write
	// failed, so its tombstone is held by the background writer, a reader
	// that cannot see memcached's tombstone may be served the row until the
	// writer's retry lands after the database recovers.
	if !ti.gone.IsZero() && ti.gone.Before(op.Start) && !m.purgePending(ti.goneBy, op.Start) && !m.tombstoneHeld(ti.goneBy, op.Start) {
		m.report("I2", op, lin, "token %s served %v after #%d (%s) destroyed it", short(ti.tok),
			op.Start.Sub(ti.gone).Round(time.Millisecond), ti.goneBy.ID, ti.goneBy.Kind)
		lin.tainted = true
		return
	}
	// A destroyed token served within those exceptions is served the
	// session as its last copy held it, perhaps an older row: changes made
	// since under the token that replaced it (RenewToken) are not its to
	// show, and its data is not judged.
	destroyed := !ti.gone.IsZero() && ti.gone.Before(op.Start)
	// I3: the absolute deadline is never exceeded.
	if over := op.Start.Sub(lin.created.End.Add(lifetime)); over > slackTight && !lin.scs {
		m.report("I3 deadline", op, lin, "served %v past the absolute deadline", over.Round(time.Millisecond))
		lin.tainted = true
		return
	}
	// I3: never served after IdleTimeout of inactivity, except within
	// SyncInterval after a real cache loss (or while memcached was
	// unreachable and the row stood in).
	var last, lastStart time.Time
	for _, o := range lin.ops {
		if lin.scs && len(o.Writes) == 0 {
			continue // scs: only a Commit sets a new expiry
		}
		if o != op && o.Start.Before(op.Start) && o.End.After(last) {
			last, lastStart = o.End, o.Start
		}
	}
	if !last.IsZero() {
		idle := op.Start.Sub(last)
		bound := idleTimeout
		// A cache loss during the last request counts too: what it wrote
		// to memcached may be gone, and the row stands in.
		// So does one during the breaker's recovery before it: memcached
		// may still have been unreachable to that request's app server
		// (seed 200145).
		if m.cacheFault(lastStart.Add(-breakerRecovery), op.End) || m.crash(lastStart, op.End) {
			bound += syncInterval
		}
		if idle > bound+slackTight {
			why := "within the database row's life (IdleTimeout+SyncInterval after its last sync)"
			if idle > idleTimeout+syncInterval+slackTight {
				why = "beyond the row's own life: a postponed or extended row"
			}
			m.report("I3 idle", op, lin, "served after %v idle (bound %v), %s", idle.Round(time.Millisecond), bound, why)
			lin.tainted = true
			return
		}
		if idle > bound-touchInterval {
			// Near expiry: a read within TouchInterval of the last write
			// does not refresh the session, and memcached's clock ticks
			// once a second, so whether it may still be served is unclear,
			// and so is its data.
			return
		}
	}
	if destroyed {
		return
	}
	m.judgeValues(op, lin)
}

// judgeValues checks what a request saw against the acknowledged writes
// that finished before it started (I4, I5, I6).
func (m *model) judgeValues(op *opRec, lin *lineage) {
	type miss struct {
		w   *opRec
		key string
		inv string
		lag time.Duration
	}
	var worst *miss
	for _, w := range lin.ops {
		if !w.ok() || len(w.Writes) == 0 || !w.End.Before(op.Start) {
			continue
		}
		for key, want := range w.Writes {
			got := op.Seen[key]
			if got == want {
				continue
			}
			if got != "" {
				src := m.writes[got]
				if src == nil || !sameLineage(m, src, lin) {
					m.report("I4", op, lin, "key %s holds %q, written by no request of this session", key, got)
					return
				}
				if !src.ok() || !src.End.Before(w.Start) {
					continue // concurrent with w, or newer, or of unknown fate
				}
			}
			lag := op.Start.Sub(w.End)
			var inv string
			quiet := !m.dbFault(w.Start, op.End) && !m.crash(w.Start, op.End)
			switch {
			case overlapsWriter(w, lin) && (m.h.p.noMemcached || m.cacheFault(w.Start, w.End) || m.breakerRecovering(w)):
				// Without memcached (none, or a fault on its node)
				// concurrent writes of one session are last-writer-wins,
				// whole session for whole session (docs/consistency.md: I6
				// holds only while memcached is up).
				continue
			case m.forked(w, lin) && (!w.Durable || m.dbFault(w.Start, op.End)):
				// Built on a copy that had forked from the row: the
				// database refused w's write, and the row replaced the copy
				// (docs/consistency.md, I4). A durable change was
				// re-applied by its request, unless the database held it
				// back (I5).
				continue
			case quiet && m.h.p.noMemcached:
				// Database only, nothing failing: every acknowledged change
				// stays.
				inv = "I4 (no fault, database only)"
			case quiet && !m.cacheFault(w.Start.Add(-2*time.Second), op.End):
				inv = "I6"
			case w.Durable:
				if lag <= syncInterval+slackLag || m.durableExcused(w, op) || m.duringRollout(w) {
					continue
				}
				inv = "I5"
			default:
				if lag <= syncInterval+slackLag || m.cacheExcused(w, op, lin) || m.doubleFault(w.Start.Add(-syncInterval), op.End) {
					continue
				}
				inv = "I4"
			}
			if worst == nil || lag > worst.lag {
				worst = &miss{w: w, key: key, inv: inv, lag: lag}
			}
		}
	}
	if worst != nil {
		got := op.Seen[worst.key]
		if got == "" {
			got = "nothing"
		}
		m.report(worst.inv, op, lin, "key %s: saw %s, %v after #%d acknowledged %s (durable=%v)",
			worst.key, got, worst.lag.Round(time.Millisecond), worst.w.ID, worst.w.Writes[worst.key], worst.w.Durable)
	}
}

// overlapsWriter reports whether another write of lin ran at the same time
// as w.
func overlapsWriter(w *opRec, lin *lineage) bool {
	for _, o := range lin.ops {
		if o != w && o.ok() && len(o.Writes) > 0 && o.Start.Before(w.End) && w.Start.Before(o.End) {
			return true
		}
	}
	return false
}

// forked reports whether w was built on a copy that had forked from the
// row: the session w read lacked a change acknowledged before w started
// that was made while a node was unreachable, or its breaker recovering,
// so it may have gone around the node to the row.
func (m *model) forked(w *opRec, lin *lineage) bool {
	for _, o := range lin.ops {
		if o == w || !o.ok() || len(o.Writes) == 0 || !o.End.Before(w.Start) || !m.breakerRecovering(o) {
			continue
		}
		for key, want := range o.Writes {
			got := w.Seen[key]
			if got == want {
				continue
			}
			if src := m.writes[got]; got != "" && src != nil && src.ok() && !src.End.Before(o.Start) {
				continue // w saw a newer or concurrent value
			}
			return true
		}
	}
	return false
}

func sameLineage(m *model, src *opRec, lin *lineage) bool {
	for _, tok := range []string{src.TokenIn, src.TokenOut} {
		if ti := m.tokens[tok]; ti != nil && ti.lin == lin {
			return true
		}
	}
	return false
}

// cacheExcused reports whether write w may be missing from op because a
// cache fault lost it while it was within SyncInterval of the session's
// newest change before the fault (the database copy lags memcached by at
// most that much; changes made while a node is unreachable branch from the
// row, so they do not count). A ring change counts as one fault from its
// first server to its last, and changes made during it count.
func (m *model) cacheExcused(w, op *opRec, lin *lineage) bool {
	for _, f := range m.faults {
		if !f.Loss && !f.Unavail || f.End.Before(w.Start) || f.Start.After(op.End) {
			continue
		}
		before := f.Start
		if strings.HasPrefix(f.Kind, "ring") {
			before = f.End
		}
		var newest time.Time
		for _, o := range lin.ops {
			if o.ok() && len(o.Writes) > 0 && o.Start.Before(before) && o.Start.After(newest) {
				newest = o.Start
			}
		}
		if !w.End.Before(newest.Add(-syncInterval - slackLag)) {
			return true
		}
	}
	return false
}

// durableExcused reports whether durable write w may be missing from op
// under the double fault: memcached lost the copy while the database was
// failing (within SyncInterval after it healed, before retries got
// through), or after the app server holding the write crashed or reported
// a failed Close.
func (m *model) durableExcused(w, op *opRec) bool {
	for _, f := range m.faults {
		if !f.Loss && !f.Unavail || f.End.Before(w.Start) || f.Start.After(op.End) {
			continue
		}
		if m.dbFault(f.Start.Add(-syncInterval), f.End) || m.crash(w.Start, f.End) {
			return true
		}
	}
	return false
}

// duringRollout reports whether w ran while a ring change rolled out, from
// the first app server applying it to the last: an app server that had not
// applied it yet may have built on the previous owner's older copy, and a
// durable change then is no safer than any other (docs/consistency.md, I5,
// not covered; seed 70200079).
func (m *model) duringRollout(w *opRec) bool {
	return m.any(w.Start, w.End, func(f *faultRec) bool { return strings.HasPrefix(f.Kind, "ring") })
}

// judgeAbsent checks a request that found no session for a token it held
// (I1).
func (m *model) judgeAbsent(op *opRec, ti *tokenInfo) {
	if op.Kind == "replay" {
		return
	}
	if !ti.maybe.IsZero() && ti.maybe.Before(op.End) {
		return // destroyed, or maybe destroyed, by then
	}
	lin := ti.lin
	if lin.tainted {
		return
	}
	var active time.Time
	for _, o := range lin.ops {
		if lin.scs && len(o.Writes) == 0 {
			continue
		}
		if o != op && o.ok() && o.End.Before(op.Start) && o.Start.After(active) {
			active = o.Start
		}
	}
	if active.IsZero() {
		return
	}
	expires := active.Add(-touchInterval).Add(idleTimeout)
	if d := lin.created.Start.Add(lifetime); d.Before(expires) && !lin.scs {
		expires = d
	}
	if !op.Start.Before(expires.Add(-slackTight)) {
		return
	}
	if m.dbFault(op.Start, op.End) {
		return // the database was not reachable
	}
	if m.doubleFault(active.Add(-idleTimeout-syncInterval), op.End) || ti.dbFaulty {
		return
	}
	m.report("I1", op, lin, "session absent %v after its last activity (expires no sooner than %v after it)",
		op.Start.Sub(active).Round(time.Millisecond), expires.Sub(active).Round(time.Millisecond))
}
