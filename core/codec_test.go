package core

import (
	"math"
	"testing"
	"time"
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
		s := &Session{values: got, decoded: true}
		if s.GetString("s") != "text" || s.GetInt("i") != 42 || s.GetFloat64("f") != 1.5 || !s.GetBool("b") {
			t.Errorf("codec %d: got %v", c.ID(), got)
		}
		if string(s.GetBytes("bytes")) != "\x00\x01\xff" {
			t.Errorf("codec %d: bytes = %v", c.ID(), got["bytes"])
		}
		// JSON has only float64 numbers: MaxInt64 is not exact there.
		if c.ID() != JSONCodecID && s.GetInt64("big") != math.MaxInt64 {
			t.Errorf("codec %d: big = %v", c.ID(), got["big"])
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

func TestTypedGettersConvertExactlyOrZero(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	s := &Session{decoded: true, values: map[string]any{
		"f": 3.0, "frac": 3.5, "u": uint64(7), "huge": uint64(math.MaxUint64), "str": "12",
		"t": now, "tjson": now.Format(time.RFC3339Nano), "b64": "AAH/",
	}}
	if s.GetInt("f") != 3 || s.GetInt("frac") != 0 || s.GetInt("u") != 7 || s.GetInt64("huge") != 0 || s.GetInt("str") != 12 {
		t.Fatal("integer conversions")
	}
	if s.GetString("f") != "" || s.GetBool("f") || s.GetInt("missing") != 0 {
		t.Fatal("mismatched types must give zero values")
	}
	if !s.GetTime("t").Equal(now) || !s.GetTime("tjson").Equal(now) {
		t.Fatal("times")
	}
	if string(s.GetBytes("b64")) != "\x00\x01\xff" {
		t.Fatal("base64 bytes")
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
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := c.Decode(data)
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}

func FuzzJSONDecode(f *testing.F)    { fuzzCodec(f, JSON) }
func FuzzGobDecode(f *testing.F)     { fuzzCodec(f, Gob) }
func FuzzMsgpackDecode(f *testing.F) { fuzzCodec(f, Msgpack) }
