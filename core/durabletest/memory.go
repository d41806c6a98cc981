package durabletest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
)

// Memory is a durable.Tier that keeps its rows in a map: the store for
// testing applications, as scs's memstore is. A core.Store whose only tier
// is a Memory needs no memcached and no database, so an application's
// handler tests start nothing (docs/testing.md); examples use it too. It
// passes Run, so code tested against it sees the same semantics as with
// gormstore: conditional writes, listing in Key order and reaping with
// verdicts.
//
// Memory keeps nothing across restarts and shares nothing between
// processes: do not use it in production. It is safe for concurrent use by
// many goroutines. The zero value is not ready; use NewMemory.
//
// Like a database, Memory stores copies: a Record passed in or returned
// never shares its Payload with the stored row, and times are kept to the
// millisecond, rounded down, and returned in UTC.
//
// Memory holds no lock while a Reap judge runs, so a Write of a claimed row
// lands at once and the verdict on that row is then skipped. A database
// implementation that locks the rows it claims makes the Write wait for the
// verdict instead; the suite accepts both.
type Memory struct {
	mu      sync.Mutex
	rows    map[string]durable.Record
	claimed map[string]bool // keys handed to a judge that has not returned
}

var _ durable.Tier = (*Memory)(nil)

// NewMemory returns an empty Memory. Give each test its own, so that tests
// share no sessions.
func NewMemory() *Memory {
	return &Memory{rows: map[string]durable.Record{}, claimed: map[string]bool{}}
}

// stored returns the copy of r that Memory keeps or hands out.
func stored(r durable.Record) durable.Record {
	r.Payload = slices.Clone(r.Payload)
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	r.ExpiresAt = r.ExpiresAt.Truncate(time.Millisecond).UTC()
	r.Deadline = r.Deadline.Truncate(time.Millisecond).UTC()
	return r
}

// Load implements durable.Tier. It returns a copy of the row stored under
// key, whatever its times, and an error only when ctx is done.
func (m *Memory) Load(ctx context.Context, key string) (durable.Record, bool, error) {
	if err := ctx.Err(); err != nil {
		return durable.Record{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[key]
	if !ok {
		return durable.Record{}, false, nil
	}
	return stored(r), true, nil
}

// Write implements durable.Tier. The whole batch is applied at once, under
// one lock. It returns an error, and writes nothing, when ctx is done, when
// a write's Record.Version is not its Base+1, or when batch repeats a key.
func (m *Memory) Write(ctx context.Context, batch []durable.Write) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(batch))
	for i, w := range batch {
		if w.Version != w.Base+1 || w.Version == 0 {
			return nil, fmt.Errorf("durabletest: memory: write %d: version %d on base %d, want base+1", i, w.Version, w.Base)
		}
		if seen[w.Key] {
			return nil, fmt.Errorf("durabletest: memory: write %d: key %q repeated in the batch", i, w.Key)
		}
		seen[w.Key] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	applied := make([]bool, len(batch))
	for i, w := range batch {
		cur, ok := m.rows[w.Key]
		if w.Base == 0 && ok || w.Base != 0 && (!ok || cur.Version != w.Base) {
			continue
		}
		m.rows[w.Key] = stored(w.Record)
		applied[i] = true
	}
	return applied, nil
}

// List implements durable.Tier. It returns an error when limit is below 1
// or ctx is done.
func (m *Memory) List(ctx context.Context, subject, after string, limit int) ([]durable.Record, error) {
	if limit < 1 {
		return nil, fmt.Errorf("durabletest: memory: List limit %d, want at least 1", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []durable.Record
	for k, r := range m.rows {
		if k > after && (subject == "" || r.Subject == subject) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b durable.Record) int { return strings.Compare(a.Key, b.Key) })
	out = out[:min(len(out), limit)]
	for i := range out {
		out[i] = stored(out[i])
	}
	return out, nil
}

// Reap implements durable.Tier. Rows handed to a judge are marked claimed
// until Reap returns, so that concurrent Reaps never hand out a row twice;
// no lock is held while judge runs. Rows whose ExpiresAt ties are claimed
// in Key order. Reap returns an error when limit is below 1 or ctx is done,
// and panics when judge is nil.
func (m *Memory) Reap(ctx context.Context, now time.Time, limit int, judge durable.Judge) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("durabletest: memory: Reap limit %d, want at least 1", limit)
	}
	if judge == nil {
		panic("durabletest: memory: Reap called with a nil judge")
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	batch := m.claim(now, limit)
	if len(batch) == 0 {
		return 0, nil
	}
	defer m.release(batch)
	verdicts, err := judge(ctx, slices.Clone(batch))
	if err != nil {
		return 0, fmt.Errorf("durabletest: memory: judge: %w", err)
	}
	if err := checkVerdicts(batch, verdicts); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range batch {
		cur, ok := m.rows[r.Key]
		if !ok || cur.Version != r.Version {
			continue // a write raced in: it stays
		}
		switch verdicts[i].Action {
		case durable.Delete:
			delete(m.rows, r.Key)
		case durable.Keep:
			m.rows[r.Key] = stored(verdicts[i].Record)
		}
	}
	return len(batch), nil
}

// claim marks and returns copies of up to limit unclaimed rows whose
// ExpiresAt is not after now, oldest first.
func (m *Memory) claim(now time.Time, limit int) []durable.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	var batch []durable.Record
	for k, r := range m.rows {
		if !m.claimed[k] && !r.ExpiresAt.After(now) {
			batch = append(batch, r)
		}
	}
	slices.SortFunc(batch, func(a, b durable.Record) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.Key, b.Key))
	})
	batch = batch[:min(len(batch), limit)]
	for i, r := range batch {
		m.claimed[r.Key] = true
		batch[i] = stored(r)
	}
	return batch
}

// release ends the claim on the rows of batch.
func (m *Memory) release(batch []durable.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range batch {
		delete(m.claimed, r.Key)
	}
}

// errBadVerdicts is returned by Memory.Reap for verdicts that do not match
// the batch.
var errBadVerdicts = errors.New("durabletest: memory: judge verdicts do not match the batch")

// checkVerdicts reports whether verdicts fit batch: one per row, a known
// Action, and kept records under the row's Key at the next Version.
func checkVerdicts(batch []durable.Record, verdicts []durable.Verdict) error {
	if len(verdicts) != len(batch) {
		return fmt.Errorf("%w: %d verdicts for %d rows", errBadVerdicts, len(verdicts), len(batch))
	}
	for i, v := range verdicts {
		switch v.Action {
		case durable.Delete, durable.Leave:
		case durable.Keep:
			if v.Record.Key != batch[i].Key || v.Record.Version != batch[i].Version+1 {
				return fmt.Errorf("%w: verdict %d keeps key %q at version %d for row %q at version %d",
					errBadVerdicts, i, v.Record.Key, v.Record.Version, batch[i].Key, batch[i].Version)
			}
		default:
			return fmt.Errorf("%w: verdict %d has unknown action %d", errBadVerdicts, i, v.Action)
		}
	}
	return nil
}
