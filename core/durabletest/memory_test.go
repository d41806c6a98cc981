package durabletest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// TestMemory runs the suite on a small in-memory implementation, which checks
// that the suite accepts a correct implementation. The implementation holds
// no lock while the judge runs, so the racing-Save tests take the path where
// the Save lands first and Reap must notice the change.
func TestMemory(t *testing.T) {
	durabletest.Run(t, func(t *testing.T) core.Durable { return newMemory() })
}

type memory struct {
	mu      sync.Mutex
	rows    map[string]core.Record
	claimed map[string]bool
}

var _ core.Durable = (*memory)(nil)

func newMemory() *memory {
	return &memory{rows: map[string]core.Record{}, claimed: map[string]bool{}}
}

func clone(r core.Record) core.Record {
	r.Payload = slices.Clone(r.Payload)
	return r
}

func (m *memory) Load(_ context.Context, key string, now time.Time) (core.Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[key]
	if !ok || !r.ExpiresAt.After(now) || !r.Deadline.After(now) {
		return core.Record{}, false, nil
	}
	return clone(r), true, nil
}

func (m *memory) saveLocked(rec core.Record) bool {
	old, ok := m.rows[rec.Key]
	if ok && (old.Version > rec.Version || old.Version == rec.Version && old.ExpiresAt.After(rec.ExpiresAt)) {
		return false
	}
	rec = clone(rec)
	rec.ExpiresAt = rec.ExpiresAt.Truncate(time.Millisecond)
	rec.Deadline = rec.Deadline.Truncate(time.Millisecond)
	m.rows[rec.Key] = rec
	return true
}

func (m *memory) Save(_ context.Context, rec core.Record) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saveLocked(rec), nil
}

func (m *memory) Delete(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.rows, k)
	}
	return nil
}

func (m *memory) DeleteSubject(_ context.Context, subject string) ([]string, error) {
	if subject == "" {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k, r := range m.rows {
		if r.Subject == subject {
			keys = append(keys, k)
			delete(m.rows, k)
		}
	}
	return keys, nil
}

func (m *memory) List(_ context.Context, now time.Time, after string, limit int) ([]core.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []core.Record
	for k, r := range m.rows {
		if k > after && r.ExpiresAt.After(now) && r.Deadline.After(now) {
			out = append(out, clone(r))
		}
	}
	slices.SortFunc(out, func(a, b core.Record) int { return strings.Compare(a.Key, b.Key) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memory) Reap(ctx context.Context, now time.Time, limit int, judge core.ReapJudge) (int, error) {
	m.mu.Lock()
	var batch []core.Record
	for k, r := range m.rows {
		if !m.claimed[k] && !r.ExpiresAt.After(now) {
			batch = append(batch, clone(r))
		}
	}
	slices.SortFunc(batch, func(a, b core.Record) int {
		if c := a.ExpiresAt.Compare(b.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if len(batch) > limit {
		batch = batch[:limit]
	}
	for _, r := range batch {
		m.claimed[r.Key] = true
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		for _, r := range batch {
			delete(m.claimed, r.Key)
		}
		m.mu.Unlock()
	}()
	if len(batch) == 0 {
		return 0, nil
	}

	verdicts, err := judge(ctx, slices.Clone(batch))
	if err != nil {
		return 0, err
	}
	if len(verdicts) != len(batch) {
		return 0, errors.New("memory: wrong number of verdicts")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range batch {
		cur, ok := m.rows[r.Key]
		if !ok || cur.Version != r.Version || !cur.ExpiresAt.Equal(r.ExpiresAt) {
			continue // changed since it was claimed
		}
		if verdicts[i].Keep {
			m.rows[r.Key] = clone(verdicts[i].Record)
		} else {
			delete(m.rows, r.Key)
		}
	}
	return len(batch), nil
}
