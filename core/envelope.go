package core

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Envelope layout, format versions 1 and 2. All integers are unsigned
// varints (encoding/binary); times are Unix milliseconds, durations
// milliseconds.
//
//	magic        2 bytes  "hs"
//	format       1 byte   1 or 2
//	codec        1 byte   codec id (see Codec)
//	flags        1 byte   bit 0: restored from the durable tier; bit 1:
//	                      persistent cookie (Session.RememberMe); others 0
//	created      uvarint  creation time
//	deadline     uvarint  end of the absolute lifetime
//	idle         uvarint  idle timeout
//	active       uvarint  last recorded activity
//	version      uvarint  bumped on every change of the values
//	syncedAt     uvarint  last sync to the durable tier (0: never)
//	syncedVer    uvarint  version at that sync
//	unsynced     uvarint  format 2 only: first version since syncedVer
//	subjectLen   uvarint  then that many bytes of subject
//	payload      the rest: codec-encoded values (opaque to the Store)
//
// An entry with no change since syncedVer (unsynced 0) is written in
// format 1, which earlier releases read too, and so is every database row
// (Store.record): during a rolling upgrade only memcached copies with
// changes not confirmed yet look corrupt to app servers still on such a
// release, which read the row instead.
//
// The same bytes are the memcached value and the database row's payload, so
// either tier can refill the other without re-encoding.
const (
	envelopeMagic0   = 'h'
	envelopeMagic1   = 's'
	envelopeFormat   = 1
	envelopeFormat2  = 2 // adds UnsyncedSince
	envelopeFixedLen = 5
	flagRestored     = 1 << 0
	flagPersistent   = 1 << 1
	// maxSubjectLen bounds the subject so a corrupt length cannot make the
	// decoder allocate; gormstore's column is varchar(255).
	maxSubjectLen = 255
)

// Entry is one session as the Store keeps it: the envelope's header fields
// and the opaque payload. Entries returned by Store.Get carry the memcached
// CAS id they were read with, so Store.Update can detect concurrent writers.
//
// An Entry must not be used by two goroutines at once.
type Entry struct {
	// Payload is the codec-encoded session values. The Store never looks inside.
	Payload []byte
	// Codec is the id of the codec that encoded Payload.
	Codec uint8
	// Subject is the optional user id the session belongs to (empty: none).
	// At most 255 bytes.
	Subject string
	// Created is when the session was created.
	Created time.Time
	// Deadline is the end of the absolute lifetime; never extended.
	Deadline time.Time
	// IdleTimeout is how long the session lives without activity.
	IdleTimeout time.Duration
	// ActiveAt is the last recorded activity. It is refreshed by every write
	// and, for read-only use, at most once per TouchInterval.
	ActiveAt time.Time
	// Version increases by one on every change of Payload or Subject.
	Version uint64
	// SyncedAt is the last time the entry was sent to the durable tier
	// (zero: never). Kept in the envelope so every app server applies the
	// same sync rule.
	SyncedAt time.Time
	// SyncedVersion is the row version the entry is built on: the row's
	// version when it was read back from it, or the version of its last
	// sync once the database confirmed it (not before: SyncedAt marks when
	// the sync was sent).
	SyncedVersion uint64
	// UnsyncedSince is the Version of the first change made since
	// SyncedVersion (after a confirmation that came later, a lower bound of
	// the versions of the changes since); 0 when there is none. With
	// SyncedVersion it tells the rows this entry was built on from changes
	// it never saw (Record.Base).
	UnsyncedSince uint64
	// Persistent is true when the session's cookie lasts until Deadline
	// even where CookieConfig.SessionOnly makes browser-session cookies
	// (Session.RememberMe).
	Persistent bool
	// Restored is true when the entry was read back from the durable tier
	// (memcached had lost it) and not written since: its data may lag what
	// memcached held by up to SyncInterval. Insert and Update clear it.
	Restored bool

	casID  uint64 // memcached CAS id from the read; 0 when not read from memcached
	cached bool   // read from memcached (casID is meaningful)

	// token, key and mkey are the token Get read the entry under and its
	// storage and memcached keys, for Update.
	token, key, mkey string
}

// ExpiresAt returns when the session dies if nothing more happens: the
// earlier of ActiveAt+IdleTimeout and Deadline.
func (e *Entry) ExpiresAt() time.Time {
	t := e.ActiveAt.Add(e.IdleTimeout)
	if t.After(e.Deadline) {
		return e.Deadline
	}
	return t
}

// Alive reports whether the session is alive at now: before its idle expiry
// and before its absolute deadline.
func (e *Entry) Alive(now time.Time) bool {
	return now.Before(e.ExpiresAt())
}

// Destroyed reports whether e is the tombstone Store.Delete leaves in the
// database in place of a destroyed session. Get never returns one.
func (e *Entry) Destroyed() bool { return isTombstone(e) }

// AppendEnvelope appends the encoded envelope of e to dst and returns the
// extended slice.
func AppendEnvelope(dst []byte, e *Entry) []byte {
	var flags byte
	if e.Restored {
		flags |= flagRestored
	}
	if e.Persistent {
		flags |= flagPersistent
	}
	format := byte(envelopeFormat)
	if e.UnsyncedSince != 0 {
		format = envelopeFormat2
	}
	dst = append(dst, envelopeMagic0, envelopeMagic1, format, e.Codec, flags)
	dst = binary.AppendUvarint(dst, unixMilli(e.Created))
	dst = binary.AppendUvarint(dst, unixMilli(e.Deadline))
	dst = binary.AppendUvarint(dst, uint64(max(e.IdleTimeout, 0)/time.Millisecond))
	dst = binary.AppendUvarint(dst, unixMilli(e.ActiveAt))
	dst = binary.AppendUvarint(dst, e.Version)
	dst = binary.AppendUvarint(dst, unixMilli(e.SyncedAt))
	dst = binary.AppendUvarint(dst, e.SyncedVersion)
	if e.UnsyncedSince != 0 {
		dst = binary.AppendUvarint(dst, e.UnsyncedSince)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Subject)))
	dst = append(dst, e.Subject...)
	return append(dst, e.Payload...)
}

// EnvelopeSize returns the exact length AppendEnvelope produces for e.
func EnvelopeSize(e *Entry) int {
	n := envelopeFixedLen +
		uvarintLen(unixMilli(e.Created)) +
		uvarintLen(unixMilli(e.Deadline)) +
		uvarintLen(uint64(max(e.IdleTimeout, 0)/time.Millisecond)) +
		uvarintLen(unixMilli(e.ActiveAt)) +
		uvarintLen(e.Version) +
		uvarintLen(unixMilli(e.SyncedAt)) +
		uvarintLen(e.SyncedVersion) +
		uvarintLen(uint64(len(e.Subject)))
	if e.UnsyncedSince != 0 {
		n += uvarintLen(e.UnsyncedSince)
	}
	return n + len(e.Subject) + len(e.Payload)
}

// DecodeEnvelope decodes b into e. e.Payload aliases b: the caller must not
// modify b while e is in use. It returns an error wrapping ErrCorrupt for
// anything that is not a well-formed format-1 or format-2 envelope; it never
// panics.
func DecodeEnvelope(b []byte, e *Entry) error {
	if len(b) < envelopeFixedLen || b[0] != envelopeMagic0 || b[1] != envelopeMagic1 {
		return fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	if !plainFormat(b[2]) {
		return fmt.Errorf("%w: format %d", ErrCorrupt, b[2])
	}
	e.Codec = b[3]
	e.Restored = b[4]&flagRestored != 0
	e.Persistent = b[4]&flagPersistent != 0
	d := envelopeDecoder{b: b[envelopeFixedLen:]}
	e.Created = fromUnixMilli(d.uvarint())
	e.Deadline = fromUnixMilli(d.uvarint())
	idle := d.uvarint()
	e.ActiveAt = fromUnixMilli(d.uvarint())
	e.Version = d.uvarint()
	e.SyncedAt = fromUnixMilli(d.uvarint())
	e.SyncedVersion = d.uvarint()
	e.UnsyncedSince = 0
	if b[2] == envelopeFormat2 {
		e.UnsyncedSince = d.uvarint()
	}
	n := d.uvarint()
	if d.bad || n > maxSubjectLen || n > uint64(len(d.b)) {
		return fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	if idle > uint64(maxDuration/time.Millisecond) {
		return fmt.Errorf("%w: idle timeout out of range", ErrCorrupt)
	}
	e.IdleTimeout = time.Duration(idle) * time.Millisecond
	if n == 0 {
		e.Subject = ""
	} else {
		e.Subject = string(d.b[:n])
	}
	e.Payload = d.b[n:]
	e.casID, e.cached = 0, false
	return nil
}

const maxDuration = time.Duration(1<<63 - 1)

// plainFormat reports whether f is the format byte of an envelope that is
// not sealed.
func plainFormat(f byte) bool { return f == envelopeFormat || f == envelopeFormat2 }

type envelopeDecoder struct {
	b   []byte
	bad bool
}

func (d *envelopeDecoder) uvarint() uint64 {
	if d.bad {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// unixMilli maps the zero time to 0 and times before 1970 to 0, so the
// envelope never holds a negative number.
func unixMilli(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}

// fromUnixMilli maps 0 back to the zero time. Values beyond year 292277026596
// cannot be produced by unixMilli and are clamped so a corrupt envelope
// cannot overflow time arithmetic.
func fromUnixMilli(ms uint64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	const maxMs = 1 << 53
	if ms > maxMs {
		ms = maxMs
	}
	return time.UnixMilli(int64(ms))
}
