// Package durabletest holds Memory, the in-memory durable tier for testing
// applications, and the conformance suite for implementations of
// durable.Tier, the durable (database) tier of hybridsession.
//
// To test handlers that use sessions without memcached or a database, build
// the Store on NewMemory alone: every session then lives in the Memory, and
// nothing needs starting (docs/testing.md):
//
//	store, err := core.NewStore(core.StoreConfig{Durable: durabletest.NewMemory()})
//
// Every implementation of durable.Tier runs the suite from its own tests,
// once per database it supports:
//
//	func TestDurable(t *testing.T) {
//		durabletest.Run(t, func(t *testing.T) durable.Tier {
//			return newEmptyStore(t) // a fresh, empty store; cleaned up by t.Cleanup
//		})
//	}
//
// The suite only uses the methods of durable.Tier and the standard library.
// The only time it passes is Reap's now, so it does not depend on the clock
// of the database server.
package durabletest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
)

// Run runs the conformance suite as subtests of t. newDurable is called once
// per subtest and must return a fresh, empty store; it should register any
// cleanup (closing connections, dropping tables) with t.Cleanup and call
// t.Fatal or t.Skip when it cannot provide a store.
//
// The subtests do not call t.Parallel. Several of them start goroutines that
// use the store concurrently; the two that race a Write with a Reap give it
// 300 ms each on purpose. A call that hangs for 30 seconds (60 for the tests
// of parallel reapers) fails the subtest with a message naming the call.
func Run(t *testing.T, newDurable func(t *testing.T) durable.Tier) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, d durable.Tier)
	}{
		{"Load/Missing", testLoadMissing},
		{"Load/RoundTrip", testLoadRoundTrip},
		{"Load/EveryState", testLoadEveryState},
		{"Load/KeysAreCaseSensitive", testKeysCaseSensitive},
		{"Write/InsertIfAbsent", testWriteInsertIfAbsent},
		{"Write/Conditional", testWriteConditional},
		{"Write/Batch", testWriteBatch},
		{"Write/LargeBatch", testWriteLargeBatch},
		{"Write/ConcurrentSameBase", testWriteConcurrent},
		{"Write/OverlappingBatches", testWriteOverlapping},
		{"List/Empty", testListEmpty},
		{"List/All", testListAll},
		{"List/Subject", testListSubject},
		{"List/Paging", testListPaging},
		{"List/InvalidLimit", testListInvalidLimit},
		{"Reap/NothingExpired", testReapNothingExpired},
		{"Reap/OldestFirst", testReapOldestFirst},
		{"Reap/Verdicts", testReapVerdicts},
		{"Reap/JudgeError", testReapJudgeError},
		{"Reap/WrongVerdictCount", testReapWrongVerdictCount},
		{"Reap/BadKeptRecord", testReapBadKept},
		{"Reap/InvalidLimit", testReapInvalidLimit},
		{"Reap/RacingWriteAndDelete", testReapRaceDelete},
		{"Reap/RacingWriteAndKeep", testReapRaceKeep},
		{"Reap/ParallelReapers", testReapParallel},
		{"Reap/ParallelWithWriters", testReapWithWriters},
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

// Bounds of the waits in the tests.
const (
	callTimeout     = 30 * time.Second       // a call that takes longer is reported as a hang
	parallelTimeout = 60 * time.Second       // the whole of a test of parallel reapers
	raceGrace       = 300 * time.Millisecond // how long a judge lets a racing Write run
)

// base returns the "now" of a test: the current time to the millisecond, so
// that the times derived from it survive a round trip exactly.
func base() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// noJudge is a judge that fails the test when it is called.
func noJudge(t *testing.T) durable.Judge {
	return func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		t.Errorf("judge called with %d rows, want no call: %q", len(batch), keysOf(batch))
		return make([]durable.Verdict, len(batch)), nil
	}
}

// allDead is a judge that deletes every row (the zero Verdict is
// durable.Delete).
func allDead(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
	return make([]durable.Verdict, len(batch)), nil
}

// record returns a record for key name at version, with a binary payload
// naming both.
func record(name string, version uint64, expiresAt, deadline time.Time, subject string) durable.Record {
	return durable.Record{
		Key:       Key(name),
		Payload:   fmt.Appendf(nil, "payload of %s at version %d\x00\xff", name, version),
		Version:   version,
		ExpiresAt: expiresAt,
		Deadline:  deadline,
		Subject:   subject,
	}
}

// writeOf returns the write of rec built on the version before its own:
// an insert for version 1.
func writeOf(rec durable.Record) durable.Write {
	return durable.Write{Record: rec, Base: rec.Version - 1}
}

// diff describes how got differs from want, or returns "" when they are equal
// field by field (times compared as instants).
func diff(got, want durable.Record) string {
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

// keysOf returns the keys of recs, in order.
func keysOf(recs []durable.Record) []string {
	keys := make([]string, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	return keys
}

// byKey sorts recs in Key (byte) order.
func byKey(recs []durable.Record) {
	slices.SortFunc(recs, func(a, b durable.Record) int { return strings.Compare(a.Key, b.Key) })
}

// within runs fn and fails the test if it does not return within limit.
// fn runs in another goroutine: it must not call t.Fatal.
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

// load returns what d.Load finds under key, failing t on an error.
func load(t *testing.T, d durable.Tier, key string) (durable.Record, bool) {
	t.Helper()
	var (
		rec   durable.Record
		found bool
		err   error
	)
	within(t, callTimeout, "Load", func() { rec, found, err = d.Load(t.Context(), key) })
	if err != nil {
		t.Fatalf("Load(%q): %v", key, err)
	}
	return rec, found
}

// write returns d.Write's applied flags for batch, failing t on an error.
func write(t *testing.T, d durable.Tier, batch ...durable.Write) []bool {
	t.Helper()
	var (
		applied []bool
		err     error
	)
	within(t, callTimeout, fmt.Sprintf("Write of %d rows", len(batch)), func() { applied, err = d.Write(t.Context(), batch) })
	if err != nil {
		t.Fatalf("Write of %d rows: %v", len(batch), err)
	}
	if len(applied) != len(batch) {
		t.Fatalf("Write of %d rows returned %d applied flags", len(batch), len(applied))
	}
	return applied
}

// list returns d.List's page, failing t on an error.
func list(t *testing.T, d durable.Tier, subject, after string, limit int) []durable.Record {
	t.Helper()
	var (
		page []durable.Record
		err  error
	)
	within(t, callTimeout, "List", func() { page, err = d.List(t.Context(), subject, after, limit) })
	if err != nil {
		t.Fatalf("List(subject %q, after %q, limit %d): %v", subject, after, limit, err)
	}
	if len(page) > limit {
		t.Fatalf("List(subject %q, after %q, limit %d) returned %d rows", subject, after, limit, len(page))
	}
	return page
}

// listAll returns every row of subject ("" for all), by paging through List.
func listAll(t *testing.T, d durable.Tier, subject string) []durable.Record {
	t.Helper()
	var all []durable.Record
	after := ""
	for range 100000 {
		page := list(t, d, subject, after, 100)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Key
	}
	t.Fatal("List never returned an empty page")
	return nil
}

// reap runs d.Reap, failing t if it hangs.
func reap(t *testing.T, d durable.Tier, now time.Time, limit int, judge durable.Judge) (int, error) {
	t.Helper()
	var (
		n   int
		err error
	)
	within(t, callTimeout, "Reap", func() { n, err = d.Reap(t.Context(), now, limit, judge) })
	return n, err
}

// mustReap runs d.Reap and fails t unless it claims want rows without error.
func mustReap(t *testing.T, d durable.Tier, now time.Time, limit int, judge durable.Judge, want int) {
	t.Helper()
	n, err := reap(t, d, now, limit, judge)
	if err != nil || n != want {
		t.Fatalf("Reap(now %s, limit %d) = %d, %v; want %d, nil", now.Format(time.RFC3339Nano), limit, n, err, want)
	}
}

// mustStore brings each of recs into d at its Version (at least 1): it
// inserts them, then writes them again, one version at a time, in batches.
func mustStore(t *testing.T, d durable.Tier, recs ...durable.Record) {
	t.Helper()
	top := uint64(0)
	for _, r := range recs {
		if r.Version == 0 {
			t.Fatalf("durabletest: record %q at version 0", r.Key)
		}
		top = max(top, r.Version)
	}
	for v := uint64(1); v <= top; v++ {
		var batch []durable.Write
		for _, r := range recs {
			if r.Version >= v {
				r.Version = v
				batch = append(batch, writeOf(r))
			}
		}
		for i, ok := range write(t, d, batch...) {
			if !ok {
				t.Fatalf("Write(%q, version %d, base %d) over the previous step: applied = false, want true",
					batch[i].Key, batch[i].Version, batch[i].Base)
			}
		}
	}
}

// wantStored fails unless Load finds exactly want.
func wantStored(t *testing.T, d durable.Tier, want durable.Record) {
	t.Helper()
	got, found := load(t, d, want.Key)
	if !found {
		t.Fatalf("Load(%q): found = false, want the row at version %d", want.Key, want.Version)
	}
	if s := diff(got, want); s != "" {
		t.Fatalf("Load(%q): %s", want.Key, s)
	}
}

// wantMissing fails unless Load reports no row for key.
func wantMissing(t *testing.T, d durable.Tier, key string) {
	t.Helper()
	if got, found := load(t, d, key); found {
		t.Fatalf("Load(%q): found version %d, want not found", key, got.Version)
	}
}

// wantApplied fails unless applied is want.
func wantApplied(t *testing.T, batch []durable.Write, applied, want []bool) {
	t.Helper()
	wrong := 0
	for i := range want {
		if applied[i] != want[i] {
			wrong++
			t.Errorf("write %d (key %q, version %d, base %d): applied = %v, want %v",
				i, batch[i].Key, batch[i].Version, batch[i].Base, applied[i], want[i])
		}
		if wrong == 10 {
			break
		}
	}
	if wrong > 0 {
		t.FailNow()
	}
}

func testLoadMissing(t *testing.T, d durable.Tier) {
	now := base()
	wantMissing(t, d, Key("missing"))
	mustStore(t, d, record("other", 1, now.Add(time.Hour), now.Add(2*time.Hour), ""))
	wantMissing(t, d, Key("missing"))
	wantMissing(t, d, "")
}

// roundTripCases returns records that stress every column: binary and
// large payloads, empty values, times in another zone and below the
// millisecond or before 1970, a subject of the maximum length.
func roundTripCases(now time.Time) (cases, stored []durable.Record) {
	allBytes := []byte{0}
	for i := range 256 {
		allBytes = append(allBytes, byte(i), byte(255-i))
	}
	allBytes = append(allBytes, 0, 0xff)
	large := make([]byte, 64<<10)
	x := uint32(2463534242)
	for i := range large {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		large[i] = byte(x)
	}
	zone := time.FixedZone("UTC+05:30", 5*3600+30*60)
	hour, day := now.Add(time.Hour), now.Add(24*time.Hour)
	cases = []durable.Record{
		{Key: Key("binary"), Payload: allBytes, Version: 1, ExpiresAt: hour, Deadline: day, Subject: "user-1"},
		{Key: Key("64KiB"), Payload: large, Version: 2, ExpiresAt: hour, Deadline: day, Subject: "user-2"},
		{Key: Key("empty subject"), Payload: []byte("p"), Version: 1, ExpiresAt: hour, Deadline: day},
		{Key: Key("empty payload"), Payload: []byte{}, Version: 3, ExpiresAt: hour, Deadline: day, Subject: "user-4"},
		{Key: Key("another zone"), Payload: []byte("zone"), Version: 1, Subject: "user-5",
			ExpiresAt: now.Add(time.Hour + 123*time.Millisecond).In(zone), Deadline: now.Add(25*time.Hour + 999*time.Millisecond).In(zone)},
		{Key: Key("below the millisecond"), Payload: []byte("ns"), Version: 1, Subject: "user-6",
			ExpiresAt: hour.Add(999*time.Microsecond + 999), Deadline: day.Add(time.Nanosecond)},
		{Key: Key("before 1970"), Payload: []byte("old"), Version: 1, Subject: "user-7",
			ExpiresAt: time.Date(1969, 12, 31, 23, 59, 59, 999_900_000, time.UTC), Deadline: time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC)},
		{Key: Key("long subject"), Payload: []byte("s"), Version: 1, ExpiresAt: hour, Deadline: day, Subject: strings.Repeat("0123456789abcdef", 16)[:255]},
		{Key: Key("UTF-8 subject"), Payload: []byte("u"), Version: 1, ExpiresAt: hour, Deadline: day, Subject: "Zoë 東京 ✓"},
	}
	for _, r := range cases {
		r.ExpiresAt = r.ExpiresAt.Truncate(time.Millisecond)
		r.Deadline = r.Deadline.Truncate(time.Millisecond)
		stored = append(stored, r)
	}
	return cases, stored
}

func testLoadRoundTrip(t *testing.T, d durable.Tier) {
	now := base()
	cases, want := roundTripCases(now)
	mustStore(t, d, cases...)
	for i := range cases {
		got, found := load(t, d, cases[i].Key)
		if !found {
			t.Fatalf("Load(%q): not found", cases[i].Key)
		}
		if s := diff(got, want[i]); s != "" {
			t.Errorf("round trip of %q: %s", cases[i].Key, s)
		}
	}
	// A write replaces every column: each row takes the next one's values.
	batch := make([]durable.Write, len(cases))
	for i := range cases {
		next := cases[(i+1)%len(cases)]
		next.Key, next.Version = cases[i].Key, cases[i].Version+1
		batch[i] = writeOf(next)
	}
	wantApplied(t, batch, write(t, d, batch...), slices.Repeat([]bool{true}, len(batch)))
	for i := range cases {
		next := want[(i+1)%len(want)]
		next.Key, next.Version = want[i].Key, want[i].Version+1
		wantStored(t, d, next)
	}
}

// testLoadEveryState checks that Load returns rows whatever their times:
// liveness is the Store's decision, from the payload.
func testLoadEveryState(t *testing.T, d durable.Tier) {
	now := base()
	recs := []durable.Record{
		record("live", 1, now.Add(time.Hour), now.Add(2*time.Hour), "user"),
		record("expires now", 1, now, now.Add(time.Hour), "user"),
		record("expired", 2, now.Add(-time.Millisecond), now.Add(time.Hour), "user"),
		record("expired long ago", 1, now.Add(-30*24*time.Hour), now.Add(time.Hour), ""),
		record("past deadline", 1, now.Add(time.Hour), now.Add(-time.Minute), "user"),
		record("at the Unix epoch", 1, time.UnixMilli(0).UTC(), time.UnixMilli(0).UTC(), ""),
		{Key: Key("tombstone"), Payload: []byte("destroyed\x00"), Version: 3,
			ExpiresAt: now.Add(-time.Hour), Deadline: now.Add(-time.Hour), Subject: "user"},
	}
	mustStore(t, d, recs...)
	for _, r := range recs {
		wantStored(t, d, r)
	}
}

func testKeysCaseSensitive(t *testing.T, d durable.Tier) {
	now := base()
	lower := record("case", 1, now.Add(time.Hour), now.Add(2*time.Hour), "")
	upper := lower
	upper.Key = swapCase(lower.Key)
	upper.Payload = []byte("the other row")
	if upper.Key == lower.Key {
		t.Fatal("test key has no letters")
	}
	mustStore(t, d, lower, upper)
	wantStored(t, d, lower)
	wantStored(t, d, upper)
	next := upper
	next.Version, next.Payload = 2, []byte("the other row, written again")
	wantApplied(t, []durable.Write{writeOf(next)}, write(t, d, writeOf(next)), []bool{true})
	wantStored(t, d, next)
	wantStored(t, d, lower)
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

func testWriteInsertIfAbsent(t *testing.T, d durable.Tier) {
	now := base()
	first := record("insert", 1, now.Add(time.Hour), now.Add(2*time.Hour), "user-a")
	wantApplied(t, []durable.Write{writeOf(first)}, write(t, d, writeOf(first)), []bool{true})
	wantStored(t, d, first)

	// Another insert of the key, with other values: refused, alone or in a
	// batch with an insert that applies.
	second := record("insert", 1, now.Add(3*time.Hour), now.Add(4*time.Hour), "user-b")
	second.Payload = []byte("the second insert")
	wantApplied(t, []durable.Write{writeOf(second)}, write(t, d, writeOf(second)), []bool{false})
	other := record("insert-other", 1, now.Add(time.Hour), now.Add(2*time.Hour), "user-b")
	batch := []durable.Write{writeOf(second), writeOf(other)}
	wantApplied(t, batch, write(t, d, batch...), []bool{false, true})
	wantStored(t, d, first)
	wantStored(t, d, other)
}

func testWriteConditional(t *testing.T, d durable.Tier) {
	now := base()
	dl := now.Add(24 * time.Hour)
	v := func(name string, version, base uint64, tag string) durable.Write {
		r := record(name, version, now.Add(time.Duration(len(tag))*time.Minute), dl.Add(time.Duration(len(tag))*time.Millisecond), "user-"+tag)
		r.Payload = append(r.Payload, tag...)
		return durable.Write{Record: r, Base: base}
	}
	steps := []struct {
		name    string
		w       durable.Write
		applied bool
	}{
		{"insert", v("cond", 1, 0, "a"), true},
		{"on the stored version", v("cond", 2, 1, "bb"), true},
		{"on a stale version", v("cond", 2, 1, "ccc"), false},
		{"on a version not reached", v("cond", 4, 3, "dddd"), false},
		{"insert over the row", v("cond", 1, 0, "e"), false},
		{"on the stored version again", v("cond", 3, 2, "ff"), true},
		{"retry of the applied write", v("cond", 3, 2, "ff"), false},
		{"on a missing row", v("cond-missing", 2, 1, "g"), false},
		{"on a missing row, far ahead", v("cond-missing", 8, 7, "h"), false},
	}
	stored := map[string]durable.Record{}
	for _, s := range steps {
		applied := write(t, d, s.w)
		if applied[0] != s.applied {
			t.Fatalf("%s: Write(version %d, base %d) over version %d: applied = %v, want %v",
				s.name, s.w.Version, s.w.Base, stored[s.w.Key].Version, applied[0], s.applied)
		}
		if applied[0] {
			stored[s.w.Key] = s.w.Record
		}
		if want, ok := stored[s.w.Key]; ok {
			wantStored(t, d, want)
		} else {
			wantMissing(t, d, s.w.Key)
		}
	}
}

// testWriteBatch checks that each write of a batch applies on its own
// condition and that the flags come back in the batch's order.
func testWriteBatch(t *testing.T, d durable.Tier) {
	now := base()
	rec := func(name string, version uint64) durable.Record {
		return record(name, version, now.Add(time.Hour), now.Add(2*time.Hour), "user-"+name)
	}
	refused := func(r durable.Record) durable.Record {
		r.Payload = append(r.Payload, " (refused)"...)
		return r
	}
	old := []durable.Record{rec("b", 1), rec("c", 1), rec("d", 3), rec("g", 2)}
	mustStore(t, d, old...)
	batch := []durable.Write{
		writeOf(rec("g", 3)),          // on the stored version
		writeOf(rec("a", 1)),          // insert
		writeOf(refused(rec("b", 1))), // insert over a row
		writeOf(rec("c", 2)),          // on the stored version
		writeOf(refused(rec("d", 3))), // on a stale version
		writeOf(rec("e", 2)),          // on a missing row
		writeOf(rec("f", 1)),          // insert
	}
	want := []bool{true, true, false, true, false, false, true}
	wantApplied(t, batch, write(t, d, batch...), want)
	for _, r := range []durable.Record{rec("g", 3), rec("a", 1), old[0], rec("c", 2), old[2], rec("f", 1)} {
		wantStored(t, d, r)
	}
	wantMissing(t, d, Key("e"))
	if got := write(t, d); len(got) != 0 {
		t.Fatalf("Write of an empty batch = %v, want no flags", got)
	}
}

// largeBatch is the length of the batches of testWriteLargeBatch: more
// rows than one statement of an implementation is likely to carry.
const largeBatch = 1200

func testWriteLargeBatch(t *testing.T, d durable.Tier) {
	now := base()
	rec := func(i int, version uint64, tag string) durable.Record {
		r := record(fmt.Sprint("large-", i), version, now.Add(time.Duration(i)*time.Millisecond), now.Add(time.Hour), fmt.Sprint("user-", i%10))
		r.Payload = append(r.Payload, tag...)
		return r
	}
	want := make(map[string]durable.Record, 2*largeBatch)
	batch := make([]durable.Write, largeBatch)
	for i := range batch {
		batch[i] = writeOf(rec(i, 1, ""))
		want[batch[i].Key] = batch[i].Record
	}
	wantApplied(t, batch, write(t, d, batch...), slices.Repeat([]bool{true}, largeBatch))

	// Over the same rows, a third of the writes on the stored version, a
	// third on a stale one and a third inserts; and an insert of a new key
	// after every sixth.
	batch, flags := batch[:0], []bool(nil)
	for i := range largeBatch {
		var w durable.Write
		switch i % 3 {
		case 0:
			w = writeOf(rec(i, 2, " written"))
			want[w.Key] = w.Record
		case 1:
			w = writeOf(rec(i, 3, " on a stale version"))
		case 2:
			w = writeOf(rec(i, 1, " inserted again"))
		}
		batch, flags = append(batch, w), append(flags, i%3 == 0)
		if i%6 == 5 {
			w = writeOf(rec(largeBatch+i, 1, " new"))
			want[w.Key] = w.Record
			batch, flags = append(batch, w), append(flags, true)
		}
	}
	wantApplied(t, batch, write(t, d, batch...), flags)
	all := listAll(t, d, "")
	if len(all) != len(want) {
		t.Fatalf("List returned %d rows after the batches, want %d", len(all), len(want))
	}
	for _, got := range all {
		if s := diff(got, want[got.Key]); s != "" {
			t.Fatalf("row %q after the batches: %s", got.Key, s)
		}
	}
}

// writeAll runs the batches concurrently, one goroutine each, started
// together, and returns their applied flags.
func writeAll(t *testing.T, d durable.Tier, batches [][]durable.Write) [][]bool {
	t.Helper()
	applied := make([][]bool, len(batches))
	errs := make([]error, len(batches))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			applied[i], errs[i] = d.Write(t.Context(), b)
			if errs[i] == nil && len(applied[i]) != len(b) {
				errs[i] = fmt.Errorf("Write of %d rows returned %d applied flags", len(b), len(applied[i]))
			}
		}()
	}
	close(start)
	within(t, callTimeout, fmt.Sprintf("%d concurrent Writes", len(batches)), wg.Wait)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return applied
}

// testWriteConcurrent checks that of several writes of one key on the same
// base, started together, exactly one applies.
func testWriteConcurrent(t *testing.T, d durable.Tier) {
	const writers = 8
	now := base()
	for round := range 4 {
		batches := make([][]durable.Write, writers)
		for w := range batches {
			r := record("concurrent", uint64(round+1), now.Add(time.Duration(w)*time.Minute), now.Add(time.Hour), fmt.Sprint("writer-", w))
			r.Payload = fmt.Appendf(nil, "writer %d, round %d", w, round)
			batches[w] = []durable.Write{writeOf(r)}
		}
		var winners []int
		for w, applied := range writeAll(t, d, batches) {
			if applied[0] {
				winners = append(winners, w)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("%d concurrent writes on base %d: writers %v applied, want exactly one", writers, round, winners)
		}
		wantStored(t, d, batches[winners[0]][0].Record)
	}
}

// testWriteOverlapping checks that concurrent batches over the same
// rows, in different orders, each write atomic on its own, neither deadlock
// nor apply two writes on one base.
func testWriteOverlapping(t *testing.T, d durable.Tier) {
	const writers, rows = 4, 40
	now := base()
	var old []durable.Record
	for i := range rows {
		old = append(old, record(fmt.Sprint("overlap-", i), 1, now.Add(time.Hour), now.Add(2*time.Hour), "user"))
	}
	mustStore(t, d, old...)
	batches := make([][]durable.Write, writers)
	for w := range batches {
		for _, i := range rand.New(rand.NewPCG(uint64(w), 0)).Perm(rows) { // a different order per writer
			r := old[i]
			r.Version, r.Subject = 2, fmt.Sprint("writer-", w)
			r.Payload = fmt.Appendf(nil, "writer %d", w)
			batches[w] = append(batches[w], writeOf(r))
		}
	}
	winner := map[string]durable.Record{}
	for w, applied := range writeAll(t, d, batches) {
		for j, ok := range applied {
			key := batches[w][j].Key
			if _, dup := winner[key]; ok && dup {
				t.Fatalf("row %q: two writes on base 1 applied", key)
			}
			if ok {
				winner[key] = batches[w][j].Record
			}
		}
	}
	for _, r := range old {
		want, ok := winner[r.Key]
		if !ok {
			t.Fatalf("row %q: no write on base 1 applied, want one", r.Key)
		}
		wantStored(t, d, want)
	}
}

// listSubjects are the subjects of listFixture's rows: exact matching
// tells them all apart.
var listSubjects = []string{"alice", "bob", "", "Alice", "alice "}

// listFixture stores 30 rows of every state — live, expired, past their
// deadline, tombstones — under the subjects of listSubjects, and returns
// them in Key order.
func listFixture(t *testing.T, d durable.Tier, now time.Time) []durable.Record {
	t.Helper()
	states := []struct{ expires, deadline time.Duration }{
		{time.Hour, 2 * time.Hour},    // live
		{-time.Minute, time.Hour},     // expired
		{time.Hour, -time.Minute},     // past its deadline
		{-time.Hour, -time.Hour},      // a tombstone at the end of its life
		{0, 24 * time.Hour},           // expiring now
		{time.Millisecond, time.Hour}, // about to expire
	}
	var recs []durable.Record
	for i := range 30 {
		s := states[i%len(states)]
		r := record(fmt.Sprint("list-", i), uint64(1+i%2), now.Add(s.expires), now.Add(s.deadline), listSubjects[i%len(listSubjects)])
		recs = append(recs, r)
	}
	mustStore(t, d, recs...)
	byKey(recs)
	return recs
}

// wantRows fails unless got is want, row for row.
func wantRows(t *testing.T, what string, got, want []durable.Record) {
	t.Helper()
	if !slices.Equal(keysOf(got), keysOf(want)) {
		t.Fatalf("%s: keys =\n%q\nwant, in Key (byte) order,\n%q", what, keysOf(got), keysOf(want))
	}
	for i := range got {
		if s := diff(got[i], want[i]); s != "" {
			t.Fatalf("%s: row %d: %s", what, i, s)
		}
	}
}

func testListEmpty(t *testing.T, d durable.Tier) {
	now := base()
	for _, subject := range []string{"", "alice"} {
		if page := list(t, d, subject, "", 10); len(page) != 0 {
			t.Fatalf("List(subject %q) on an empty store returned %q", subject, keysOf(page))
		}
	}
	r := record("only", 1, now.Add(time.Hour), now.Add(2*time.Hour), "bob")
	mustStore(t, d, r)
	for _, c := range []struct{ subject, after string }{{"alice", ""}, {"", r.Key}, {"bob", r.Key}, {"", r.Key + "~"}} {
		if page := list(t, d, c.subject, c.after, 10); len(page) != 0 {
			t.Fatalf("List(subject %q, after %q) returned %q, want nothing", c.subject, c.after, keysOf(page))
		}
	}
}

func testListAll(t *testing.T, d durable.Tier) {
	now := base()
	all := listFixture(t, d, now)
	wantRows(t, "List(\"\", \"\", 1000)", list(t, d, "", "", 1000), all)
	// Rows after a key that is not stored, and after a stored one.
	wantRows(t, "List after a key not stored", list(t, d, "", all[10].Key+"~", 1000), all[11:])
	wantRows(t, "List after a stored key", list(t, d, "", all[10].Key, 1000), all[11:])
	wantRows(t, "List with a limit", list(t, d, "", all[3].Key, 4), all[4:8])
}

func testListSubject(t *testing.T, d durable.Tier) {
	now := base()
	all := listFixture(t, d, now)
	for _, subject := range listSubjects {
		if subject == "" {
			continue // "" lists every row
		}
		var want []durable.Record
		for _, r := range all {
			if r.Subject == subject {
				want = append(want, r)
			}
		}
		wantRows(t, fmt.Sprintf("List(subject %q)", subject), list(t, d, subject, "", 1000), want)
		wantRows(t, fmt.Sprintf("List(subject %q, after its first row)", subject), list(t, d, subject, want[0].Key, 1000), want[1:])
	}
	for _, subject := range []string{"nobody", "alic", "ALICE", "alice  "} {
		if page := list(t, d, subject, "", 1000); len(page) != 0 {
			t.Fatalf("List(subject %q) returned %q, want nothing", subject, keysOf(page))
		}
	}
}

func testListPaging(t *testing.T, d durable.Tier) {
	now := base()
	all := listFixture(t, d, now)
	for _, subject := range []string{"", "alice"} {
		var want []string
		for _, r := range all {
			if subject == "" || r.Subject == subject {
				want = append(want, r.Key)
			}
		}
		for _, limit := range []int{1, 5, len(want) - 1, len(want), len(want) + 1} {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(want)+1 {
					t.Fatalf("List(subject %q, limit %d) still returning rows after %d pages", subject, limit, pages)
				}
				page := list(t, d, subject, after, limit)
				if len(page) == 0 {
					break
				}
				if len(page) < limit && len(got)+len(page) < len(want) {
					t.Fatalf("List(subject %q, after %q, limit %d) returned %d rows before the end", subject, after, limit, len(page))
				}
				for _, r := range page {
					if r.Key <= after {
						t.Fatalf("List(subject %q, after %q) returned key %q, not after it", subject, after, r.Key)
					}
					after = r.Key
					got = append(got, r.Key)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("paging with subject %q, limit %d returned\n%q\nwant every row once, in Key order\n%q", subject, limit, got, want)
			}
		}
	}
}

func testListInvalidLimit(t *testing.T, d durable.Tier) {
	now := base()
	mustStore(t, d, record("limit", 1, now.Add(time.Hour), now.Add(2*time.Hour), "alice"))
	for _, subject := range []string{"", "alice"} {
		for _, limit := range []int{0, -1} {
			var err error
			within(t, callTimeout, "List", func() { _, err = d.List(t.Context(), subject, "", limit) })
			if err == nil {
				t.Errorf("List(subject %q, limit %d): err = nil, want an error", subject, limit)
			}
		}
	}
}

func testReapNothingExpired(t *testing.T, d durable.Tier) {
	now := base()
	mustReap(t, d, now, 10, noJudge(t), 0)
	recs := []durable.Record{
		record("reap-live-1", 1, now.Add(time.Millisecond), now.Add(time.Hour), ""),
		record("reap-live-2", 2, now.Add(time.Hour), now.Add(2*time.Hour), "user"),
		// Reap looks at ExpiresAt only: a passed Deadline alone is no claim.
		record("reap-past-deadline", 3, now.Add(time.Hour), now.Add(-time.Hour), ""),
	}
	mustStore(t, d, recs...)
	mustReap(t, d, now, 10, noJudge(t), 0)
	for _, r := range recs {
		wantStored(t, d, r)
	}
}

func testReapOldestFirst(t *testing.T, d durable.Tier) {
	now := base()
	var expired []durable.Record
	for _, i := range []int{7, 2, 9, 0, 5, 3, 8, 1, 6, 4} { // stored out of order
		expired = append(expired, record(fmt.Sprint("reap-", i), uint64(1+i%3), now.Add(-time.Duration(10-i)*time.Minute), now.Add(time.Hour), fmt.Sprint("user-", i)))
	}
	expired = append(expired, record("reap-expires-now", 1, now, now.Add(time.Hour), ""))
	live := []durable.Record{
		record("reap-live-1", 1, now.Add(time.Millisecond), now.Add(time.Hour), ""),
		record("reap-live-2", 1, now.Add(time.Hour), now.Add(2*time.Hour), ""),
	}
	mustStore(t, d, expired...)
	mustStore(t, d, live...)
	want := slices.Clone(expired)
	slices.SortStableFunc(want, func(a, b durable.Record) int { return a.ExpiresAt.Compare(b.ExpiresAt) })

	var judged []durable.Record
	judge := func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		if len(batch) == 0 || len(batch) > 4 {
			t.Errorf("judge called with %d rows, want 1 to 4", len(batch))
		}
		judged = append(judged, slices.Clone(batch)...)
		return make([]durable.Verdict, len(batch)), nil
	}
	mustReap(t, d, now, 4, judge, 4)
	wantRows(t, "the first batch, oldest first", judged, want[:4])
	for _, r := range want[:4] {
		wantMissing(t, d, r.Key)
	}
	for _, r := range want[4:] {
		wantStored(t, d, r)
	}
	mustReap(t, d, now, 4, judge, 4)
	mustReap(t, d, now, 4, judge, 3)
	mustReap(t, d, now, 4, noJudge(t), 0)
	wantRows(t, "the rows judged, oldest first", judged, want)
	for _, r := range live {
		wantStored(t, d, r)
	}
}

// keepVerdict returns a durable.Keep verdict for r: r at the next version with
// a new payload, times and subject.
func keepVerdict(r durable.Record, expiresAt time.Time) durable.Verdict {
	kept := r
	kept.Payload = append([]byte{0, 0xff, 0x80}, r.Payload...)
	kept.Payload = append(kept.Payload, 0, 0xfe)
	kept.Version = r.Version + 1
	kept.ExpiresAt = expiresAt
	kept.Deadline = r.Deadline.Add(time.Millisecond)
	kept.Subject = "kept"
	return durable.Verdict{Action: durable.Keep, Record: kept}
}

func testReapVerdicts(t *testing.T, d durable.Tier) {
	now := base()
	var recs []durable.Record
	for i := range 9 {
		recs = append(recs, record(fmt.Sprint("verdict-", i), uint64(1+i%2), now.Add(-time.Duration(9-i)*time.Minute), now.Add(time.Hour), "user"))
	}
	mustStore(t, d, recs...)
	verdicts := map[string]durable.Verdict{}
	judge := func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		out := make([]durable.Verdict, len(batch))
		for i, r := range batch {
			switch i % 3 {
			case 1:
				out[i] = keepVerdict(r, now.Add(30*time.Minute+7*time.Millisecond))
			case 2:
				out[i] = durable.Verdict{Action: durable.Leave, Record: r} // Record is ignored
				out[i].Record.Payload = []byte("not written")
			}
			verdicts[r.Key] = out[i]
		}
		return out, nil
	}
	mustReap(t, d, now, 10, judge, len(recs))
	var left []durable.Record
	for _, r := range recs {
		switch v := verdicts[r.Key]; v.Action {
		case durable.Delete:
			wantMissing(t, d, r.Key)
		case durable.Keep:
			wantStored(t, d, v.Record)
		case durable.Leave:
			wantStored(t, d, r)
			left = append(left, r)
		}
	}
	// The rows left are handed out again; the kept ones only once they
	// expire again; and a kept row is an ordinary row to Write.
	var judged []durable.Record
	mustReap(t, d, now, 10, func(ctx context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		judged = append(judged, batch...)
		return allDead(ctx, batch)
	}, len(left))
	wantRows(t, "the batch after durable.Leave", judged, left)
	kept := verdicts[recs[1].Key].Record
	next := kept
	next.Version++
	next.Payload = []byte("written after the reaper kept it")
	wantApplied(t, []durable.Write{writeOf(next)}, write(t, d, writeOf(next)), []bool{true})
	wantStored(t, d, next)
	mustReap(t, d, now.Add(time.Hour), 10, allDead, 3)
}

// expiredRows stores n rows named prefix-0 ... that expired before now,
// at version 2, and returns them.
func expiredRows(t *testing.T, d durable.Tier, now time.Time, prefix string, n int) []durable.Record {
	t.Helper()
	var recs []durable.Record
	for i := range n {
		recs = append(recs, record(fmt.Sprint(prefix, "-", i), 2, now.Add(-time.Duration(n-i)*time.Minute), now.Add(time.Hour), ""))
	}
	mustStore(t, d, recs...)
	return recs
}

// wantUnchanged fails unless every row of recs is stored as it is, and
// Reap hands them all out again (no claim outlived a failed Reap).
func wantUnchanged(t *testing.T, d durable.Tier, now time.Time, recs []durable.Record) {
	t.Helper()
	for _, r := range recs {
		wantStored(t, d, r)
	}
	mustReap(t, d, now, 100, allDead, len(recs))
}

func testReapJudgeError(t *testing.T, d durable.Tier) {
	now := base()
	recs := expiredRows(t, d, now, "judge-error", 5)
	boom := errors.New("durabletest: judge failed")
	calls := 0
	judge := func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		calls++
		// Verdicts that would change every row if they were applied.
		v := make([]durable.Verdict, len(batch))
		for i, r := range batch {
			if i%2 == 0 {
				v[i] = keepVerdict(r, now.Add(time.Hour))
			}
		}
		return v, boom
	}
	_, err := reap(t, d, now, 10, judge)
	if !errors.Is(err, boom) {
		t.Fatalf("Reap with a failing judge: err = %v, want it to wrap the judge's error", err)
	}
	if calls != 1 {
		t.Fatalf("judge called %d times, want 1", calls)
	}
	wantUnchanged(t, d, now, recs)
}

func testReapWrongVerdictCount(t *testing.T, d durable.Tier) {
	now := base()
	recs := expiredRows(t, d, now, "wrong-count", 3)
	for _, extra := range []int{-1, 1, -3} {
		_, err := reap(t, d, now, 10, func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
			return make([]durable.Verdict, len(batch)+extra), nil
		})
		if err == nil {
			t.Fatalf("Reap with a judge returning %+d verdicts: err = nil, want an error", extra)
		}
	}
	wantUnchanged(t, d, now, recs)
}

// testReapBadKept checks that a kept Record under another key, or at a
// version other than the claimed one's plus one, aborts the batch.
func testReapBadKept(t *testing.T, d durable.Tier) {
	now := base()
	recs := expiredRows(t, d, now, "bad-kept", 3)
	bad := map[string]func(r durable.Record) durable.Record{
		"another row's key":   func(r durable.Record) durable.Record { r.Key = recs[2].Key; return r },
		"a key not stored":    func(r durable.Record) durable.Record { r.Key = Key("not stored"); return r },
		"the claimed version": func(r durable.Record) durable.Record { r.Version--; return r },
		"a version skipped":   func(r durable.Record) durable.Record { r.Version++; return r },
		"an older version":    func(r durable.Record) durable.Record { r.Version -= 2; return r },
	}
	for name, mutate := range bad {
		_, err := reap(t, d, now, 10, func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
			v := make([]durable.Verdict, len(batch))
			v[0] = keepVerdict(batch[0], now.Add(time.Hour)) // valid
			v[1] = keepVerdict(batch[1], now.Add(time.Hour))
			v[1].Record = mutate(v[1].Record)
			return v, nil
		})
		if err == nil {
			t.Fatalf("Reap keeping a record with %s: err = nil, want an error", name)
		}
		for _, r := range recs {
			wantStored(t, d, r)
		}
	}
	wantUnchanged(t, d, now, recs)
}

func testReapInvalidLimit(t *testing.T, d durable.Tier) {
	now := base()
	recs := expiredRows(t, d, now, "invalid-limit", 2)
	for _, limit := range []int{0, -1} {
		if _, err := reap(t, d, now, limit, noJudge(t)); err == nil {
			t.Errorf("Reap(limit %d): err = nil, want an error", limit)
		}
	}
	wantUnchanged(t, d, now, recs)
}

// raceWrite starts a Write of w in another goroutine, while a judge runs,
// and waits up to raceGrace for it: long enough for the Write to land when
// nothing holds it back, and short when it waits for a row lock the
// reaper holds, as it may. landed reports whether it returned in that
// time; wait returns its applied flag once it has.
func raceWrite(t *testing.T, d durable.Tier, w durable.Write) (landed bool, wait func() bool) {
	type result struct {
		applied []bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		applied, err := d.Write(context.WithoutCancel(t.Context()), []durable.Write{w})
		done <- result{applied, err}
	}()
	var res *result
	select {
	case r := <-done:
		res = &r
	case <-time.After(raceGrace):
	}
	return res != nil, func() bool {
		t.Helper()
		if res == nil {
			select {
			case r := <-done:
				res = &r
			case <-time.After(callTimeout):
				t.Fatalf("Write racing with Reap did not return within %s after Reap returned", callTimeout)
			}
		}
		if res.err != nil || len(res.applied) != 1 {
			t.Fatalf("Write racing with Reap = %v, %v", res.applied, res.err)
		}
		return res.applied[0]
	}
}

// reapRace stores old, expired, and reaps it with a judge that returns
// verdict while a Write built on old races in. The first to land wins: a
// Write that returns while the judge runs must have applied, and the
// verdict must leave its row alone; a Write held back until the verdict
// applied (by a row lock) is then refused, its base being gone.
func reapRace(t *testing.T, d durable.Tier, now time.Time, old durable.Record, verdict durable.Verdict) {
	t.Helper()
	mustStore(t, d, old)
	raced := old
	raced.Version++
	raced.Payload = []byte("written while the reaper judged")
	raced.ExpiresAt = now.Add(time.Hour)
	var landed bool
	var wait func() bool
	judge := func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		if len(batch) != 1 || diff(batch[0], old) != "" {
			return nil, fmt.Errorf("durabletest: unexpected batch %q", keysOf(batch))
		}
		landed, wait = raceWrite(t, d, writeOf(raced))
		return []durable.Verdict{verdict}, nil
	}
	mustReap(t, d, now, 10, judge, 1)
	applied := wait()
	t.Logf("the racing Write returned while the judge ran: %v; applied: %v", landed, applied)
	switch {
	case applied:
		wantStored(t, d, raced)
	case landed:
		t.Fatal("a Write built on the claimed row returned while the judge ran, refused: it must apply, and the verdict give way")
	case verdict.Action == durable.Keep:
		wantStored(t, d, verdict.Record)
	default:
		wantMissing(t, d, old.Key)
	}
	mustReap(t, d, now, 10, noJudge(t), 0)
}

func testReapRaceDelete(t *testing.T, d durable.Tier) {
	now := base()
	old := record("race-delete", 3, now.Add(-time.Minute), now.Add(time.Hour), "user")
	reapRace(t, d, now, old, durable.Verdict{Action: durable.Delete})
}

func testReapRaceKeep(t *testing.T, d durable.Tier) {
	now := base()
	old := record("race-keep", 3, now.Add(-time.Minute), now.Add(time.Hour), "user")
	reapRace(t, d, now, old, keepVerdict(old, now.Add(30*time.Minute)))
}

// reapAll runs reapers goroutines that call Reap until it claims no row
// or fails, and returns how many rows they claimed in all.
func reapAll(t *testing.T, d durable.Tier, now time.Time, reapers, limit int, judge durable.Judge) int {
	t.Helper()
	var mu sync.Mutex
	var claimed int
	var errs []error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range reapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				n, err := d.Reap(t.Context(), now, limit, judge)
				mu.Lock()
				claimed += n
				errs = append(errs, err)
				mu.Unlock()
				if n == 0 || err != nil {
					return
				}
			}
		}()
	}
	close(start)
	within(t, parallelTimeout, fmt.Sprintf("%d parallel reapers", reapers), wg.Wait)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return claimed
}

func testReapParallel(t *testing.T, d durable.Tier) {
	const rows, limit = 300, 20
	now := base()
	want := make(map[string]bool, rows)
	var recs []durable.Record
	for i := range rows {
		r := record(fmt.Sprint("parallel-", i), 1, now.Add(-time.Duration(rows-i)*time.Second), now.Add(time.Hour), fmt.Sprint("user-", i%7))
		recs = append(recs, r)
		want[r.Key] = true
	}
	mustStore(t, d, recs...)
	var mu sync.Mutex
	seen := make(map[string]int, rows)
	judge := func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		mu.Lock()
		for _, r := range batch {
			seen[r.Key]++
		}
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // widen the window in which reapers overlap
		if len(batch) == 0 || len(batch) > limit {
			return nil, fmt.Errorf("durabletest: judge called with %d rows, want 1 to %d", len(batch), limit)
		}
		return make([]durable.Verdict, len(batch)), nil
	}
	if claimed := reapAll(t, d, now, 3, limit, judge); claimed != rows {
		t.Errorf("the reapers claimed %d rows in all, want %d", claimed, rows)
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
	if left := listAll(t, d, ""); len(left) != 0 {
		t.Errorf("%d rows left after the reapers finished, want 0 (first %q)", len(left), left[0].Key)
	}
	mustReap(t, d, now, limit, noJudge(t), 0)
}

// rewrite loads the row under key and writes it again on its version.
// When the write applies, a Load right after must find it or a later
// version: a verdict on a claim older than the write must not replace it.
func rewrite(ctx context.Context, d durable.Tier, key, tag string) error {
	cur, found, err := d.Load(ctx, key)
	if err != nil || !found {
		return fmt.Errorf("Load(%q) = %v, %v; want the row", key, found, err)
	}
	next := cur
	next.Version++
	next.Payload = []byte(tag)
	next.ExpiresAt = cur.ExpiresAt.Add(time.Millisecond) // still expired
	applied, err := d.Write(ctx, []durable.Write{writeOf(next)})
	if err != nil || len(applied) != 1 {
		return fmt.Errorf("Write(%q, version %d) = %v, %v", key, next.Version, applied, err)
	}
	if !applied[0] {
		return nil // a reaper or the other writer came first
	}
	got, found, err := d.Load(ctx, key)
	if err != nil || !found || got.Version < next.Version || got.Version == next.Version && !bytes.Equal(got.Payload, next.Payload) {
		return fmt.Errorf("Write(%q, version %d, payload %q) applied, then Load = version %d, payload %q, %v, %v",
			key, next.Version, next.Payload, got.Version, got.Payload, found, err)
	}
	return nil
}

// testReapWithWriters runs writers that rewrite expired rows while reapers
// claim the same rows again and again (every verdict keeps its row,
// expired still): nothing may fail or deadlock, and no verdict may
// replace a write that applied after the claim.
func testReapWithWriters(t *testing.T, d durable.Tier) {
	const rows, writers, passes = 30, 2, 3
	now := base()
	recs := expiredRows(t, d, now, "with-writers", rows)
	judge := func(_ context.Context, batch []durable.Record) ([]durable.Verdict, error) {
		v := make([]durable.Verdict, len(batch))
		for i, r := range batch {
			v[i] = keepVerdict(r, r.ExpiresAt.Add(time.Millisecond))
		}
		return v, nil
	}
	errs := make(chan error, writers+2)
	progress := make(chan struct{}, 1) // a write was made: the reapers may go on
	stopReapers := startReapers(t, d, now, 2, judge, progress, errs)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pass := range passes {
				for _, r := range recs {
					if err := rewrite(t.Context(), d, r.Key, fmt.Sprintf("writer %d, pass %d", w, pass)); err != nil {
						errs <- err
						return
					}
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	within(t, parallelTimeout, "writers racing with reapers", func() { wg.Wait(); stopReapers() })
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// startReapers starts n goroutines that each call Reap once per value
// received from progress, and send their first error to errs. The
// function it returns stops them and waits for them.
func startReapers(t *testing.T, d durable.Tier, now time.Time, n int, judge durable.Judge, progress <-chan struct{}, errs chan<- error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-progress:
				}
				if _, err := d.Reap(t.Context(), now, 10, judge); err != nil {
					errs <- fmt.Errorf("Reap: %w", err)
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
