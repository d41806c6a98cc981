// Package durabletest is the conformance suite for implementations of
// core.Durable, the durable (database) tier of hybridsession.
//
// Every implementation runs it from its own tests, once per database it
// supports:
//
//	func TestDurable(t *testing.T) {
//		durabletest.Run(t, func(t *testing.T) core.Durable {
//			return newEmptyStore(t) // a fresh, empty store; cleaned up by t.Cleanup
//		})
//	}
//
// The suite only uses the methods of core.Durable and the standard library.
// It passes explicit times to Load, List and Reap, so it does not depend on
// the wall clock of the database server.
package durabletest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// Run runs the conformance suite as subtests of t. newDurable is called once
// per subtest and must return a fresh, empty store; it should register any
// cleanup (closing connections, dropping tables) with t.Cleanup and call
// t.Fatal or t.Skip when it cannot provide a store.
//
// The subtests do not call t.Parallel. Several of them start goroutines that
// use the store concurrently, and the slowest waits about a second in total on
// purpose; a subtest that hangs for 30 seconds (60 for the parallel reapers)
// fails with a message naming the call that did not return.
func Run(t *testing.T, newDurable func(t *testing.T) core.Durable) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, d core.Durable)
	}{
		{"Load/Missing", testLoadMissing},
		{"Load/Expired", testLoadExpired},
		{"Load/RoundTrip", testLoadRoundTrip},
		{"Load/KeysAreCaseSensitive", testKeysCaseSensitive},
		{"Save/Conditional", testSaveConditional},
		{"Save/Concurrent", testSaveConcurrent},
		{"Save/Base", testSaveBase},
		{"Delete", testDelete},
		{"DeleteSubject", testDeleteSubject},
		{"ListSubject", testListSubject},
		{"List/Empty", testListEmpty},
		{"List/LiveRowsInKeyOrder", testListLive},
		{"List/Paging", testListPaging},
		{"Reap/NothingExpired", testReapNothingExpired},
		{"Reap/OldestFirst", testReapOldestFirst},
		{"Reap/Verdicts", testReapVerdicts},
		{"Reap/JudgeError", testReapJudgeError},
		{"Reap/WrongVerdictCount", testReapWrongVerdictCount},
		{"Reap/ConcurrentSaveBeatsDelete", testReapConcurrentSaveDead},
		{"Reap/ConcurrentSaveBeatsKeep", testReapConcurrentSaveKeep},
		{"Reap/ParallelReapers", testReapParallel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDurable(t)
			if d == nil {
				t.Fatal("durabletest: newDurable returned nil")
			}
			tc.fn(t, d)
		})
	}
}

// Key returns a storage key shaped like the ones core uses: the base64url
// (no padding) SHA-256 of name, 43 bytes. Equal names give equal keys.
func Key(name string) string {
	sum := sha256.Sum256([]byte(name))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Bounds of the waits in the concurrency tests.
const (
	callTimeout     = 30 * time.Second       // a call that takes longer is reported as a hang
	parallelTimeout = 60 * time.Second       // the whole parallel-reapers test
	raceGrace       = 300 * time.Millisecond // how long a judge lets a racing Save run
)

// base returns the "now" of a test: the current time to the millisecond, so
// that the times derived from it survive a round trip exactly.
func base() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// record returns a record for key name with a payload naming its version.
func record(name string, version uint64, expiresAt, deadline time.Time, subject string) core.Record {
	return core.Record{
		Key:       Key(name),
		Payload:   []byte(fmt.Sprintf("payload of %s at version %d\x00\xff", name, version)),
		Version:   version,
		ExpiresAt: expiresAt,
		Deadline:  deadline,
		Subject:   subject,
	}
}

// diff describes how got differs from want, or returns "" when they are equal
// field by field (times compared as instants).
func diff(got, want core.Record) string {
	var d []string
	if got.Key != want.Key {
		d = append(d, fmt.Sprintf("Key = %q, want %q", got.Key, want.Key))
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		d = append(d, fmt.Sprintf("Payload = %s, want %s", describe(got.Payload), describe(want.Payload)))
	}
	if got.Version != want.Version {
		d = append(d, fmt.Sprintf("Version = %d, want %d", got.Version, want.Version))
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		d = append(d, fmt.Sprintf("ExpiresAt = %s, want %s", got.ExpiresAt.Format(time.RFC3339Nano), want.ExpiresAt.Format(time.RFC3339Nano)))
	}
	if !got.Deadline.Equal(want.Deadline) {
		d = append(d, fmt.Sprintf("Deadline = %s, want %s", got.Deadline.Format(time.RFC3339Nano), want.Deadline.Format(time.RFC3339Nano)))
	}
	if got.Subject != want.Subject {
		d = append(d, fmt.Sprintf("Subject = %q, want %q", got.Subject, want.Subject))
	}
	return strings.Join(d, "; ")
}

// describe summarises a payload for a failure message.
func describe(b []byte) string {
	const show = 16
	if len(b) <= show {
		return fmt.Sprintf("%d bytes %x", len(b), b)
	}
	return fmt.Sprintf("%d bytes %x...", len(b), b[:show])
}

func mustSave(t *testing.T, d core.Durable, recs ...core.Record) {
	t.Helper()
	for _, rec := range recs {
		applied, err := d.Save(t.Context(), rec)
		if err != nil {
			t.Fatalf("Save(%q, version %d): %v", rec.Key, rec.Version, err)
		}
		if !applied {
			t.Fatalf("Save(%q, version %d) into an empty slot: applied = false, want true", rec.Key, rec.Version)
		}
	}
}

// wantStored fails unless Load at now finds exactly want.
func wantStored(t *testing.T, d core.Durable, now time.Time, want core.Record) {
	t.Helper()
	got, found, err := d.Load(t.Context(), want.Key, now)
	if err != nil {
		t.Fatalf("Load(%q): %v", want.Key, err)
	}
	if !found {
		t.Fatalf("Load(%q): found = false, want the row with version %d", want.Key, want.Version)
	}
	if s := diff(got, want); s != "" {
		t.Fatalf("Load(%q): %s", want.Key, s)
	}
}

// wantMissing fails unless Load at now reports no row for key.
func wantMissing(t *testing.T, d core.Durable, now time.Time, key string) {
	t.Helper()
	got, found, err := d.Load(t.Context(), key, now)
	if err != nil {
		t.Fatalf("Load(%q): %v", key, err)
	}
	if found {
		t.Fatalf("Load(%q) at %s: found version %d (ExpiresAt %s, Deadline %s), want not found",
			key, now.Format(time.RFC3339Nano), got.Version,
			got.ExpiresAt.Format(time.RFC3339Nano), got.Deadline.Format(time.RFC3339Nano))
	}
}

// listAll returns every row live at now, by paging through List.
func listAll(t *testing.T, d core.Durable, now time.Time) []core.Record {
	t.Helper()
	var all []core.Record
	after := ""
	for range 100000 {
		page, err := d.List(t.Context(), now, after, 100)
		if err != nil {
			t.Fatalf("List(after %q): %v", after, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Key
	}
	t.Fatal("List never returned an empty page")
	return nil
}

// within runs fn and fails the test if it does not return within limit.
func within(t *testing.T, limit time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s did not return within %s: deadlock or lost wake-up", what, limit)
	}
}

// keysOf returns the keys of recs, in order.
func keysOf(recs []core.Record) []string {
	keys := make([]string, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	return keys
}

// noJudge is a judge that fails the test when it is called.
func noJudge(t *testing.T) core.ReapJudge {
	return func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
		t.Errorf("judge called with %d rows, want no call: %q", len(batch), keysOf(batch))
		return make([]core.Verdict, len(batch)), nil
	}
}

// allDead is a judge that declares every row dead.
func allDead(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
	return make([]core.Verdict, len(batch)), nil
}

func testLoadMissing(t *testing.T, d core.Durable) {
	now := base()
	wantMissing(t, d, now, Key("missing"))
	mustSave(t, d, record("other", 1, now.Add(time.Hour), now.Add(2*time.Hour), ""))
	wantMissing(t, d, now, Key("missing"))
	wantMissing(t, d, now, "")
}

func testLoadExpired(t *testing.T, d core.Durable) {
	now := base()
	later := now.Add(time.Hour)
	cases := []struct {
		name                string
		expiresAt, deadline time.Time
		found               bool
	}{
		{"expires at now", now, later, false},
		{"expired 1ms ago", now.Add(-time.Millisecond), later, false},
		{"expired 1h ago", now.Add(-time.Hour), later, false},
		{"deadline at now", later, now, false},
		{"deadline 1ms ago", later, now.Add(-time.Millisecond), false},
		{"both at now", now, now, false},
		{"expires in 1ms", now.Add(time.Millisecond), later, true},
		{"deadline in 1ms", later, now.Add(time.Millisecond), true},
	}
	for _, c := range cases {
		mustSave(t, d, record(c.name, 1, c.expiresAt, c.deadline, ""))
	}
	// Before either time passed every row is live: the rows are stored and
	// filtering uses the now argument, not a clock of its own.
	earlier := now.Add(-2 * time.Hour)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := record(c.name, 1, c.expiresAt, c.deadline, "")
			wantStored(t, d, earlier, want)
			if c.found {
				wantStored(t, d, now, want)
			} else {
				wantMissing(t, d, now, want.Key)
			}
		})
	}
}

func testLoadRoundTrip(t *testing.T, d core.Durable) {
	now := base()
	allBytes := make([]byte, 0, 514)
	allBytes = append(allBytes, 0)
	for i := range 256 {
		allBytes = append(allBytes, byte(i), byte(255-i))
	}
	allBytes = append(allBytes, 0)
	large := make([]byte, 64<<10)
	x := uint32(2463534242)
	for i := range large {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		large[i] = byte(x)
		if i%97 == 0 {
			large[i] = 0
		}
	}
	zone := time.FixedZone("UTC+05:30", 5*3600+30*60)
	cases := []core.Record{
		{Key: Key("binary"), Payload: allBytes, Version: 1, ExpiresAt: now.Add(time.Hour), Deadline: now.Add(24 * time.Hour), Subject: "user-1"},
		{Key: Key("64KiB"), Payload: large, Version: 2, ExpiresAt: now.Add(time.Hour), Deadline: now.Add(24 * time.Hour), Subject: "user-2"},
		{Key: Key("empty subject"), Payload: []byte("p"), Version: 3, ExpiresAt: now.Add(time.Hour), Deadline: now.Add(24 * time.Hour), Subject: ""},
		{Key: Key("empty payload"), Payload: []byte{}, Version: 4, ExpiresAt: now.Add(time.Hour), Deadline: now.Add(24 * time.Hour), Subject: "user-4"},
		{Key: Key("milliseconds"), Payload: []byte("ms"), Version: 5,
			ExpiresAt: now.Add(time.Hour + 123*time.Millisecond).In(zone),
			Deadline:  now.Add(24*time.Hour + 999*time.Millisecond).In(zone), Subject: "user-5"},
		{Key: Key("version beyond 32 bits"), Payload: []byte("v"), Version: 1<<40 + 7, ExpiresAt: now.Add(time.Hour), Deadline: now.Add(24 * time.Hour), Subject: "user-6"},
		{Key: Key("long subject"), Payload: []byte("s"), Version: 7, ExpiresAt: now.Add(time.Hour), Deadline: now.Add(24 * time.Hour), Subject: strings.Repeat("0123456789abcdef", 8)},
	}
	for _, rec := range cases {
		mustSave(t, d, rec)
	}
	for _, want := range cases {
		got, found, err := d.Load(t.Context(), want.Key, now)
		if err != nil {
			t.Fatalf("Load(%q): %v", want.Key, err)
		}
		if !found {
			t.Fatalf("Load(%q): not found", want.Key)
		}
		if s := diff(got, want); s != "" {
			t.Errorf("round trip of %q: %s", want.Key, s)
		}
	}
}

func testKeysCaseSensitive(t *testing.T, d core.Durable) {
	now := base()
	lower := record("case", 1, now.Add(time.Hour), now.Add(2*time.Hour), "")
	upper := lower
	upper.Key = swapCase(lower.Key)
	upper.Payload = []byte("the other row")
	upper.Version = 9
	if upper.Key == lower.Key {
		t.Fatal("test key has no letters")
	}
	mustSave(t, d, lower, upper)
	wantStored(t, d, now, lower)
	wantStored(t, d, now, upper)
	if err := d.Delete(t.Context(), upper.Key); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, d, now, upper.Key)
	wantStored(t, d, now, lower)
}

func swapCase(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return r
	}, s)
}

func testSaveConditional(t *testing.T, d core.Durable) {
	now := base()
	e := now.Add(time.Hour)
	dl := now.Add(24 * time.Hour)
	v := func(version uint64, expiresAt time.Time, tag string) core.Record {
		r := record("conditional", version, expiresAt, dl, "user-"+tag)
		r.Payload = append(r.Payload, tag...)
		r.Deadline = dl.Add(time.Duration(len(tag)) * time.Millisecond)
		return r
	}
	steps := []struct {
		name    string
		rec     core.Record
		applied bool
	}{
		{"insert", v(5, e, "a"), true},
		{"older version with later ExpiresAt", v(4, e.Add(time.Hour), "b"), false},
		{"much older version", v(1, e.Add(time.Hour), "c"), false},
		{"newer version with earlier ExpiresAt", v(6, e.Add(-10*time.Minute), "dd"), true},
		{"equal version with later ExpiresAt", v(6, e, "eee"), true},
		{"equal version with equal ExpiresAt", v(6, e, "f"), true},
		{"equal version with earlier ExpiresAt", v(6, e.Add(-time.Millisecond), "g"), false},
		{"equal version, idempotent retry", v(6, e, "f"), true},
		{"next version", v(7, e.Add(time.Millisecond), "h"), true},
		{"previous version with equal ExpiresAt", v(6, e.Add(time.Millisecond), "i"), false},
	}
	var stored core.Record
	for _, s := range steps {
		applied, err := d.Save(t.Context(), s.rec)
		if err != nil {
			t.Fatalf("%s: Save: %v", s.name, err)
		}
		if applied != s.applied {
			t.Fatalf("%s: Save(version %d, ExpiresAt %s) over version %d, ExpiresAt %s: applied = %v, want %v",
				s.name, s.rec.Version, s.rec.ExpiresAt.Format(time.RFC3339Nano),
				stored.Version, stored.ExpiresAt.Format(time.RFC3339Nano), applied, s.applied)
		}
		if applied {
			stored = s.rec
		}
		got, found, err := d.Load(t.Context(), stored.Key, now)
		if err != nil || !found {
			t.Fatalf("%s: Load: found = %v, err = %v", s.name, found, err)
		}
		if d := diff(got, stored); d != "" {
			t.Fatalf("%s: stored row: %s", s.name, d)
		}
	}
}

// testSaveBase checks core.Record.Base: a save over a row whose version is
// above Base and outside the record's unsynced range is refused, even when
// the version rule would take it, and leaves the row as it was; Base 0 turns
// the check off; an older record is refused whatever Base says; a missing
// row is inserted whatever Base says; and none of the three fields is
// stored.
func testSaveBase(t *testing.T, d core.Durable) {
	now := base()
	e := now.Add(time.Hour)
	dl := now.Add(24 * time.Hour)
	later := time.Hour // the refused saves carry a later ExpiresAt, so that the version rule alone would take them
	steps := []struct {
		name                    string
		key                     string // "" for the row most steps work on
		version, base, from, to uint64
		expires                 time.Duration // after e
		applied                 bool
	}{
		{"missing row, Base below the version", "", 10, 3, 0, 0, 0, true},
		{"missing row, outside the unsynced range", "other", 7, 1, 2, 3, 0, true},
		{"stored version equal to Base", "", 20, 10, 0, 0, 0, true},
		{"stored version below Base", "", 25, 22, 0, 0, 0, true},
		{"stored version just above Base", "", 40, 24, 0, 0, later, false},
		{"stored version far above Base", "", 40, 2, 0, 0, later, false},
		{"UnsyncedTo without UnsyncedFrom is no range", "", 40, 22, 0, 30, later, false},
		{"stored version just below the unsynced range", "", 40, 22, 26, 30, later, false},
		{"stored version just above the unsynced range", "", 40, 20, 21, 24, later, false},
		{"equal version and ExpiresAt, not built on", "", 25, 24, 0, 0, 0, false},
		{"equal version, later ExpiresAt, not built on", "", 25, 24, 0, 0, later, false},
		{"stored version at the start of the unsynced range", "", 30, 20, 25, 28, 0, true},
		{"stored version at the end of the unsynced range", "", 35, 28, 29, 30, 0, true},
		{"stored version is the one unsynced change", "", 36, 1, 35, 35, 0, true},
		{"Base 0 turns the check off", "", 50, 0, 0, 0, 0, true},
		{"Base 0 with a range that excludes the row", "", 55, 0, 1, 2, 0, true},
		{"older version, Base above the row", "", 45, 60, 0, 0, later, false},
		{"older version inside the unsynced range", "", 54, 1, 50, 60, later, false},
		{"equal version, earlier ExpiresAt, built on", "", 55, 60, 0, 0, -time.Millisecond, false},
		{"equal version, equal ExpiresAt, its own unsynced change", "", 55, 40, 55, 55, 0, true},
	}
	stored := map[string]core.Record{}
	for i, s := range steps {
		name := "base"
		if s.key != "" {
			name = "base-" + s.key
		}
		tag := string(rune('a' + i))
		rec := record(name, s.version, e.Add(s.expires), dl.Add(time.Duration(i)*time.Millisecond), "user-"+tag)
		rec.Payload = append(rec.Payload, tag...)
		rec.Base, rec.UnsyncedFrom, rec.UnsyncedTo = s.base, s.from, s.to
		old := stored[rec.Key]
		applied, err := d.Save(t.Context(), rec)
		if err != nil {
			t.Fatalf("%s: Save: %v", s.name, err)
		}
		if applied != s.applied {
			t.Fatalf("%s: Save(version %d, Base %d, unsynced %d..%d) over version %d: applied = %v, want %v",
				s.name, rec.Version, rec.Base, rec.UnsyncedFrom, rec.UnsyncedTo, old.Version, applied, s.applied)
		}
		want := old
		if applied {
			want = rec
			want.Base, want.UnsyncedFrom, want.UnsyncedTo = 0, 0, 0
			stored[rec.Key] = want
		}
		got, found, err := d.Load(t.Context(), rec.Key, now)
		if err != nil || !found {
			t.Fatalf("%s: Load: found = %v, err = %v", s.name, found, err)
		}
		if d := diff(got, want); d != "" {
			t.Fatalf("%s: stored row: %s", s.name, d)
		}
		if got.Base != 0 || got.UnsyncedFrom != 0 || got.UnsyncedTo != 0 {
			t.Fatalf("%s: Load returned Base %d, unsynced %d..%d: they are not stored",
				s.name, got.Base, got.UnsyncedFrom, got.UnsyncedTo)
		}
	}
}

func testSaveConcurrent(t *testing.T, d core.Durable) {
	const n = 50
	now := base()
	recs := make([]core.Record, n+1)
	for v := 1; v <= n; v++ {
		recs[v] = record("concurrent", uint64(v), now.Add(time.Hour+time.Duration(v)*time.Millisecond), now.Add(24*time.Hour), "user")
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var appliedLast bool
	for v := 1; v <= n; v++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			applied, err := d.Save(t.Context(), recs[v])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("Save(version %d): %w", v, err))
			}
			if v == n {
				appliedLast = applied
			}
		}()
	}
	close(start)
	within(t, callTimeout, "concurrent Save", wg.Wait)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if !appliedLast {
		t.Errorf("Save(version %d), the newest: applied = false, want true", n)
	}
	wantStored(t, d, now, recs[n])
}

func testDelete(t *testing.T, d core.Durable) {
	now := base()
	earlier := now.Add(-2 * time.Hour)
	var recs []core.Record
	for i := range 5 {
		recs = append(recs, record(fmt.Sprint("delete-", i), uint64(i+1), now.Add(time.Hour), now.Add(2*time.Hour), "user"))
	}
	recs[4].ExpiresAt = now.Add(-time.Hour) // expired, not yet reaped
	mustSave(t, d, recs...)

	if err := d.Delete(t.Context()); err != nil {
		t.Fatalf("Delete() with no keys: %v", err)
	}
	if err := d.Delete(t.Context(), Key("missing-1"), Key("missing-2")); err != nil {
		t.Fatalf("Delete of missing keys: %v", err)
	}
	for _, r := range recs {
		wantStored(t, d, earlier, r)
	}
	if err := d.Delete(t.Context(), recs[0].Key, Key("missing-1"), recs[1].Key, recs[4].Key, recs[1].Key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, r := range []core.Record{recs[0], recs[1], recs[4]} {
		wantMissing(t, d, earlier, r.Key)
	}
	for _, r := range recs[2:4] {
		wantStored(t, d, earlier, r)
	}
	if err := d.Delete(t.Context(), recs[0].Key); err != nil {
		t.Fatalf("Delete of a deleted key: %v", err)
	}
	// A deleted row leaves nothing behind: any version may be saved again.
	again := record("delete-0", 1, now.Add(time.Hour), now.Add(2*time.Hour), "")
	mustSave(t, d, again)
	wantStored(t, d, now, again)
}

func testDeleteSubject(t *testing.T, d core.Durable) {
	now := base()
	earlier := now.Add(-2 * time.Hour)
	live := func(name, subject string) core.Record {
		return record(name, 1, now.Add(time.Hour), now.Add(2*time.Hour), subject)
	}
	alice := []core.Record{
		live("alice-1", "alice"),
		live("alice-2", "alice"),
		record("alice-expired", 1, now.Add(-time.Hour), now.Add(2*time.Hour), "alice"),
		record("alice-past-deadline", 1, now.Add(time.Hour), now.Add(-time.Hour), "alice"),
	}
	others := []core.Record{
		live("Alice", "Alice"),
		live("alice2", "alice2"),
		live("alice-space", "alice "),
		live("lice", "lice"),
		live("bob", "bob"),
		live("anonymous-1", ""),
		live("anonymous-2", ""),
	}
	mustSave(t, d, alice...)
	mustSave(t, d, others...)

	keys, err := d.DeleteSubject(t.Context(), "alice")
	if err != nil {
		t.Fatalf("DeleteSubject(alice): %v", err)
	}
	got := slices.Sorted(slices.Values(keys))
	want := slices.Sorted(slices.Values(keysOf(alice)))
	if !slices.Equal(got, want) {
		t.Fatalf("DeleteSubject(alice) = %q, want %q", got, want)
	}
	for _, r := range alice {
		wantMissing(t, d, earlier, r.Key)
	}
	for _, r := range others {
		wantStored(t, d, earlier, r)
	}

	for _, subject := range []string{"alice", "", "nobody"} {
		keys, err := d.DeleteSubject(t.Context(), subject)
		if err != nil {
			t.Fatalf("DeleteSubject(%q): %v", subject, err)
		}
		if len(keys) != 0 {
			t.Fatalf("DeleteSubject(%q) = %q, want no keys", subject, keys)
		}
	}
	for _, r := range others {
		wantStored(t, d, earlier, r)
	}

	keys, err = d.DeleteSubject(t.Context(), "bob")
	if err != nil {
		t.Fatalf("DeleteSubject(bob): %v", err)
	}
	if !slices.Equal(keys, []string{Key("bob")}) {
		t.Fatalf("DeleteSubject(bob) = %q, want %q", keys, []string{Key("bob")})
	}
}

func testListSubject(t *testing.T, d core.Durable) {
	now := base()
	live := func(name, subject string) core.Record {
		return record(name, 1, now.Add(time.Hour), now.Add(2*time.Hour), subject)
	}
	alice := []core.Record{live("alice-1", "alice"), live("alice-2", "alice"), live("alice-3", "alice")}
	others := []core.Record{
		record("alice-expired", 1, now.Add(-time.Hour), now.Add(2*time.Hour), "alice"),
		record("alice-past-deadline", 1, now.Add(time.Hour), now.Add(-time.Hour), "alice"),
		live("Alice", "Alice"),
		live("alice-space", "alice "),
		live("bob", "bob"),
		live("anonymous", ""),
	}
	mustSave(t, d, alice...)
	mustSave(t, d, others...)

	got, err := d.ListSubject(t.Context(), "alice", now, 10)
	if err != nil {
		t.Fatalf("ListSubject(alice): %v", err)
	}
	want := slices.Sorted(slices.Values(keysOf(alice)))
	if !slices.Equal(keysOf(got), want) {
		t.Fatalf("ListSubject(alice) = %q, want %q in key order", keysOf(got), want)
	}
	for _, r := range got {
		i := slices.IndexFunc(alice, func(a core.Record) bool { return a.Key == r.Key })
		if d := diff(r, alice[i]); d != "" {
			t.Fatalf("ListSubject(alice) row %s: %s", r.Key, d)
		}
	}
	if got, err := d.ListSubject(t.Context(), "alice", now, 2); err != nil || !slices.Equal(keysOf(got), want[:2]) {
		t.Fatalf("ListSubject(alice, limit 2) = %q, %v; want %q", keysOf(got), err, want[:2])
	}
	for _, subject := range []string{"", "nobody"} {
		if got, err := d.ListSubject(t.Context(), subject, now, 10); err != nil || len(got) != 0 {
			t.Fatalf("ListSubject(%q) = %q, %v; want nothing", subject, keysOf(got), err)
		}
	}
	if _, err := d.ListSubject(t.Context(), "alice", now, 0); err == nil {
		t.Fatal("ListSubject with limit 0: no error")
	}
}

func testListEmpty(t *testing.T, d core.Durable) {
	page, err := d.List(t.Context(), base(), "", 10)
	if err != nil {
		t.Fatalf("List on an empty store: %v", err)
	}
	if len(page) != 0 {
		t.Fatalf("List on an empty store = %q, want nothing", keysOf(page))
	}
}

// listFixture stores 23 live rows and 6 dead ones and returns the live rows
// in Key order.
func listFixture(t *testing.T, d core.Durable, now time.Time) []core.Record {
	t.Helper()
	var live []core.Record
	for i := range 23 {
		r := record(fmt.Sprint("list-", i), uint64(i+1), now.Add(time.Duration(i+1)*time.Minute), now.Add(24*time.Hour), fmt.Sprint("user-", i%4))
		live = append(live, r)
	}
	dead := []core.Record{
		record("list-expires-now", 1, now, now.Add(time.Hour), ""),
		record("list-expired", 1, now.Add(-time.Minute), now.Add(time.Hour), ""),
		record("list-expired-long-ago", 1, now.Add(-time.Hour), now.Add(time.Hour), ""),
		record("list-deadline-now", 1, now.Add(time.Hour), now, ""),
		record("list-past-deadline", 1, now.Add(time.Hour), now.Add(-time.Minute), ""),
	}
	mustSave(t, d, dead...)
	mustSave(t, d, live...)
	slices.SortFunc(live, func(a, b core.Record) int { return strings.Compare(a.Key, b.Key) })
	return live
}

func testListLive(t *testing.T, d core.Durable) {
	now := base()
	live := listFixture(t, d, now)
	page, err := d.List(t.Context(), now, "", 1000)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Equal(keysOf(page), keysOf(live)) {
		t.Fatalf("List(after \"\", limit 1000) keys =\n%q\nwant the live rows in Key (byte) order =\n%q", keysOf(page), keysOf(live))
	}
	for i := range page {
		if s := diff(page[i], live[i]); s != "" {
			t.Errorf("List row %d: %s", i, s)
		}
	}
	// Rows after a key that is not stored.
	mid := live[10].Key + "~"
	page, err = d.List(t.Context(), now, mid, 1000)
	if err != nil {
		t.Fatalf("List(after %q): %v", mid, err)
	}
	if !slices.Equal(keysOf(page), keysOf(live[11:])) {
		t.Fatalf("List(after %q) = %q, want %q", mid, keysOf(page), keysOf(live[11:]))
	}
}

func testListPaging(t *testing.T, d core.Durable) {
	now := base()
	live := listFixture(t, d, now)
	for _, limit := range []int{1, 5, 23, 24} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(live)+1 {
					t.Fatalf("List still returning rows after %d pages", pages)
				}
				page, err := d.List(t.Context(), now, after, limit)
				if err != nil {
					t.Fatalf("List(after %q, limit %d): %v", after, limit, err)
				}
				if len(page) > limit {
					t.Fatalf("List(limit %d) returned %d rows", limit, len(page))
				}
				if len(page) == 0 {
					break
				}
				if len(page) < limit && len(got)+len(page) < len(live) {
					t.Fatalf("List(after %q, limit %d) returned %d rows before the end", after, limit, len(page))
				}
				for _, r := range page {
					if r.Key <= after {
						t.Fatalf("List(after %q) returned key %q, not after it", after, r.Key)
					}
					after = r.Key
					got = append(got, r.Key)
				}
			}
			if !slices.Equal(got, keysOf(live)) {
				t.Fatalf("paging with limit %d returned\n%q\nwant every live row once, in Key order\n%q", limit, got, keysOf(live))
			}
		})
	}
}

func testReapNothingExpired(t *testing.T, d core.Durable) {
	now := base()
	var n int
	var err error
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, 10, noJudge(t)) })
	if err != nil || n != 0 {
		t.Fatalf("Reap on an empty store = %d, %v; want 0, nil", n, err)
	}
	recs := []core.Record{
		record("reap-live-1", 1, now.Add(time.Millisecond), now.Add(time.Hour), ""),
		record("reap-live-2", 2, now.Add(time.Hour), now.Add(2*time.Hour), "user"),
		// Reap looks at ExpiresAt only: a passed Deadline alone is no claim.
		record("reap-past-deadline", 3, now.Add(time.Hour), now.Add(-time.Hour), ""),
	}
	mustSave(t, d, recs...)
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, 10, noJudge(t)) })
	if err != nil || n != 0 {
		t.Fatalf("Reap with no expired row = %d, %v; want 0, nil", n, err)
	}
	for _, r := range recs {
		wantStored(t, d, now.Add(-2*time.Hour), r)
	}
}

func testReapOldestFirst(t *testing.T, d core.Durable) {
	now := base()
	var expired []core.Record
	for _, i := range []int{7, 2, 9, 0, 5, 3, 8, 1, 6, 4} { // stored out of order
		expired = append(expired, record(fmt.Sprint("reap-", i), uint64(i+1), now.Add(-time.Duration(10-i)*time.Minute), now.Add(time.Hour), fmt.Sprint("user-", i)))
	}
	expired = append(expired, record("reap-expires-now", 1, now, now.Add(time.Hour), ""))
	live := []core.Record{
		record("reap-live-1", 1, now.Add(time.Millisecond), now.Add(time.Hour), ""),
		record("reap-live-2", 1, now.Add(time.Hour), now.Add(2*time.Hour), ""),
	}
	mustSave(t, d, expired...)
	mustSave(t, d, live...)
	want := slices.Clone(expired)
	slices.SortStableFunc(want, func(a, b core.Record) int { return a.ExpiresAt.Compare(b.ExpiresAt) })

	var judged []core.Record
	judge := func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
		if len(batch) == 0 || len(batch) > 4 {
			t.Errorf("judge called with %d rows, want 1 to 4", len(batch))
		}
		judged = append(judged, slices.Clone(batch)...)
		return make([]core.Verdict, len(batch)), nil
	}
	var n int
	var err error
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, 4, judge) })
	if err != nil || n != 4 {
		t.Fatalf("first Reap(limit 4) = %d, %v; want 4, nil", n, err)
	}
	if !slices.Equal(keysOf(judged), keysOf(want[:4])) {
		t.Fatalf("first batch = %q, want the 4 oldest rows, oldest first: %q", keysOf(judged), keysOf(want[:4]))
	}
	for i, r := range judged {
		if s := diff(r, want[i]); s != "" {
			t.Fatalf("batch row %d as handed to the judge: %s", i, s)
		}
	}
	for _, r := range want[:4] {
		wantMissing(t, d, now.Add(-time.Hour), r.Key)
	}
	for _, r := range want[4:] {
		wantStored(t, d, now.Add(-time.Hour), r)
	}

	total := n
	for range 10 {
		within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, 4, judge) })
		if err != nil {
			t.Fatalf("Reap: %v", err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if n != 0 {
		t.Fatal("Reap never returned 0")
	}
	if total != len(expired) {
		t.Errorf("Reap examined %d rows in all, want %d", total, len(expired))
	}
	if !slices.Equal(keysOf(judged), keysOf(want)) {
		t.Errorf("rows judged =\n%q\nwant every expired row once, oldest first =\n%q", keysOf(judged), keysOf(want))
	}
	for _, r := range live {
		wantStored(t, d, now, r)
	}
}

func testReapVerdicts(t *testing.T, d core.Durable) {
	now := base()
	earlier := now.Add(-2 * time.Hour)
	var recs []core.Record
	for i := range 6 {
		recs = append(recs, record(fmt.Sprint("verdict-", i), uint64(10+i), now.Add(-time.Duration(6-i)*time.Minute), now.Add(time.Hour), "user"))
	}
	mustSave(t, d, recs...)
	kept := map[string]core.Record{}
	judge := func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
		verdicts := make([]core.Verdict, len(batch))
		for i, r := range batch {
			if i%2 == 1 {
				continue
			}
			nr := r
			nr.Payload = append([]byte{0, 0xff, 0x80}, r.Payload...)
			nr.Payload = append(nr.Payload, 0, 0xfe)
			nr.Version = r.Version + 1
			nr.ExpiresAt = now.Add(30*time.Minute + 7*time.Millisecond)
			nr.Deadline = r.Deadline.Add(time.Millisecond)
			nr.Subject = "kept"
			kept[r.Key] = nr
			verdicts[i] = core.Verdict{Keep: true, Record: nr}
		}
		return verdicts, nil
	}
	var n int
	var err error
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, 10, judge) })
	if err != nil || n != len(recs) {
		t.Fatalf("Reap = %d, %v; want %d, nil", n, err, len(recs))
	}
	if len(kept) != 3 {
		t.Fatalf("judge kept %d rows, want 3", len(kept))
	}
	for _, r := range recs {
		if k, ok := kept[r.Key]; ok {
			wantStored(t, d, now, k)
		} else {
			wantMissing(t, d, earlier, r.Key)
		}
	}
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, 10, noJudge(t)) })
	if err != nil || n != 0 {
		t.Fatalf("Reap after the kept rows were extended = %d, %v; want 0, nil", n, err)
	}
	// The kept rows expire again later and are reaped then.
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now.Add(time.Hour), 10, allDead) })
	if err != nil || n != 3 {
		t.Fatalf("Reap an hour later = %d, %v; want 3, nil", n, err)
	}
}

func testReapJudgeError(t *testing.T, d core.Durable) {
	now := base()
	var recs []core.Record
	for i := range 5 {
		recs = append(recs, record(fmt.Sprint("judge-error-", i), 1, now.Add(-time.Duration(i+1)*time.Minute), now.Add(time.Hour), ""))
	}
	mustSave(t, d, recs...)
	boom := errors.New("durabletest: judge failed")
	calls := 0
	judge := func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
		calls++
		// Verdicts that would change every row if they were applied.
		v := make([]core.Verdict, len(batch))
		for i, r := range batch {
			if i%2 == 0 {
				r.Version++
				r.ExpiresAt = now.Add(time.Hour)
				v[i] = core.Verdict{Keep: true, Record: r}
			}
		}
		return v, boom
	}
	var err error
	within(t, callTimeout, "Reap", func() { _, err = d.Reap(t.Context(), now, 10, judge) })
	if !errors.Is(err, boom) {
		t.Fatalf("Reap with a failing judge: err = %v, want it to wrap the judge's error", err)
	}
	if calls != 1 {
		t.Fatalf("judge called %d times, want 1", calls)
	}
	for _, r := range recs {
		wantStored(t, d, now.Add(-time.Hour), r)
	}
	// Nothing stays claimed: the rows are handed out again.
	var n int
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, 10, allDead) })
	if err != nil || n != len(recs) {
		t.Fatalf("Reap after the failed batch = %d, %v; want %d, nil", n, err, len(recs))
	}
}

func testReapWrongVerdictCount(t *testing.T, d core.Durable) {
	now := base()
	var recs []core.Record
	for i := range 3 {
		recs = append(recs, record(fmt.Sprint("wrong-count-", i), 1, now.Add(-time.Duration(i+1)*time.Minute), now.Add(time.Hour), ""))
	}
	mustSave(t, d, recs...)
	for _, extra := range []int{-1, 1} {
		judge := func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
			return make([]core.Verdict, len(batch)+extra), nil
		}
		var err error
		within(t, callTimeout, "Reap", func() { _, err = d.Reap(t.Context(), now, 10, judge) })
		if err == nil {
			t.Fatalf("Reap with a judge returning %+d verdicts: err = nil, want an error", extra)
		}
		for _, r := range recs {
			wantStored(t, d, now.Add(-time.Hour), r)
		}
	}
}

// raceSave starts Save(rec) in a goroutine while a judge runs, gives it a
// short bounded time to finish (it may block on a row lock held by the
// reaper, which is fine) and returns a function that waits for its result.
func raceSave(t *testing.T, d core.Durable, rec core.Record) (wait func() bool) {
	type result struct {
		applied bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		applied, err := d.Save(context.WithoutCancel(t.Context()), rec)
		done <- result{applied, err}
	}()
	var res *result
	select {
	case r := <-done:
		res = &r
	case <-time.After(raceGrace):
	}
	return func() bool {
		t.Helper()
		if res == nil {
			select {
			case r := <-done:
				res = &r
			case <-time.After(callTimeout):
				t.Fatalf("Save racing with Reap did not return within %s after Reap returned", callTimeout)
			}
		}
		if res.err != nil {
			t.Fatalf("Save racing with Reap: %v", res.err)
		}
		return res.applied
	}
}

func testReapConcurrentSaveDead(t *testing.T, d core.Durable) {
	now := base()
	old := record("race-dead", 3, now.Add(-time.Minute), now.Add(time.Hour), "user")
	newer := record("race-dead", 4, now.Add(time.Hour), now.Add(time.Hour), "user")
	mustSave(t, d, old)
	var wait func() bool
	judge := func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
		if len(batch) != 1 || batch[0].Key != old.Key {
			return nil, fmt.Errorf("durabletest: unexpected batch %q", keysOf(batch))
		}
		wait = raceSave(t, d, newer) // a sync races in while the reaper decides
		return []core.Verdict{{Keep: false}}, nil
	}
	var n int
	var err error
	within(t, callTimeout, "Reap while a Save races", func() { n, err = d.Reap(t.Context(), now, 10, judge) })
	if err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1, nil", n, err)
	}
	if !wait() {
		t.Error("the racing Save of a newer version: applied = false, want true")
	}
	wantStored(t, d, now, newer)
}

func testReapConcurrentSaveKeep(t *testing.T, d core.Durable) {
	now := base()
	old := record("race-keep", 3, now.Add(-time.Minute), now.Add(time.Hour), "user")
	keep := record("race-keep", 4, now.Add(30*time.Minute), now.Add(time.Hour), "user")
	newer := record("race-keep", 6, now.Add(time.Hour), now.Add(time.Hour), "user")
	mustSave(t, d, old)
	var wait func() bool
	judge := func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
		if len(batch) != 1 || batch[0].Key != old.Key {
			return nil, fmt.Errorf("durabletest: unexpected batch %q", keysOf(batch))
		}
		wait = raceSave(t, d, newer)
		return []core.Verdict{{Keep: true, Record: keep}}, nil
	}
	var n int
	var err error
	within(t, callTimeout, "Reap while a Save races", func() { n, err = d.Reap(t.Context(), now, 10, judge) })
	if err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1, nil", n, err)
	}
	if !wait() {
		t.Error("the racing Save of a newer version: applied = false, want true")
	}
	wantStored(t, d, now, newer)
}

func testReapParallel(t *testing.T, d core.Durable) {
	const (
		rows    = 300
		reapers = 3
		limit   = 20
	)
	now := base()
	want := make(map[string]bool, rows)
	for i := range rows {
		r := record(fmt.Sprint("parallel-", i), 1, now.Add(-time.Duration(rows-i)*time.Second), now.Add(time.Hour), fmt.Sprint("user-", i%7))
		mustSave(t, d, r)
		want[r.Key] = true
	}

	var mu sync.Mutex
	seen := make(map[string]int, rows)
	var examined int
	var errs []error
	judge := func(_ context.Context, batch []core.Record) ([]core.Verdict, error) {
		mu.Lock()
		if len(batch) == 0 || len(batch) > limit {
			errs = append(errs, fmt.Errorf("judge called with %d rows, want 1 to %d", len(batch), limit))
		}
		for _, r := range batch {
			seen[r.Key]++
		}
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // let the reapers overlap
		return make([]core.Verdict, len(batch)), nil
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range reapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range rows {
				n, err := d.Reap(t.Context(), now, limit, judge)
				mu.Lock()
				examined += n
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
				if n == 0 || err != nil {
					return
				}
			}
		}()
	}
	close(start)
	within(t, parallelTimeout, "parallel reapers", wg.Wait)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if examined != rows {
		t.Errorf("the reapers examined %d rows in all, want %d", examined, rows)
	}
	for key, count := range seen {
		if !want[key] {
			t.Errorf("judge got unknown key %q", key)
		} else if count != 1 {
			t.Errorf("row %q was handed to a judge %d times, want once", key, count)
		}
	}
	if len(seen) != rows {
		t.Errorf("%d distinct rows were judged, want %d", len(seen), rows)
	}
	if left := listAll(t, d, now.Add(-time.Hour)); len(left) != 0 {
		t.Errorf("%d rows left after the reapers finished, want 0 (first %q)", len(left), left[0].Key)
	}
	var n int
	var err error
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, limit, noJudge(t)) })
	if err != nil || n != 0 {
		t.Fatalf("Reap after the parallel reapers = %d, %v; want 0, nil", n, err)
	}
}
