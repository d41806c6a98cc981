package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultReport collects one row per scenario phase and prints them as a
// Markdown table: with t.Logf, and into the file named by
// HYBRIDSESSION_FAULT_REPORT when it is set.
type faultReport struct {
	mu   sync.Mutex
	rows []string
}

const faultReportEnv = "HYBRIDSESSION_FAULT_REPORT"

func (r *faultReport) add(backend string, p *phaseStats) {
	d := p.delta()
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	hit := "–"
	if d.CacheHits+d.CacheMisses+d.CacheErrors > 0 {
		hit = fmt.Sprintf("%.0f%%", 100*d.hitRatio())
	}
	lostRecent := strconv.Itoa(p.lostRecent)
	if p.cameBack > 0 {
		lostRecent += fmt.Sprintf(" (%d back)", p.cameBack)
	}
	name := p.name
	if p.oldMemory {
		name += " *"
	}
	row := fmt.Sprintf("| %s | %s | %s | %.1f | %d | %d | %d | %s | %d | %d | %s | %s | %s | %d | %d | %d |",
		backend, p.scenario, name, p.end.Sub(p.start).Seconds(), p.requests,
		p.logouts+p.keyLost+p.wrongUser, p.lostOld, lostRecent, p.phantom, p.status5xx+p.netErrors,
		ms(p.percentile(0.50)), ms(p.percentile(0.99)), hit,
		d.DBErrors, d.Merges, d.CacheErrors)
	r.mu.Lock()
	r.rows = append(r.rows, row)
	r.mu.Unlock()
}

func (r *faultReport) markdown() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "Fault injection: %d users, %d app servers, %d memcached nodes; Timeout %v, BreakerThreshold %d, BreakerCooldown %v, SyncInterval %v.\n",
		faultUsers, faultAppServers, faultNodes, faultTimeout, faultBreakerThreshold, faultBreakerCooldown, faultSyncInterval)
	b.WriteString("- logouts: a logged-in user's session came back new, or without its durable user id\n" +
		"- lost >SI: the cart read back was older than an update acknowledged SyncInterval (plus the writer's tick and a margin) before the user's previous checked request (the background writer had it in the database before memcached lost it; must be 0)\n" +
		"- lost recent: older than the last acknowledged update only (allowed when memcached loses data); (n back): the newer value came back before the user wrote again, i.e. a stale read from the database while memcached was unreachable\n" +
		"- resurrected: newer than anything the user wrote since such a loss: an older copy of the session came back over newer acknowledged writes\n" +
		"- phases marked *: a node may serve copies older than writes made around it (back from a partition with its memory, or keys back on their previous owners); their reads may be stale until each copy's next sync (docs/consistency.md, rule 3), so lost >SI and resurrected are not failures there\n" +
		"- 5xx: 5xx answers and transport errors; hit: memcached hits / session reads; DB errors: failed calls to the database; merges: copies merged with a row that moved on; breaker opens: both app servers\n\n")
	b.WriteString("| db | scenario | phase | s | requests | logouts | lost >SI | lost recent | resurrected | 5xx | p50 ms | p99 ms | hit | DB errors | merges | cache errors |\n")
	b.WriteString("| --- | --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |\n")
	for _, row := range r.rows {
		b.WriteString(row)
		b.WriteByte('\n')
	}
	return b.String()
}

// write logs the table and writes it to HYBRIDSESSION_FAULT_REPORT.
func (r *faultReport) write(t *testing.T) {
	md := r.markdown()
	t.Logf("fault report:\n%s", md)
	if path := os.Getenv(faultReportEnv); path != "" {
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Errorf("write %s: %v", faultReportEnv, err)
		}
	}
}
