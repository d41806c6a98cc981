package core

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/memcachedtest"
)

func TestBasisBuiltOn(t *testing.T) {
	for _, c := range []struct {
		name string
		e    Entry
		row  uint64
		want bool
	}{
		{"the row it was synced to", Entry{Version: 10, SyncedVersion: 10}, 10, true},
		{"an older row", Entry{Version: 10, SyncedVersion: 10}, 7, true},
		{"a change it never saw", Entry{Version: 10, SyncedVersion: 10}, 11, false},
		{"its own unsynced change", Entry{Version: 14, SyncedVersion: 10, UnsyncedSince: 12}, 13, true},
		{"its newest change", Entry{Version: 14, SyncedVersion: 10, UnsyncedSince: 12}, 14, true},
		{"a change between its sync and its first unsynced one", Entry{Version: 14, SyncedVersion: 10, UnsyncedSince: 12}, 11, false},
		{"a change after its newest", Entry{Version: 14, SyncedVersion: 10, UnsyncedSince: 12}, 15, false},
		{"format 1: every change since the sync is its own", Entry{Version: 14, SyncedVersion: 10}, 12, true},
		{"format 1: after its newest", Entry{Version: 14, SyncedVersion: 10}, 15, false},
		{"never synced: no check", Entry{Version: 14}, 99, true},
	} {
		if got := basisOf(&c.e).builtOn(c.row); got != c.want {
			t.Errorf("%s: builtOn(%d) = %v, want %v", c.name, c.row, got, c.want)
		}
	}
}

// A change records itself as the first unsynced one and the changes after
// it keep it, synced or not, until the database has taken a sync: then the
// background writer moves SyncedVersion up to it (promote). The sync's
// record carries the basis: the confirmed version and the unsynced range.
func TestUnsyncedChangesTracked(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	var mu sync.Mutex
	now := time.Now().Truncate(time.Millisecond)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	rows := &recordingDurable{}
	s, err := NewStore(StoreConfig{
		Memcached:    MemcachedConfig{Servers: []string{mc.Addr}},
		Durable:      rows,
		SyncInterval: time.Minute,
		Clock:        clock,
		ReapMode:     ReapExternal,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	e := &Entry{Created: clock(), Deadline: clock().Add(time.Hour), IdleTimeout: 30 * time.Minute}
	if err := s.Insert(ctx, "tok", e, 0); err != nil {
		t.Fatal(err)
	}
	get := func() *Entry {
		t.Helper()
		got, err := s.Get(ctx, "tok")
		if err != nil || got == nil {
			t.Fatalf("Get: %v, %v", got, err)
		}
		return got
	}
	change := func() *Entry {
		t.Helper()
		advance(time.Millisecond)
		cur := get()
		cur.Payload = []byte{byte(cur.Version)}
		if err := s.Update(ctx, "tok", cur, WriteChanged); err != nil {
			t.Fatal(err)
		}
		return get()
	}
	first := get()
	if first.SyncedVersion != first.Version || first.UnsyncedSince != 0 {
		t.Fatalf("after Insert: version %d, synced %d, unsynced since %d", first.Version, first.SyncedVersion, first.UnsyncedSince)
	}
	a := change()
	if a.SyncedVersion != first.Version || a.UnsyncedSince != a.Version {
		t.Errorf("first unsynced change: synced %d (want %d), unsynced since %d (want %d)", a.SyncedVersion, first.Version, a.UnsyncedSince, a.Version)
	}
	b := change()
	if b.SyncedVersion != first.Version || b.UnsyncedSince != a.Version {
		t.Errorf("second unsynced change: synced %d (want %d), unsynced since %d (want %d)", b.SyncedVersion, first.Version, b.UnsyncedSince, a.Version)
	}
	rows.hold()
	advance(time.Minute)
	c := change() // due: its sync waits in the background writer
	if c.SyncedVersion != first.Version || c.UnsyncedSince != a.Version {
		t.Errorf("change whose sync the database has not taken: synced %d (want %d), unsynced since %d (want %d)",
			c.SyncedVersion, first.Version, c.UnsyncedSince, a.Version)
	}
	rows.release()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec := rows.last()
	if rec.Version != c.Version || rec.Base != first.Version || rec.UnsyncedFrom != a.Version || rec.UnsyncedTo != b.Version {
		t.Errorf("the sync's record: version %d base %d unsynced %d..%d; want %d base %d unsynced %d..%d",
			rec.Version, rec.Base, rec.UnsyncedFrom, rec.UnsyncedTo, c.Version, first.Version, a.Version, b.Version)
	}
	var row Entry
	if err := DecodeEnvelope(rec.Payload, &row); err != nil || rec.Payload[2] != envelopeFormat || row.UnsyncedSince != 0 {
		t.Errorf("the row's envelope: format %d, unsynced since %d (%v); want format 1", rec.Payload[2], row.UnsyncedSince, err)
	}
	if got := get(); got.SyncedVersion != c.Version || got.UnsyncedSince != 0 {
		t.Errorf("after the database took the sync: synced %d (want %d), unsynced since %d (want 0)", got.SyncedVersion, c.Version, got.UnsyncedSince)
	}
}

// recordingDurable keeps the last record saved; hold makes saves wait
// until release.
type recordingDurable struct {
	Durable
	mu   sync.Mutex
	rec  Record
	gate chan struct{}
}

func (r *recordingDurable) hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gate = make(chan struct{})
}

func (r *recordingDurable) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.gate)
	r.gate = nil
}

func (r *recordingDurable) Save(_ context.Context, rec Record) (bool, error) {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec = rec
	return true, nil
}

func (r *recordingDurable) Load(context.Context, string, time.Time) (Record, bool, error) {
	return Record{}, false, nil
}

func (r *recordingDurable) last() Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec
}
