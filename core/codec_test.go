package core

import (
	"encoding/gob"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

func TestCodecsRoundTrip(t *testing.T) {
	values := map[string]any{"s": "text", "i": 42, "big": int64(math.MaxInt64), "f": 1.5, "b": true, "bytes": []byte{0, 1, 255}}
	for _, c := range []Codec{JSON, Gob, Msgpack} {
		data, err := c.Encode(values)
		if err != nil {
			t.Fatalf("codec %d: %v", c.ID(), err)
		}
		got, err := c.Decode(data)
		if err != nil {
			t.Fatalf("codec %d: %v", c.ID(), err)
		}
		s := &Session{values: got, decoded: true, entry: &entry{Envelope: envelope.Envelope{Codec: c.ID()}}}
		if f, _ := Value[float64](s, "f"); s.Get("s") != "text" || !intIs(s, "i", 42) || f != 1.5 || s.Get("b") != true {
			t.Errorf("codec %d: got %v", c.ID(), got)
		}
		if b, ok := Value[[]byte](s, "bytes"); !ok || string(b) != "\x00\x01\xff" {
			t.Errorf("codec %d: bytes = %v", c.ID(), got["bytes"])
		}
		// JSON has only float64 numbers: MaxInt64 is not exact there.
		if big, _ := Value[int64](s, "big"); c != JSON && big != math.MaxInt64 {
			t.Errorf("codec %d: big = %v", c.ID(), got["big"])
		}
	}
}

// intIs reports whether the value under key converts to the int want.
func intIs(s *Session, key string, want int) bool {
	n, ok := Value[int](s, key)
	return ok && n == want
}

// Reading an integer as int or int64 allocates nothing, whichever number type the codec returned.
func TestValueIntAllocatesNothing(t *testing.T) {
	s := &Session{decoded: true, entry: &entry{Envelope: envelope.Envelope{Codec: Msgpack.ID()}},
		values: map[string]any{"i": int64(1 << 40), "u": uint64(7), "f": 3.0, "i8": int8(-5)}}
	for key := range s.values {
		if n := testing.AllocsPerRun(100, func() { Value[int](s, key); Value[int64](s, key) }); n != 0 {
			t.Errorf("Value of %q as int and int64 allocates %v times", key, n)
		}
	}
}

func TestCodecsRefuseUnencodable(t *testing.T) {
	for _, c := range []Codec{JSON, Gob, Msgpack} {
		if _, err := c.Encode(map[string]any{"ch": make(chan int)}); err == nil {
			t.Errorf("codec %d encoded a channel", c.ID())
		}
	}
}

func TestValueConvertsExactlyOrNot(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	s := &Session{decoded: true, entry: &entry{Envelope: envelope.Envelope{Codec: JSON.ID()}}, values: map[string]any{
		"f": 3.0, "frac": 3.5, "u": uint64(7), "huge": uint64(math.MaxUint64), "str": "12", "neg": -1.0,
		"t": now.Format(time.RFC3339Nano), "b64": "AAH/",
	}}
	if !intIs(s, "f", 3) || intIs(s, "frac", 0) || !intIs(s, "u", 7) || intIs(s, "str", 0) {
		t.Fatal("integer conversions")
	}
	if v, ok := Value[int64](s, "huge"); ok || v != 0 {
		t.Fatalf("MaxUint64 as int64 = %d, %v; want no conversion", v, ok)
	}
	if v, ok := Value[uint8](s, "neg"); ok || v != 0 {
		t.Fatalf("-1 as uint8 = %d, %v; want no conversion", v, ok)
	}
	// Under msgpack (and gob) too: a number that does not fit is refused, not wrapped by re-encoding.
	mp := &Session{decoded: true, entry: &entry{Envelope: envelope.Envelope{Codec: Msgpack.ID()}},
		values: map[string]any{"300": int64(300), "max": uint64(math.MaxUint64)}}
	if v, ok := Value[uint8](mp, "300"); ok || v != 0 {
		t.Fatalf("msgpack 300 as uint8 = %d, %v; want no conversion", v, ok)
	}
	if v, ok := Value[int](mp, "max"); ok || v != 0 {
		t.Fatalf("msgpack MaxUint64 as int = %d, %v; want no conversion", v, ok)
	}
	if v, ok := Value[string](s, "f"); ok || v != "" {
		t.Fatal("a number converted to a string")
	}
	if v, ok := Value[bool](s, "f"); ok || v {
		t.Fatal("a number converted to a bool")
	}
	if intIs(s, "missing", 0) {
		t.Fatal("a missing key converted")
	}
	if got, ok := Value[time.Time](s, "t"); !ok || !got.Equal(now) {
		t.Fatalf("time from JSON text = %v, %v", got, ok)
	}
	if got, ok := Value[[]byte](s, "b64"); !ok || string(got) != "\x00\x01\xff" {
		t.Fatalf("bytes from JSON base64 = %q, %v", got, ok)
	}
}

// A struct stored in a session reads back as itself under every codec.
func TestValueRoundTripsStructs(t *testing.T) {
	type cart struct {
		Items []string
		Total int
		At    time.Time
	}
	gob.Register(cart{})
	want := cart{Items: []string{"book", "pen"}, Total: 1299, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, c := range []Codec{JSON, Gob, Msgpack} {
		data, err := c.Encode(map[string]any{"cart": want})
		if err != nil {
			t.Fatalf("codec %d: %v", c.ID(), err)
		}
		values, err := c.Decode(data)
		if err != nil {
			t.Fatalf("codec %d: %v", c.ID(), err)
		}
		s := &Session{values: values, decoded: true, entry: &entry{Envelope: envelope.Envelope{Codec: c.ID()}}}
		got, ok := Value[cart](s, "cart")
		if !ok || !got.At.Equal(want.At) || got.Total != want.Total || len(got.Items) != 2 || got.Items[1] != "pen" {
			t.Errorf("codec %d: Value[cart] = %+v, %v; want %+v", c.ID(), got, ok, want)
		}
	}
}

func fuzzCodec(f *testing.F, c Codec) {
	seed, _ := c.Encode(map[string]any{"a": 1, "b": "x", "c": []any{1, "y"}})
	f.Add(seed)
	f.Add([]byte{})
	// The hostile inputs of hostile_test.go are in testdata/fuzz too; the
	// small ones are seeds here so that plain go test runs them.
	for _, in := range hostileInputs() {
		if len(in) <= 64 {
			f.Add(in)
		}
	}
	s := &Store{}
	s.codecs[c.ID()] = c
	limit := func(n int) uint64 { return 64*uint64(n) + 256<<10 } // docs/security.md's bound
	if c == Gob {
		limit = func(n int) uint64 { return 64*uint64(n) + 256<<10 + gobSliceAlloc }
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := s.decode(c.ID(), data)
		runtime.ReadMemStats(&after)
		if err == nil && m == nil || err != nil && m != nil {
			t.Fatalf("decode = %v, %v: want a map or an error", m, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit(len(data)) {
			t.Fatalf("decoding %d bytes allocated %d, over the bound %d", len(data), alloc, limit(len(data)))
		}
	})
}

func FuzzJSONDecode(f *testing.F)    { fuzzCodec(f, JSON) }
func FuzzGobDecode(f *testing.F)     { fuzzCodec(f, Gob) }
func FuzzMsgpackDecode(f *testing.F) { fuzzCodec(f, Msgpack) }
