package core

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"
)

// A tombstone or durable write held by the background writer is in
// memcached only; once the database answers again, the retry must come
// soon, since an app server that cannot read memcached's copy reads the
// older row until then (soak seed 400080: a logout held through a database
// outage landed 5s after it ended, and a replay of the old token was served
// from the row meanwhile).
func TestRetryBackoffIsCapped(t *testing.T) {
	if maxRetryBackoff > time.Second {
		t.Fatalf("maxRetryBackoff = %v; docs/consistency.md (I2) promises at most 1s", maxRetryBackoff)
	}
	prev := time.Duration(0)
	for attempts := 1; attempts <= 100; attempts++ {
		d := retryBackoff(attempts)
		switch {
		case d > maxRetryBackoff:
			t.Fatalf("retryBackoff(%d) = %v, above the cap %v", attempts, d, maxRetryBackoff)
		case d < prev:
			t.Fatalf("retryBackoff(%d) = %v, shorter than the attempt before (%v)", attempts, d, prev)
		case d <= 0:
			t.Fatalf("retryBackoff(%d) = %v: a failing database would be retried in a busy loop", attempts, d)
		}
		prev = d
	}
	if got := retryBackoff(1); got != 100*time.Millisecond {
		t.Errorf("retryBackoff(1) = %v, want 100ms", got)
	}
}

// A durable write being retried is held by the writer between its attempts
// as well as during them: while it is in flight it still takes its place,
// so whether a second durable write fits cannot depend on where the retry
// loop happens to be (TestDurableWriteNeverDroppedSilently failed so in a
// loaded run: the second write was held and acknowledged).
func TestSyncerLimitCountsInFlight(t *testing.T) {
	d := &scriptedDurable{started: make(chan string, 2), release: make(chan struct{}), failFirst: math.MaxInt}
	s := newSyncer(d, time.Now, 1, 1, time.Minute, time.Second, &counters{}, slog.New(slog.DiscardHandler))
	future := time.Now().Add(time.Hour)
	rec := func(key string) Record { return Record{Key: key, Version: 1, ExpiresAt: future, Deadline: future} }
	if !s.enqueue(rec("a"), true) {
		t.Fatal("the first durable write did not fit an empty writer")
	}
	if key := <-d.started; key != "a" {
		t.Fatalf("the worker saved %q, want a", key)
	}
	if s.enqueue(rec("b"), true) {
		t.Error("a second durable write was held while the first, in flight, filled the writer (SyncQueueSize 1)")
	}
	close(d.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.close(ctx); !errors.Is(err, ErrNotSaved) {
		t.Errorf("close = %v, want ErrNotSaved for the durable write the database refused", err)
	}
	if s.lost != 1 {
		t.Errorf("lost = %d, want 1", s.lost)
	}
}

// scriptedDurable is a durable tier whose saves signal started with their
// key and wait until release is closed (a hung database); the first
// failFirst saves then fail (refused), later ones succeed. The syncer uses
// only Save.
type scriptedDurable struct {
	Durable
	started   chan string
	release   chan struct{}
	failFirst int
	mu        sync.Mutex
	saves     int
}

func (d *scriptedDurable) Save(ctx context.Context, rec Record) (bool, error) {
	d.mu.Lock()
	d.saves++
	n := d.saves
	d.mu.Unlock()
	d.started <- rec.Key
	<-d.release
	if n <= d.failFirst {
		return false, errors.New("refused (test)")
	}
	return true, nil
}

// Flush after the database returns writes what the outage held: an attempt
// already running at the call may have met the database while it was still
// down, and its retry must not wait out the backoff (integration
// TestDeleteHeldUntilDatabaseReturns failed so in 1.7% of -race runs).
func TestFlushRetriesAttemptInFlightAtCall(t *testing.T) {
	d := &scriptedDurable{started: make(chan string, 4), release: make(chan struct{}), failFirst: 1}
	s := newSyncer(d, time.Now, 1, 10, time.Minute, time.Second, &counters{}, slog.New(slog.DiscardHandler))
	defer s.close(context.Background())
	future := time.Now().Add(time.Hour)
	s.enqueue(Record{Key: "a", Version: 1, ExpiresAt: future, Deadline: future}, true)
	<-d.started // the first attempt runs, against a database still down
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Once flush has noted the attempt, it fails; the database is back for
	// the next.
	testHookFlushing = func() { close(d.release) }
	defer func() { testHookFlushing = nil }()
	if err := s.flush(ctx); err != nil {
		t.Fatalf("flush = %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.saves != 2 {
		t.Errorf("flush returned after %d saves, want 2: the retry of the failed attempt was not waited for", d.saves)
	}
	if n := s.pendingCount(); n != 0 {
		t.Errorf("%d syncs still pending after flush, want 0", n)
	}
}
