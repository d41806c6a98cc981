package core

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// hostileInputs are payloads an attacker who can write to memcached (or a
// database row) would store, by the codec that decodes them. Each once
// killed the process or cost seconds of CPU, or could have.
func hostileInputs() map[string][]byte {
	deep := func(open byte, n int) []byte {
		return append([]byte{0x81, 0xa1, 'a'}, bytes.Repeat([]byte{open}, n)...)
	}
	return map[string][]byte{
		// msgpack: a map whose value claims an array of 2^32-1 elements.
		"msgpack array32":     {0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff},
		"msgpack map32":       {0xdf, 0xff, 0xff, 0xff, 0xff},
		"msgpack inner map32": {0x81, 0xa1, 'a', 0xdf, 0x7f, 0xff, 0xff, 0xff},
		"msgpack str32":       {0x81, 0xa1, 'a', 0xdb, 0xff, 0xff, 0xff, 0xff},
		"msgpack bin32":       {0x81, 0xa1, 'a', 0xc6, 0xff, 0xff, 0xff, 0xff},
		"msgpack ext32":       {0x81, 0xa1, 'a', 0xc9, 0xff, 0xff, 0xff, 0xff, 0x05},
		"msgpack key str32":   {0x81, 0xdb, 0xff, 0xff, 0xff, 0xff},
		// 1 MB of one-element arrays, each inside the last.
		"msgpack deep":       deep(0x91, 1<<20),
		"msgpack deep maps":  bytes.Repeat([]byte{0x81, 0xa0}, 1<<19),
		"msgpack many nils":  append([]byte{0x81, 0xa1, 'a', 0xdd, 0x00, 0x0f, 0xff, 0xff}, bytes.Repeat([]byte{0xc0}, 1<<20-1)...),
		"json deep":          []byte(`{"a":` + strings.Repeat("[", 1<<20)),
		"json deep objects":  []byte(strings.Repeat(`{"a":`, 1<<18)),
		"json many zeros":    []byte(`{"a":[` + strings.Repeat("0,", 1<<19) + "0]}"),
		"gob map count 2^31": {0x0d, 0x7f, 0x04, 0x01, 0x02, 0xff, 0x80, 0x00, 0x01, 0x0c, 0x01, 0x10, 0x00, 0x00, 0x12, 0xff, 0x80, 0x00, 0xfc, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x61, 0x03, 0x69, 0x6e, 0x74, 0x04, 0x02, 0x00, 0x02},
		"gob message 1 GiB":  {0xfc, 0x3f, 0xff, 0xff, 0xff, 0xff},
		// gob: a map[string]any whose []int64 value declares 2^24 elements (52 bytes).
		"gob slice count 2^24": {0x0d, 0x7f, 0x04, 0x01, 0x02, 0xff, 0x80, 0x00, 0x01, 0x0c, 0x01, 0x10, 0x00, 0x00,
			0x1a, 0xff, 0x80, 0x00, 0x01, 0x01, 0x78, 0x07, 0x5b, 0x5d, 0x69, 0x6e, 0x74, 0x36, 0x34, 0xff, 0x81,
			0x02, 0x01, 0x02, 0xff, 0x82, 0x00, 0x01, 0x04, 0x00, 0x00, 0x0a, 0xff, 0x82, 0x03, 0x00, 0xfc, 0x01,
			0x00, 0x00, 0x00, 0x0e},
		"envelope subject": append([]byte("hs\x03\x03\x00"), bytes.Repeat([]byte{0xff}, 64)...),
		"sealed truncated": []byte("hs\x81abcd"),
	}
}

// gobSliceAlloc is what encoding/gob may allocate for one slice from its
// declared count before it finds the input too short (its first allocation
// is capped near 10 MiB), on top of the bound every codec keeps.
const gobSliceAlloc = 11 << 20

// TestHostileInputsBounded decodes every hostile input with every built-in
// codec and as an envelope, sealed and plain, and asserts that each is an
// error (never a panic) and that no decode allocates more than a small
// multiple of its input.
func TestHostileInputsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates and scans megabytes")
	}
	sealed, err := envelope.NewRing([][]byte{NewSealKey()}, false)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := envelope.NewRing(nil, false)
	ad := []byte("hs:key")
	decoders := map[string]func([]byte) error{
		"json":    func(b []byte) error { _, err := JSON.Decode(b); return err },
		"gob":     func(b []byte) error { _, err := Gob.Decode(b); return err },
		"msgpack": func(b []byte) error { _, err := Msgpack.Decode(b); return err },
		"envelope": func(b []byte) error {
			var e envelope.Envelope
			return envelope.Decode(b, &e)
		},
		"sealed": func(b []byte) error {
			var e envelope.Envelope
			return sealed.Open(b, ad, nil, &e, false)
		},
		"plain store": func(b []byte) error {
			var e envelope.Envelope
			return plain.Open(b, ad, nil, &e, false)
		},
	}
	const factor, slack = 64, 256 << 10
	for name, in := range hostileInputs() {
		for dname, decode := range decoders {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := decode(in)
			runtime.ReadMemStats(&after)
			if err == nil && !strings.HasPrefix(name, "json many") && !strings.HasPrefix(name, "msgpack many") {
				t.Errorf("%s as %s: decoded without error", name, dname)
			}
			if dname == "msgpack" && strings.HasPrefix(name, "msgpack") && err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: err = %v, want ErrMalformed", name, err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			limit := uint64(factor*len(in) + slack)
			if dname == "gob" {
				limit += gobSliceAlloc
			}
			if alloc > limit {
				t.Errorf("%s as %s: allocated %d bytes for %d bytes of input (limit %d)", name, dname, alloc, len(in), limit)
			}
		}
	}
}

func TestMsgpackCheckAcceptsWhatMsgpackEncodes(t *testing.T) {
	values := map[string]any{
		"s": strings.Repeat("x", 70000), "b": bytes.Repeat([]byte{1}, 300), "i": int64(-1 << 40), "u": uint64(1 << 63),
		"f": 1.5, "f32": float32(2.5), "t": true, "n": nil,
		"a": []any{1, "two", []any{3.0}, map[string]any{"k": "v"}}, "m": map[string]any{"x": map[string]any{"y": 1}},
		"big": make([]any, 70000), "bigmap": func() map[string]any {
			m := map[string]any{}
			for i := range 70000 {
				m[strings.Repeat("k", i%50)+string(rune('a'+i%26))+string(rune(i))] = i
			}
			return m
		}(),
	}
	b, err := Msgpack.Encode(values)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkMsgpack(b); err != nil {
		t.Fatal(err)
	}
	if _, err := Msgpack.Decode(b); err != nil {
		t.Fatal(err)
	}
	nested := any("leaf")
	for range maxMsgpackDepth - 1 {
		nested = []any{nested}
	}
	b, _ = Msgpack.Encode(map[string]any{"deep": nested})
	if _, err := Msgpack.Decode(b); err != nil {
		t.Fatalf("%d levels refused: %v", maxMsgpackDepth, err)
	}
	b, _ = Msgpack.Encode(map[string]any{"deep": []any{nested}})
	if _, err := Msgpack.Decode(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d levels: err = %v, want ErrMalformed", maxMsgpackDepth+1, err)
	}
}
