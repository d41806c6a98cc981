package core

import (
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
