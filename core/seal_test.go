package core

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func testSealer(t testing.TB, cfg SealConfig) (*sealer, *counters, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	st := new(counters)
	s, err := newSealer(cfg, slog.New(slog.NewTextHandler(&logs, nil)), st)
	if err != nil {
		t.Fatal(err)
	}
	return s, st, &logs
}

const (
	keyA = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	keyB = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func TestSealRoundTripAndBinding(t *testing.T) {
	k1, k2 := NewSealKey(), NewSealKey()
	s, st, _ := testSealer(t, SealConfig{Keys: [][]byte{k1}})
	e := sampleEntry()
	e.Payload = []byte("secret-cart-value")
	b := s.seal(keyA, nil, e)
	if len(b) != EnvelopeSize(e)+sealOverhead {
		t.Fatalf("sealed %d bytes, want %d", len(b), EnvelopeSize(e)+sealOverhead)
	}
	if bytes.Contains(b, e.Payload) || bytes.Contains(b, []byte(e.Subject)) {
		t.Fatal("sealed envelope holds plain text")
	}
	var got Entry
	if err := s.open(keyA, b, &got, false); err != nil || !bytes.Equal(got.Payload, e.Payload) || got.Version != e.Version {
		t.Fatalf("open: %v %+v", err, got)
	}

	tampered := bytes.Clone(b)
	tampered[len(tampered)-20] ^= 1
	other, _, _ := testSealer(t, SealConfig{Keys: [][]byte{k2}})
	cases := map[string]struct {
		s   *sealer
		key string
		b   []byte
	}{
		"other storage key": {s, keyB, b},
		"tampered":          {s, keyA, tampered},
		"truncated":         {s, keyA, b[:sealOverhead-1]},
		"unknown key":       {other, keyA, b},
		"plain envelope":    {s, keyA, AppendEnvelope(nil, e)},
		"empty":             {s, keyA, nil},
	}
	for name, c := range cases {
		var e Entry
		err := c.s.open(c.key, c.b, &e, false)
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNotAuthentic) {
			t.Errorf("%s: err = %v, want ErrCorrupt and ErrNotAuthentic", name, err)
		}
	}
	if st.sealFailures.Load() != 5 { // "unknown key" counts in other's counters
		t.Fatalf("sealFailures = %d, want 5", st.sealFailures.Load())
	}

	// A store without keys cannot read a sealed envelope either.
	plain, _, _ := testSealer(t, SealConfig{})
	if err := plain.open(keyA, b, &got, false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("plain store opened a sealed envelope: %v", err)
	}
}

func TestSealKeyRing(t *testing.T) {
	old, cur := NewSealKey(), NewSealKey()
	before, _, _ := testSealer(t, SealConfig{Keys: [][]byte{old}})
	after, _, _ := testSealer(t, SealConfig{Keys: [][]byte{cur, old}})
	e := sampleEntry()
	var got Entry
	if err := after.open(keyA, before.seal(keyA, nil, e), &got, false); err != nil {
		t.Fatalf("a ring with the old key second cannot open its entries: %v", err)
	}
	resealed := after.seal(keyA, nil, &got)
	if err := before.open(keyA, resealed, &got, false); err == nil {
		t.Fatal("the new entry was sealed with the old key")
	}
	only, _, _ := testSealer(t, SealConfig{Keys: [][]byte{cur}})
	if err := only.open(keyA, resealed, &got, false); err != nil {
		t.Fatalf("resealed entry does not open with the new key alone: %v", err)
	}
}

func TestSealAcceptUnsealed(t *testing.T) {
	s, _, _ := testSealer(t, SealConfig{Keys: [][]byte{NewSealKey()}, AcceptUnsealed: true})
	e := sampleEntry()
	var got Entry
	if err := s.open(keyA, AppendEnvelope(nil, e), &got, false); err != nil || got.Version != e.Version {
		t.Fatalf("AcceptUnsealed refused a plain envelope: %v", err)
	}
	if err := s.open(keyA, s.seal(keyA, nil, e), &got, true); err != nil {
		t.Fatal(err)
	}
}

func TestSealConfigErrors(t *testing.T) {
	k := NewSealKey()
	for name, cfg := range map[string]SealConfig{
		"short":    {Keys: [][]byte{k[:16]}},
		"repeated": {Keys: [][]byte{k, bytes.Clone(k)}},
	} {
		if _, err := newSealer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), new(counters)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseSealKeys(t *testing.T) {
	k1, k2 := NewSealKey(), NewSealKey()
	std := strings.TrimRight(strings.NewReplacer("-", "+", "_", "/").Replace(FormatSealKey(k2)), "=") + "="
	keys, err := ParseSealKeys(" " + FormatSealKey(k1) + ", " + std + "\n")
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k1) || !bytes.Equal(keys[1], k2) {
		t.Fatalf("ParseSealKeys = %x, %v", keys, err)
	}
	if keys, err := ParseSealKeys(""); keys != nil || err != nil {
		t.Fatal("empty string must give no keys")
	}
	if _, err := ParseSealKeys(FormatSealKey(k1) + ",c2hvcnQ"); err == nil || !strings.Contains(err.Error(), "key 2") {
		t.Fatalf("short key: %v", err)
	}
}

func TestSealFailuresLoggedAtMostOncePerInterval(t *testing.T) {
	s, st, logs := testSealer(t, SealConfig{Keys: [][]byte{NewSealKey()}})
	var e Entry
	for range 1000 {
		_ = s.open(keyA, []byte("hs\x81forged"), &e, false)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("%d log lines for 1000 failures, want 1", n)
	}
	if st.sealFailures.Load() != 1000 {
		t.Fatalf("sealFailures = %d", st.sealFailures.Load())
	}
}

// BenchmarkOpen1KB measures what sealing adds to the read of a 1 KB
// session: open (authenticate, decrypt, decode) against decode alone.
func BenchmarkOpen1KB(b *testing.B) {
	e := sampleEntry()
	e.Payload = bytes.Repeat([]byte{'v'}, 1024)
	b.Run("plain", func(b *testing.B) {
		s, _, _ := testSealer(b, SealConfig{})
		env := s.seal(keyA, nil, e)
		benchOpen(b, s, env)
	})
	b.Run("sealed", func(b *testing.B) {
		s, _, _ := testSealer(b, SealConfig{Keys: [][]byte{NewSealKey(), NewSealKey()}})
		env := s.seal(keyA, nil, e)
		benchOpen(b, s, env)
	})
}

// benchOpen opens in place, as a memcached hit does, on a copy of env
// (the copy stands in for the buffer the memcached client allocates).
func benchOpen(b *testing.B, s *sealer, env []byte) {
	var e Entry
	buf := make([]byte, len(env))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, env)
		if err := s.open(keyA, buf, &e, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeal1KB measures sealing a 1 KB session against encoding it.
func BenchmarkSeal1KB(b *testing.B) {
	e := sampleEntry()
	e.Payload = bytes.Repeat([]byte{'v'}, 1024)
	for _, c := range []struct {
		name string
		cfg  SealConfig
	}{{"plain", SealConfig{}}, {"sealed", SealConfig{Keys: [][]byte{NewSealKey()}}}} {
		b.Run(c.name, func(b *testing.B) {
			s, _, _ := testSealer(b, c.cfg)
			buf := make([]byte, 0, 2048)
			b.ReportAllocs()
			for b.Loop() {
				buf = s.seal(keyA, buf[:0], e)
			}
		})
	}
}

// FuzzOpenEnvelope feeds arbitrary bytes to a Store with keys: nothing
// opens (no one without the key can produce a sealed envelope), nothing
// panics, and every failure wraps ErrCorrupt.
func FuzzOpenEnvelope(f *testing.F) {
	s, _, _ := testSealer(f, SealConfig{Keys: [][]byte{NewSealKey()}})
	other, _, _ := testSealer(f, SealConfig{Keys: [][]byte{NewSealKey()}})
	f.Add(other.seal(keyA, nil, sampleEntry()))
	f.Add(AppendEnvelope(nil, sampleEntry()))
	f.Add([]byte("hs\x81"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		if err := s.open(keyA, b, &e, len(b)%2 == 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("open = %v, want an error wrapping ErrCorrupt", err)
		}
	})
}

// TestSealOverheadCountsTowardMaxItemSize: an entry that fits plain but not
// with the seal's 35 bytes is refused with ErrTooLarge before anything is
// written.
func TestSealOverheadCountsTowardMaxItemSize(t *testing.T) {
	const limit = 4096
	e := sampleEntry()
	e.Payload = nil
	e.Payload = make([]byte, limit-envelopeGrowth-EnvelopeSize(e)-10) // plain: 10 bytes to spare
	for _, c := range []struct {
		keys [][]byte
		want error
	}{{nil, nil}, {[][]byte{NewSealKey()}, ErrTooLarge}} {
		s, err := NewStore(StoreConfig{
			Memcached: MemcachedConfig{MaxItemSize: limit},
			Durable:   memDurable{},
			ReapMode:  ReapExternal, // memDurable cannot reap
			Seal:      SealConfig{Keys: c.keys},
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.checkSize(e); !errors.Is(err, c.want) {
			t.Errorf("keys=%d: checkSize = %v, want %v", len(c.keys), err, c.want)
		}
	}
}

// memDurable is enough of a Durable for NewStore; checkSize never calls it.
type memDurable struct{ Durable }
