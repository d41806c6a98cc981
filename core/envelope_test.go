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
	unsynced := sampleEntry()
	unsynced.UnsyncedSince = 300
	for _, e := range []*Entry{sampleEntry(), unsynced, {}, {Payload: bytes.Repeat([]byte{7}, 70000), Version: 1 << 62}} {
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
			got.SyncedVersion != e.SyncedVersion || got.UnsyncedSince != e.UnsyncedSince || got.Subject != e.Subject || got.Codec != e.Codec ||
			!bytes.Equal(got.Payload, e.Payload) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, *e)
		}
	}
}

// An entry with no unsynced change is written in format 1, which releases
// before format 2 read; one with an unsynced change in format 2, which
// carries it. Format 1 decodes with UnsyncedSince 0, whatever was in e.
func TestEnvelopeFormats(t *testing.T) {
	e := sampleEntry()
	if b := AppendEnvelope(nil, e); b[2] != 1 {
		t.Errorf("format %d for an entry with nothing unsynced, want 1", b[2])
	}
	e.UnsyncedSince = 300
	b := AppendEnvelope(nil, e)
	if b[2] != 2 {
		t.Fatalf("format %d for an entry with an unsynced change, want 2", b[2])
	}
	if len(b) != len(AppendEnvelope(nil, sampleEntry()))+uvarintLen(300) {
		t.Errorf("format 2 is %d bytes: want format 1 plus the unsynced varint", len(b))
	}
	got := Entry{UnsyncedSince: 7}
	if err := DecodeEnvelope(AppendEnvelope(nil, sampleEntry()), &got); err != nil || got.UnsyncedSince != 0 {
		t.Errorf("format 1 decoded to UnsyncedSince %d (err %v), want 0", got.UnsyncedSince, err)
	}
	if err := DecodeEnvelope(b[:len(b)-len(e.Payload)-len(e.Subject)-1], &got); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 2 cut inside its header: err = %v, want ErrCorrupt", err)
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
	f.Add(AppendEnvelope(nil, &Entry{Version: 9, SyncedVersion: 3, UnsyncedSince: 5, Subject: "u"}))
	f.Add([]byte("hs\x02"))
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
		if again.Version != e.Version || again.UnsyncedSince != e.UnsyncedSince || again.Subject != e.Subject || !bytes.Equal(again.Payload, e.Payload) {
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
