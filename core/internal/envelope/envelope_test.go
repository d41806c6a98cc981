package envelope

import (
	"bytes"
	"crypto/rand"
	"errors"
	"reflect"
	"testing"
	"time"
)

func sample() Envelope {
	at := time.UnixMilli(1_800_000_000_123)
	return Envelope{
		Codec: 3, Persistent: true, Unsynced: true, Lineage: 0xfeedface_cafebabe,
		Created: at, Deadline: at.Add(24 * time.Hour), IdleTimeout: 30 * time.Minute, ActiveAt: at.Add(time.Minute),
		Grace: 2 * time.Minute, Version: 9, Base: 4, SyncedAt: at.Add(30 * time.Second), SyncedVersion: 7, WholeAt: 8,
		Changed: []Changed{{"cart", 9}, {"\x00header", 8}},
		Written: []Changed{{"user", 3}}, WrittenFloor: 2,
		Scope: 0x5c09e_0f_a_1234567, Subject: "ada", Payload: []byte{0, 1, 0xff},
	}
}

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestFormat3HasNoScope: an envelope of format 3 (this release's first
// builds) decodes with scope 0, its subject and payload where they were.
func TestFormat3HasNoScope(t *testing.T) {
	want := sample()
	want.Scope = 0
	b := want.Append(nil)
	// Format 3 is format 4 without the scope, here a single 0 byte before the subject.
	at := len(b) - len(want.Payload) - len(want.Subject) - 2
	if b[at] != 0 || int(b[at+1]) != len(want.Subject) {
		t.Fatalf("no empty scope before the subject at byte %d: % x", at, b[at:])
	}
	old := append(append([]byte{}, b[:at]...), b[at+1:]...)
	old[2] = 3
	var got Envelope
	got.Scope = 42 // Decode must reset it
	if err := Decode(old, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("format 3:\n got %+v\nwant %+v", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	want := sample()
	b := want.Append(nil)
	if len(b) != want.Size() {
		t.Fatalf("Size = %d, Append wrote %d", want.Size(), len(b))
	}
	var got Envelope
	if err := Decode(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

// Every prefix of a valid envelope is an error, never a panic, and so is
// a flag or a format this package does not know.
func TestDecodeRefusesBrokenInput(t *testing.T) {
	e := sample()
	b := e.Append(nil)
	payloadAt := len(b) - len(e.Payload)
	for n := 0; n < payloadAt; n++ {
		var got Envelope
		if err := Decode(b[:n], &got); err == nil {
			t.Fatalf("a %d-byte prefix decoded", n)
		}
	}
	newer := bytes.Clone(b)
	newer[2] = format + 1
	if err := Decode(newer, &Envelope{}); !errors.Is(err, ErrUnreadable) {
		t.Errorf("a newer format: %v, want ErrUnreadable", err)
	}
	flags := bytes.Clone(b)
	flags[4] |= 0x80
	if err := Decode(flags, &Envelope{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("an unknown flag: %v, want ErrCorrupt", err)
	}
}

func TestNoteBoundsTheChangedList(t *testing.T) {
	var e Envelope
	for i := range MaxChanged + 1 {
		e.Version = uint64(i + 1)
		e.Note(string(rune('a'+i%26)) + string(rune('a'+i/26)))
	}
	if e.WholeAt != MaxChanged+1 || len(e.Changed) != 0 {
		t.Fatalf("past MaxChanged keys: WholeAt = %d, %d keys listed; want a whole-payload change", e.WholeAt, len(e.Changed))
	}
	e.Version++
	e.Note("cart")
	e.MarkSynced(5, e.Version-1, time.Now())
	if e.WholeAt != 0 || len(e.Changed) != 1 || !e.Unsynced {
		t.Fatalf("after a sync of the previous version: WholeAt %d, changed %v, unsynced %v", e.WholeAt, e.Changed, e.Unsynced)
	}
}

func TestWrittenKeepsTheLatestAndAFloor(t *testing.T) {
	var e Envelope
	for v := uint64(1); v <= MaxChanged+5; v++ {
		e.NoteWritten(string(rune('A'+v%50))+string(rune('a'+v/50)), v)
	}
	if len(e.Written) != MaxChanged || e.WrittenFloor != 5 {
		t.Fatalf("%d keys, floor %d; want %d and 5", len(e.Written), e.WrittenFloor, MaxChanged)
	}
	if !e.WrittenSince("never-listed", 4) || e.WrittenSince("never-listed", 5) {
		t.Error("the floor must stand for keys that fell off the list")
	}
	e.NoteWritten(AllKeys, 100)
	if !e.WrittenSince("anything", 99) {
		t.Error("a whole-payload write must count for every key")
	}
}

func TestSealOpen(t *testing.T) {
	k1, k2 := key(t), key(t)
	r, err := NewRing([][]byte{k1, k2}, false)
	if err != nil {
		t.Fatal(err)
	}
	e := sample()
	ad := []byte("hs:storage-key")
	b := r.Seal(nil, ad, &e)
	if bytes.Contains(b, []byte("ada")) || bytes.Contains(b, e.Payload) {
		t.Fatal("a sealed envelope shows its subject or payload")
	}
	var got Envelope
	if err := r.Open(bytes.Clone(b), ad, nil, &got, true); err != nil || got.Subject != "ada" {
		t.Fatalf("Open = %v, subject %q", err, got.Subject)
	}
	rotated, _ := NewRing([][]byte{k2, k1}, false)
	if err := rotated.Open(b, ad, nil, &got, false); err != nil {
		t.Fatalf("a ring holding the key further down: %v", err)
	}
	cases := map[string]struct {
		ring *Ring
		b    []byte
		ad   string
		want error
	}{
		"another key":        {ring: mustRing(t, key(t)), b: b, ad: string(ad), want: ErrUnreadable},
		"no keys":            {ring: mustRing(t), b: b, ad: string(ad), want: ErrUnreadable},
		"moved to other key": {ring: r, b: b, ad: "hs:other-key", want: ErrCorrupt},
		"flipped bit":        {ring: r, b: flip(b, len(b)-20), ad: string(ad), want: ErrCorrupt},
		"truncated":          {ring: r, b: b[:Overhead-1], ad: string(ad), want: ErrCorrupt},
		"plain text":         {ring: r, b: e.Append(nil), ad: string(ad), want: ErrUnreadable},
	}
	for name, c := range cases {
		if err := c.ring.Open(bytes.Clone(c.b), []byte(c.ad), nil, &got, false); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	accepting, _ := NewRing([][]byte{k1}, true)
	if err := accepting.Open(e.Append(nil), ad, nil, &got, false); err != nil {
		t.Errorf("plain text with acceptPlain: %v", err)
	}
}

func mustRing(t *testing.T, keys ...[]byte) *Ring {
	t.Helper()
	r, err := NewRing(keys, false)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func FuzzDecode(f *testing.F) {
	e := sample()
	f.Add(e.Append(nil))
	f.Add([]byte("hs\x03"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got Envelope
		if Decode(b, &got) != nil {
			return
		}
		// What decodes encodes to bytes that decode to the same.
		var again Envelope
		if err := Decode(got.Append(nil), &again); err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("decoded %q to %+v; its encoding decodes to %+v, %v", b, got, again, err)
		}
	})
}

// Envelopes of releases before format 3 were bound to the storage key
// alone: Open accepts those, when not decrypting in place, and nothing
// else bound that way.
func TestOpenLegacy(t *testing.T) {
	r := mustRing(t, key(t))
	ad, legacyAD := []byte("hs:key"), []byte("key")
	sealWith := func(plain, ad []byte) []byte {
		k := r.keys[0]
		out := append([]byte{magic0, magic1, sealedFormat}, k.id[:]...)
		nonce := make([]byte, nonceLen)
		out = append(out, nonce...)
		return k.aead.Seal(out, nonce, plain, ad)
	}
	legacy := []byte("hs\x01\x03\x02\x01\x02\x03\x04\x05\x06\x07\x00payload") // format 1, persistent
	var got Envelope
	if err := r.Open(sealWith(legacy, legacyAD), ad, legacyAD, &got, false); err != nil || !got.Persistent || got.Version != 5 || string(got.Payload) != "payload" {
		t.Fatalf("legacy envelope: %v, %+v", err, got)
	}
	if err := r.Open(sealWith(legacy, legacyAD), ad, legacyAD, &got, true); !errors.Is(err, ErrCorrupt) {
		t.Errorf("legacy envelope in place: %v, want ErrCorrupt (the row is read instead)", err)
	}
	current := sample()
	if err := r.Open(sealWith(current.Append(nil), legacyAD), ad, legacyAD, &got, false); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 3 bound to the legacy data: %v, want ErrCorrupt", err)
	}
}
