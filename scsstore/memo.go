package scsstore

import (
	"sync"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// memo remembers, per token, the entry Find read, so that the Commit of the
// same request can hand it to core.Store.Update without reading it again:
// the entry carries the memcached CAS id and the envelope's last-synced
// time, which the Store's sync rule needs. scs calls Find and Commit
// separately and gives the store nothing that ties them together but the
// token.
//
// It is bounded both ways: at most size tokens (the least recently read is
// dropped first) and each for at most maxAge of real time. Entries are kept
// without their payload (Commit replaces it), so a remembered token costs a
// couple of hundred bytes whatever the session's size. A forgotten entry is
// never an error: Commit reads the session again, one memcached round trip.
type memo struct {
	mu     sync.Mutex
	size   int
	maxAge time.Duration
	items  map[string]*memoItem
	head   memoItem // sentinel: head.next is the oldest, head.prev the newest
	free   *memoItem
}

type memoItem struct {
	prev, next *memoItem
	token      string
	entry      core.Entry
	at         time.Time // when remembered, with a monotonic reading
}

// newMemo returns a memo; a size of 0 or less remembers nothing.
func newMemo(size int, maxAge time.Duration) *memo {
	m := &memo{size: max(size, 0), maxAge: maxAge, items: make(map[string]*memoItem)}
	m.head.prev, m.head.next = &m.head, &m.head
	return m
}

// put remembers e for token, without its payload, replacing what was
// remembered for token before.
func (m *memo) put(token string, e *core.Entry) {
	if m.size == 0 {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[token]
	if it != nil {
		m.unlink(it)
	} else {
		for len(m.items) >= m.size {
			m.drop(m.head.next)
		}
		it = m.free
		if it != nil {
			m.free = it.next
		} else {
			it = new(memoItem)
		}
		it.token = token
		m.items[token] = it
	}
	it.entry = *e
	it.entry.Payload = nil
	it.at = now
	// Link as the newest.
	it.prev, it.next = m.head.prev, &m.head
	m.head.prev.next = it
	m.head.prev = it
	// Drop what has aged out, oldest first, so an idle memo shrinks too.
	for o := m.head.next; o != &m.head && now.Sub(o.at) > m.maxAge; o = m.head.next {
		m.drop(o)
	}
}

// take returns and forgets the entry remembered for token, or nil when
// none is, or it is older than maxAge. The caller owns the returned entry.
func (m *memo) take(token string) *core.Entry {
	if m.size == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[token]
	if it == nil {
		return nil
	}
	fresh := time.Since(it.at) <= m.maxAge
	e := it.entry
	m.drop(it)
	if !fresh {
		return nil
	}
	return &e
}

// forget drops what is remembered for token.
func (m *memo) forget(token string) {
	if m.size == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if it := m.items[token]; it != nil {
		m.drop(it)
	}
}

// len returns how many tokens are remembered.
func (m *memo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

func (m *memo) unlink(it *memoItem) {
	it.prev.next = it.next
	it.next.prev = it.prev
	it.prev, it.next = nil, nil
}

// drop unlinks it, removes it from the map and keeps it for reuse.
func (m *memo) drop(it *memoItem) {
	m.unlink(it)
	delete(m.items, it.token)
	*it = memoItem{next: m.free}
	m.free = it
}
