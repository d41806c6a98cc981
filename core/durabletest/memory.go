package durabletest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// Memory is an in-memory core.Durable that passes Run: a durable tier for
// unit tests and Example functions that cannot start a database. It keeps
// nothing across restarts: do not use it in production. The zero value is
// not ready; use NewMemory.
type Memory struct {
	mu      sync.Mutex
	rows    map[string]core.Record
	claimed map[string]bool
}

var _ core.Durable = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{rows: map[string]core.Record{}, claimed: map[string]bool{}}
}

func clone(r core.Record) core.Record {
	r.Payload = slices.Clone(r.Payload)
	return r
}

// Load implements core.Durable.
func (m *Memory) Load(_ context.Context, key string, now time.Time) (core.Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[key]
	if !ok || !r.ExpiresAt.After(now) || !r.Deadline.After(now) {
		return core.Record{}, false, nil
	}
	return clone(r), true, nil
}

func (m *Memory) saveLocked(rec core.Record) bool {
	old, ok := m.rows[rec.Key]
	if ok && (old.Version > rec.Version || old.Version == rec.Version && old.ExpiresAt.After(rec.ExpiresAt)) {
		return false
	}
	if ok && rec.Base != 0 && old.Version > rec.Base &&
		(rec.UnsyncedFrom == 0 || old.Version < rec.UnsyncedFrom || old.Version > rec.UnsyncedTo) {
		return false // a change rec was not built on
	}
	rec = clone(rec)
	rec.Base, rec.UnsyncedFrom, rec.UnsyncedTo = 0, 0, 0
	rec.ExpiresAt = rec.ExpiresAt.Truncate(time.Millisecond)
	rec.Deadline = rec.Deadline.Truncate(time.Millisecond)
	m.rows[rec.Key] = rec
	return true
}

// Save implements core.Durable.
func (m *Memory) Save(_ context.Context, rec core.Record) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saveLocked(rec), nil
}

// Delete implements core.Durable.
func (m *Memory) Delete(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.rows, k)
	}
	return nil
}

// DeleteSubject implements core.Durable.
func (m *Memory) DeleteSubject(_ context.Context, subject string) ([]string, error) {
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

// ListSubject implements core.Durable.
func (m *Memory) ListSubject(_ context.Context, subject string, now time.Time, limit int) ([]core.Record, error) {
	if limit < 1 {
		return nil, errors.New("durabletest: memory: limit must be at least 1")
	}
	if subject == "" {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []core.Record
	for _, r := range m.rows {
		if r.Subject == subject && r.ExpiresAt.After(now) && r.Deadline.After(now) {
			out = append(out, clone(r))
		}
	}
	slices.SortFunc(out, func(a, b core.Record) int { return strings.Compare(a.Key, b.Key) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// List implements core.Durable.
func (m *Memory) List(_ context.Context, now time.Time, after string, limit int) ([]core.Record, error) {
	if limit < 1 {
		return nil, errors.New("durabletest: memory: limit must be at least 1")
	}
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

// Reap implements core.Durable. It holds no lock while judge runs, so
// concurrent saves land and Reap must notice them.
func (m *Memory) Reap(ctx context.Context, now time.Time, limit int, judge core.ReapJudge) (int, error) {
	if limit < 1 {
		return 0, errors.New("durabletest: memory: limit must be at least 1")
	}
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
		return 0, fmt.Errorf("durabletest: memory: judge: %w", err)
	}
	if len(verdicts) != len(batch) {
		return 0, errors.New("durabletest: memory: wrong number of verdicts")
	}
	for i, v := range verdicts {
		if v.Keep && v.Record.Key != batch[i].Key {
			return 0, errors.New("durabletest: memory: kept record with another key")
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range batch {
		cur, ok := m.rows[r.Key]
		if !ok || cur.Version != r.Version || !cur.ExpiresAt.Equal(r.ExpiresAt) {
			continue // changed since it was claimed
		}
		if verdicts[i].Keep {
			kept := clone(verdicts[i].Record)
			kept.Base, kept.UnsyncedFrom, kept.UnsyncedTo = 0, 0, 0 // not stored
			m.rows[r.Key] = kept
		} else {
			delete(m.rows, r.Key)
		}
	}
	return len(batch), nil
}
