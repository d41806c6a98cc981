package scsstore

import (
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/hybridsession/hybridsession/core"
)

// memo remembers, per token, the entry Find read, so that the Commit of the
// same request can hand it to core.KV.Write without reading it again:
// the entry carries the memcached CAS id and the envelope's last-synced
// time, which the Store's sync rule needs. scs calls Find and Commit
// separately and gives the store nothing that ties them together but the
// token.
//
// It is bounded both ways: at most size tokens (the least recently
// remembered is dropped first) and each for at most maxAge of real time —
// an expirable LRU from hashicorp/golang-lru, which prunes aged entries in
// a background goroutine that lives as long as the process. Entries are
// kept without their payload (Commit replaces it), so a remembered token
// costs a couple of hundred bytes whatever the session's size. A forgotten
// entry is never an error: Commit reads the session again, one memcached
// round trip.
type memo struct {
	lru *expirable.LRU[string, core.KVItem] // nil: remember nothing
}

// newMemo returns a memo; a size of 0 or less remembers nothing.
func newMemo(size int, maxAge time.Duration) *memo {
	if size <= 0 {
		return &memo{}
	}
	return &memo{lru: expirable.NewLRU[string, core.KVItem](size, nil, maxAge)}
}

// put remembers e for token, without its payload, replacing what was
// remembered for token before.
func (m *memo) put(token string, e *core.KVItem) {
	if m.lru == nil {
		return
	}
	v := *e
	v.Value = nil
	m.lru.Add(token, v)
}

// take returns and forgets the entry remembered for token, or nil when
// none is, or it is older than maxAge. The caller owns the returned entry.
func (m *memo) take(token string) *core.KVItem {
	if m.lru == nil {
		return nil
	}
	e, ok := m.lru.Peek(token)
	m.lru.Remove(token)
	if !ok {
		return nil
	}
	return &e
}

// forget drops what is remembered for token.
func (m *memo) forget(token string) {
	if m.lru != nil {
		m.lru.Remove(token)
	}
}

// len returns how many tokens are remembered, aged ones not yet pruned
// included.
func (m *memo) len() int {
	if m.lru == nil {
		return 0
	}
	return m.lru.Len()
}
