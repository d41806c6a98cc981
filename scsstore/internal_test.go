package scsstore

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

func TestPayloadRoundTrip(t *testing.T) {
	exp := time.UnixMilli(1_800_000_000_123)
	at := time.UnixMilli(1_700_000_000_456)
	for _, tc := range []struct {
		token string
		blob  []byte
	}{
		{"", nil},
		{"", []byte("blob")},
		{strings.Repeat("t", 43), []byte{0, 1, 2, 255}},
		{strings.Repeat("t", maxTokenLen), bytes.Repeat([]byte("b"), 1000)},
	} {
		b := appendPayload(nil, exp, at, tc.token, tc.blob)
		if len(b) != payloadSize(exp, at, tc.token, tc.blob) {
			t.Errorf("payloadSize = %d; encoded %d", payloadSize(exp, at, tc.token, tc.blob), len(b))
		}
		p, err := parsePayload(b)
		if err != nil {
			t.Fatal(err)
		}
		if !p.expiry.Equal(exp) || !p.at.Equal(at) || p.token != tc.token || !bytes.Equal(p.blob, tc.blob) {
			t.Errorf("round trip of %q/%q = %+v", tc.token, tc.blob, p)
		}
		if cap(p.blob) != len(p.blob) {
			t.Error("blob capacity reaches beyond its length")
		}
		token, expiry, blob, err := DecodePayload(b)
		if err != nil || token != tc.token || !expiry.Equal(exp) || !bytes.Equal(blob, tc.blob) {
			t.Errorf("DecodePayload = %q, %v, %q, %v", token, expiry, blob, err)
		}
	}
}

func TestPayloadMalformed(t *testing.T) {
	good := appendPayload(nil, time.Now(), time.Now(), "token", []byte("blob"))
	cases := [][]byte{
		nil,
		{},
		{2},
		{payloadFormat},
		{payloadFormat, 0x80},
		{payloadFormat, 1, 1, 200}, // token longer than what follows
		append([]byte{payloadFormat, 1, 1}, 0xff, 0x03), // token length 511
		append([]byte{payloadFormat}, bytes.Repeat([]byte{0xff}, 12)...),
		{payloadFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0}, // expiry out of range
	}
	for i := range good { // every truncation of a good payload before its blob
		if i < len(good)-len("blob") {
			cases = append(cases, good[:i])
		}
	}
	for _, b := range cases {
		if _, err := parsePayload(b); err == nil {
			t.Errorf("parsePayload(%x) accepted malformed bytes", b)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	f.Add(appendPayload(nil, time.Now(), time.Now(), "tok", []byte("blob")))
	f.Add([]byte{payloadFormat, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePayload(b)
		if err == nil && len(p.token) > maxTokenLen {
			t.Fatal("token too long accepted")
		}
	})
}

func TestMemoTakeOnce(t *testing.T) {
	m := newMemo(10, time.Minute)
	m.put("a", &core.KVItem{Lag: time.Minute, Value: []byte("big")})
	e := m.take("a")
	if e == nil || e.Lag != time.Minute || e.Value != nil {
		t.Fatalf("take = %+v; want the one put, without payload", e)
	}
	if m.take("a") != nil {
		t.Fatal("taken twice")
	}
	m.put("b", &core.KVItem{})
	m.put("b", &core.KVItem{Lag: time.Minute}) // a second Find replaces the first
	if e := m.take("b"); e == nil || e.Lag != time.Minute {
		t.Fatalf("take after two puts = %+v; want the second", e)
	}
	m.put("c", &core.KVItem{})
	m.forget("c")
	if m.take("c") != nil || m.len() != 0 {
		t.Fatal("forget did not forget")
	}
}

func TestMemoSizeBound(t *testing.T) {
	m := newMemo(3, time.Minute)
	for _, tok := range []string{"a", "b", "c", "d"} {
		m.put(tok, &core.KVItem{})
	}
	if m.len() != 3 {
		t.Fatalf("len = %d; want 3", m.len())
	}
	if m.take("a") != nil {
		t.Error("the oldest was not dropped")
	}
	m.put("b", &core.KVItem{}) // b becomes the newest
	m.put("e", &core.KVItem{}) // drops c, the oldest now
	if m.take("c") != nil || m.take("b") == nil || m.take("d") == nil || m.take("e") == nil {
		t.Error("least recently put was not the one dropped")
	}
	for i := range 1000 { // reuse keeps it bounded
		m.put(string(rune('A'+i%50)), &core.KVItem{})
	}
	if m.len() != 3 {
		t.Fatalf("len = %d; want 3", m.len())
	}
}

func TestMemoMaxAge(t *testing.T) {
	m := newMemo(10, 20*time.Millisecond)
	m.put("old", &core.KVItem{})
	time.Sleep(30 * time.Millisecond) // real time must pass: the memo ages by the wall clock
	if m.take("old") != nil {
		t.Fatal("an entry older than maxAge was returned")
	}
	m.put("a", &core.KVItem{})
	// Aged entries are pruned in the background, so an idle memo shrinks.
	deadline := time.Now().Add(2 * time.Second)
	for m.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("len = %d two seconds after maxAge; want 0 (aged entries pruned)", m.len())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func BenchmarkMemoPutTake(b *testing.B) {
	m := newMemo(10000, time.Minute)
	e := &core.KVItem{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tok := tokens[i%len(tokens)]
		m.put(tok, e)
		if m.take(tok) == nil {
			b.Fatal("not remembered")
		}
	}
}

var tokens = func() []string {
	out := make([]string, 1024)
	for i := range out {
		out[i] = core.NewToken()
	}
	return out
}()

func TestMemoDisabled(t *testing.T) {
	m := newMemo(-1, time.Minute)
	m.put("a", &core.KVItem{})
	if m.take("a") != nil || m.len() != 0 {
		t.Fatal("a disabled memo remembered")
	}
}
