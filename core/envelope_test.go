package core

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func sampleEntry() *Entry {
	now := time.UnixMilli(1_790_000_000_123)
	return &Entry{
		Payload:       []byte{0, 1, 2, 0xff, 'x'},
		Codec:         MsgpackCodecID,
		Subject:       "user-42",
		Created:       now,
		Deadline:      now.Add(24 * time.Hour),
		IdleTimeout:   30 * time.Minute,
		ActiveAt:      now.Add(time.Minute),
		Version:       300,
		SyncedAt:      now.Add(30 * time.Second),
		SyncedVersion: 299,
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []*Entry{sampleEntry(), {}, {Payload: bytes.Repeat([]byte{7}, 70000), Version: 1 << 62}} {
		b := AppendEnvelope(nil, e)
		if len(b) != EnvelopeSize(e) {
			t.Fatalf("EnvelopeSize = %d, encoded %d bytes", EnvelopeSize(e), len(b))
		}
		var got Entry
		if err := DecodeEnvelope(b, &got); err != nil {
			t.Fatal(err)
		}
		if !got.Created.Equal(e.Created) || !got.Deadline.Equal(e.Deadline) || !got.ActiveAt.Equal(e.ActiveAt) ||
			!got.SyncedAt.Equal(e.SyncedAt) || got.IdleTimeout != e.IdleTimeout || got.Version != e.Version ||
			got.SyncedVersion != e.SyncedVersion || got.Subject != e.Subject || got.Codec != e.Codec ||
			!bytes.Equal(got.Payload, e.Payload) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, *e)
		}
	}
}

func TestEnvelopeCorrupt(t *testing.T) {
	good := AppendEnvelope(nil, sampleEntry())
	cases := map[string][]byte{
		"empty":        nil,
		"short":        good[:3],
		"magic":        append([]byte("xx"), good[2:]...),
		"format":       append([]byte{'h', 's', 9}, good[3:]...),
		"truncated":    good[:12],
		"subject long": append(append([]byte{}, good[:envelopeFixedLen]...), bytes.Repeat([]byte{0xff}, 20)...),
	}
	for name, b := range cases {
		var e Entry
		if err := DecodeEnvelope(b, &e); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

func TestEntryExpiry(t *testing.T) {
	e := sampleEntry()
	if got, want := e.ExpiresAt(), e.ActiveAt.Add(e.IdleTimeout); !got.Equal(want) {
		t.Fatalf("ExpiresAt = %v, want idle expiry %v", got, want)
	}
	e.Deadline = e.ActiveAt.Add(time.Minute)
	if !e.ExpiresAt().Equal(e.Deadline) {
		t.Fatal("ExpiresAt must not pass the deadline")
	}
	if !e.Alive(e.ActiveAt) || e.Alive(e.Deadline) {
		t.Fatal("Alive must be true before the expiry and false at it")
	}
}

func TestExpiration(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		in   time.Duration
		want int32
	}{
		{-time.Hour, 1}, {0, 1}, {time.Millisecond, 1}, {1500 * time.Millisecond, 2},
		{30 * time.Minute, 1800}, {30 * 24 * time.Hour, maxRelativeExpiration},
		{31 * 24 * time.Hour, int32(now.Add(31*24*time.Hour).Unix() + 1)},
	}
	for _, c := range cases {
		if got := expiration(now, now.Add(c.in)); got != c.want {
			t.Errorf("expiration(+%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(AppendEnvelope(nil, sampleEntry()))
	f.Add(AppendEnvelope(nil, &Entry{}))
	f.Add([]byte("hs\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		if err := DecodeEnvelope(b, &e); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes re-encodes to a decodable envelope with the same fields.
		var again Entry
		if err := DecodeEnvelope(AppendEnvelope(nil, &e), &again); err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if again.Version != e.Version || again.Subject != e.Subject || !bytes.Equal(again.Payload, e.Payload) {
			t.Fatal("re-encoding changed the entry")
		}
		_ = e.Alive(time.Now())
	})
}

func TestEnvelopeRestoredFlag(t *testing.T) {
	e := sampleEntry()
	e.Restored = true
	var got Entry
	if err := DecodeEnvelope(AppendEnvelope(nil, e), &got); err != nil || !got.Restored {
		t.Fatalf("Restored lost: %v %v", got.Restored, err)
	}
	e.Restored = false
	if err := DecodeEnvelope(AppendEnvelope(nil, e), &got); err != nil || got.Restored {
		t.Fatal("Restored set from nothing")
	}
}
