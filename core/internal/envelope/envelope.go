// Package envelope encodes and seals what both tiers store for one session:
// a small binary header and the codec-encoded values.
//
// The same bytes are the memcached value and the database row's payload, so
// either tier can refill the other without re-encoding. Decoding never
// panics and never allocates more than the input's size: every length is
// checked against the bytes that follow.
package envelope

import (
	"encoding/binary"
	"errors"
	"time"
)

// Layout, format 3. Integers are unsigned varints; times are Unix
// milliseconds (0: the zero time), durations milliseconds.
//
//	magic     2 bytes  "hs"
//	format    1 byte   3
//	codec     1 byte   codec id
//	flags     1 byte   see Persistent, Destroyed, Unsynced
//	lineage   8 bytes  big endian
//	created, deadline, idle, active, grace
//	version, base, syncedAt, syncedVersion, wholeAt
//	changed   count, then per key: length, bytes, version
//	written   floor, count, then per key: length, bytes, row version
//	subject   length, bytes
//	payload   the rest
const (
	magic0   = 'h'
	magic1   = 's'
	format   = 3
	fixedLen = 5 + 8

	flagPersistent = 1 << 0
	flagDestroyed  = 1 << 1
	flagUnsynced   = 1 << 2
	knownFlags     = flagPersistent | flagDestroyed | flagUnsynced

	// MaxSubject bounds a subject: the database column is varchar(255).
	MaxSubject = 255
	// MaxChanged bounds the keys an envelope lists as changed since its
	// last sync; past it, the whole payload counts as changed (WholeAt).
	MaxChanged = 64
	// MaxKey is the longest key listed by name in Changed; a change of a
	// longer key counts as a change of the whole payload.
	MaxKey = 255
)

// ErrCorrupt is returned for bytes that are not a well-formed envelope of a
// format this package knows, or that fail to authenticate under a key of the
// ring. What is corrupt may be overwritten: it holds nothing readable.
var ErrCorrupt = errors.New("corrupt envelope")

// ErrUnreadable is returned for an envelope that is well formed but cannot
// be read here: a newer format, a key that is not in the ring, or plain text
// where sealing is required. Another app server (a newer release, or one
// with another key ring) may read it, so it must not be overwritten.
var ErrUnreadable = errors.New("envelope unreadable here")

// Changed is one key of a session's values changed since the envelope's last
// sync, with the Version of its latest change.
type Changed struct {
	Key     string
	Version uint64
}

// Envelope is a session as both tiers store it.
type Envelope struct {
	Codec      uint8
	Persistent bool // the cookie lasts until Deadline (remember me)
	Destroyed  bool // a tombstone: the session was destroyed
	Unsynced   bool // activity or changes the row has not seen

	// Lineage names the history this copy belongs to. A copy written only
	// through memcached keeps it; a write that did not go through the
	// memcached copy (a refill from the row, a write around an unreachable
	// node) starts a new one. Versions compare only within one lineage.
	Lineage uint64

	Created     time.Time
	Deadline    time.Time     // end of the absolute lifetime
	IdleTimeout time.Duration // inactivity before the session dies
	ActiveAt    time.Time     // last recorded activity
	// Grace is how far the row's ActiveAt may lag the truth: the writer's
	// SyncInterval when this envelope was written.
	Grace time.Duration

	Version       uint64    // bumped on every change of the values or subject
	Base          uint64    // the row version this copy was built on; 0: no row
	SyncedAt      time.Time // when the row last took (or gave) this copy
	SyncedVersion uint64    // Version at SyncedAt
	WholeAt       uint64    // Version of the last change of the whole payload since SyncedVersion; 0: none
	Changed       []Changed // keys changed since SyncedVersion

	// Written lists the keys the row took directly — durable writes, and
	// writes around memcached — each with the row version that wrote it;
	// WrittenFloor is the row version up to which keys that fell off the
	// list (it keeps the MaxChanged latest) may have been written so. A
	// copy built on an earlier row version never overwrites such a key in
	// a merge: the direct write is the later one (see Overwrites).
	Written      []Changed
	WrittenFloor uint64

	Subject string
	Payload []byte
}

// ExpiresAt returns when the session dies if nothing more happens: the
// earlier of ActiveAt+IdleTimeout and Deadline.
func (e *Envelope) ExpiresAt() time.Time {
	t := e.ActiveAt.Add(min(e.IdleTimeout, maxDuration))
	if t.After(e.Deadline) {
		return e.Deadline
	}
	return t
}

// RowExpiresAt returns when a row holding e may be reaped: ExpiresAt plus
// Grace, capped at Deadline, since the row may not have seen activity of
// the last Grace. memcached keeps a copy as long, so that a copy that idled
// out is still there to say so when its row is read.
func (e *Envelope) RowExpiresAt() time.Time {
	t := e.ActiveAt.Add(min(e.IdleTimeout, maxDuration) + min(e.Grace, maxDuration))
	if t.After(e.Deadline) {
		return e.Deadline
	}
	return t
}

// Note records a change of key at e.Version: a key of MaxKey bytes or
// more, or one past MaxChanged, makes it a change of the whole payload.
func (e *Envelope) Note(key string) {
	for i := range e.Changed {
		if e.Changed[i].Key == key {
			e.Changed[i].Version = e.Version
			return
		}
	}
	if len(key) > MaxKey || len(e.Changed) >= MaxChanged {
		e.NoteWhole()
		return
	}
	e.Changed = append(e.Changed, Changed{key, e.Version})
}

// NoteWhole records a change of the whole payload at e.Version (a Clear, or
// a payload that is not a map of keys).
func (e *Envelope) NoteWhole() {
	e.WholeAt = e.Version
	e.Changed = e.Changed[:0]
}

// AllKeys is the name Written uses for a direct write of the whole payload.
const AllKeys = "\x00all"

// NoteWritten records that the row took key directly at row version v.
func (e *Envelope) NoteWritten(key string, v uint64) {
	for i := range e.Written {
		if e.Written[i].Key == key {
			e.Written[i].Version = v
			return
		}
	}
	if len(key) > MaxKey {
		key = AllKeys
	}
	if len(e.Written) >= MaxChanged {
		oldest := 0
		for i, w := range e.Written {
			if w.Version < e.Written[oldest].Version {
				oldest = i
			}
		}
		e.WrittenFloor = max(e.WrittenFloor, e.Written[oldest].Version)
		e.Written = append(e.Written[:oldest], e.Written[oldest+1:]...)
	}
	e.Written = append(e.Written, Changed{key, v})
}

// WrittenSince reports whether the row took key directly after row version
// base (a whole-payload write counts for every key).
func (e *Envelope) WrittenSince(key string, base uint64) bool {
	if e.WrittenFloor > base {
		return true
	}
	for _, w := range e.Written {
		if w.Version > base && (w.Key == key || w.Key == AllKeys) {
			return true
		}
	}
	return false
}

// AnyWrittenSince reports whether the row took any key directly after row
// version base.
func (e *Envelope) AnyWrittenSince(base uint64) bool {
	if e.WrittenFloor > base {
		return true
	}
	for _, w := range e.Written {
		if w.Version > base {
			return true
		}
	}
	return false
}

// MarkSynced records that the row took this copy's state at version v (a
// sync of an earlier state of this copy) as row version base: changes up
// to v are forgotten.
func (e *Envelope) MarkSynced(base, v uint64, at time.Time) {
	e.Base, e.SyncedAt = base, at
	if v < e.SyncedVersion {
		return
	}
	e.SyncedVersion = v
	if e.WholeAt <= v {
		e.WholeAt = 0
	}
	kept := e.Changed[:0]
	for _, c := range e.Changed {
		if c.Version > v {
			kept = append(kept, c)
		}
	}
	e.Changed = kept
	e.Unsynced = e.Version > v
}

// Size returns the exact length Append produces for e.
func (e *Envelope) Size() int {
	n := fixedLen + uvarintLen(ms(e.Created)) + uvarintLen(ms(e.Deadline)) +
		uvarintLen(durMs(e.IdleTimeout)) + uvarintLen(ms(e.ActiveAt)) + uvarintLen(durMs(e.Grace)) +
		uvarintLen(e.Version) + uvarintLen(e.Base) + uvarintLen(ms(e.SyncedAt)) +
		uvarintLen(e.SyncedVersion) + uvarintLen(e.WholeAt) + uvarintLen(uint64(len(e.Changed)))
	n += uvarintLen(e.WrittenFloor) + uvarintLen(uint64(len(e.Written)))
	for _, list := range [2][]Changed{e.Changed, e.Written} {
		for _, c := range list {
			n += uvarintLen(uint64(len(c.Key))) + len(c.Key) + uvarintLen(c.Version)
		}
	}
	return n + uvarintLen(uint64(len(e.Subject))) + len(e.Subject) + len(e.Payload)
}

// Append appends the encoded envelope to dst.
func (e *Envelope) Append(dst []byte) []byte {
	var flags byte
	if e.Persistent {
		flags |= flagPersistent
	}
	if e.Destroyed {
		flags |= flagDestroyed
	}
	if e.Unsynced {
		flags |= flagUnsynced
	}
	dst = append(dst, magic0, magic1, format, e.Codec, flags)
	dst = binary.BigEndian.AppendUint64(dst, e.Lineage)
	for _, v := range [...]uint64{
		ms(e.Created), ms(e.Deadline), durMs(e.IdleTimeout), ms(e.ActiveAt), durMs(e.Grace),
		e.Version, e.Base, ms(e.SyncedAt), e.SyncedVersion, e.WholeAt, uint64(len(e.Changed)),
	} {
		dst = binary.AppendUvarint(dst, v)
	}
	dst = appendKeys(dst, e.Changed)
	dst = binary.AppendUvarint(dst, e.WrittenFloor)
	dst = binary.AppendUvarint(dst, uint64(len(e.Written)))
	dst = appendKeys(dst, e.Written)
	dst = binary.AppendUvarint(dst, uint64(len(e.Subject)))
	dst = append(dst, e.Subject...)
	return append(dst, e.Payload...)
}

func appendKeys(dst []byte, list []Changed) []byte {
	for _, c := range list {
		dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
		dst = append(dst, c.Key...)
		dst = binary.AppendUvarint(dst, c.Version)
	}
	return dst
}

// Decode decodes b into e. e.Payload aliases b. It returns ErrCorrupt for
// anything that is not a well-formed envelope, ErrUnreadable for a format
// newer than this package's; it never panics.
func Decode(b []byte, e *Envelope) error {
	if len(b) < 3 || b[0] != magic0 || b[1] != magic1 {
		return ErrCorrupt
	}
	switch {
	case b[2] == 1 || b[2] == 2:
		return decodeLegacy(b, e)
	case b[2] > format && b[2] < sealedFormat:
		return ErrUnreadable
	case b[2] != format || len(b) < fixedLen || b[4]&^knownFlags != 0:
		return ErrCorrupt
	}
	e.Codec = b[3]
	e.Persistent, e.Destroyed, e.Unsynced = b[4]&flagPersistent != 0, b[4]&flagDestroyed != 0, b[4]&flagUnsynced != 0
	e.Lineage = binary.BigEndian.Uint64(b[5:13])
	d := decoder{b: b[fixedLen:]}
	e.Created, e.Deadline = d.time(), d.time()
	e.IdleTimeout = d.duration()
	e.ActiveAt = d.time()
	e.Grace = d.duration()
	e.Version, e.Base = d.uvarint(), d.uvarint()
	e.SyncedAt = d.time()
	e.SyncedVersion, e.WholeAt = d.uvarint(), d.uvarint()
	e.Changed = d.keys(e.Changed[:0])
	e.WrittenFloor = d.uvarint()
	e.Written = d.keys(e.Written[:0])
	e.Subject = string(d.bytes(MaxSubject))
	if d.bad {
		return ErrCorrupt
	}
	e.Payload = d.b
	return nil
}

// legacyTombstone is the version at and above which formats 1 and 2 mark a
// destroyed session.
const legacyTombstone = 1 << 62

// decodeLegacy decodes formats 1 and 2, which releases before format 3
// wrote: codec, flags (bit 1 persistent), then unsigned varints created,
// deadline, idle, active, version, synced at, synced version, (format 2
// only) first unsynced version, and the subject and payload. The result has
// lineage 0 — no copy's — and no grace: the reader supplies its own.
func decodeLegacy(b []byte, e *Envelope) error {
	if len(b) < 5 || b[4]&^3 != 0 {
		return ErrCorrupt
	}
	*e = Envelope{Codec: b[3], Persistent: b[4]&2 != 0}
	d := decoder{b: b[5:]}
	e.Created, e.Deadline = d.time(), d.time()
	e.IdleTimeout = d.duration()
	e.ActiveAt = d.time()
	e.Version = d.uvarint()
	e.SyncedAt = d.time()
	e.SyncedVersion = d.uvarint()
	if b[2] == 2 {
		d.uvarint()
	}
	e.Subject = string(d.bytes(MaxSubject))
	if d.bad {
		return ErrCorrupt
	}
	e.Destroyed = e.Version >= legacyTombstone
	e.Payload = d.b
	return nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
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

// keys reads a count, then that many keys and versions (at most
// MaxChanged), appending them to list.
func (d *decoder) keys(list []Changed) []Changed {
	n := d.uvarint()
	if n > MaxChanged {
		d.bad = true
		return list
	}
	for range n {
		key := d.bytes(MaxKey)
		list = append(list, Changed{string(key), d.uvarint()})
	}
	return list
}

// bytes reads a length-prefixed byte string of at most limit bytes.
func (d *decoder) bytes(limit uint64) []byte {
	n := d.uvarint()
	if d.bad || n > limit || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

// maxMs bounds a decoded time in Unix milliseconds (maxDuration bounds a
// duration): larger values are corrupt, so that no arithmetic on what was
// decoded can overflow.
const maxMs = 1 << 53

func (d *decoder) time() time.Time {
	v := d.uvarint()
	if v > maxMs {
		d.bad = true
	}
	if v == 0 || d.bad {
		return time.Time{}
	}
	return time.UnixMilli(int64(v))
}

func (d *decoder) duration() time.Duration {
	v := d.uvarint()
	if v > uint64(maxDuration/time.Millisecond) {
		d.bad = true
		return 0
	}
	return time.Duration(v) * time.Millisecond
}

// ms maps the zero time, and times before 1970, to 0.
func ms(t time.Time) uint64 {
	if t.IsZero() || t.UnixMilli() < 0 {
		return 0
	}
	return uint64(t.UnixMilli())
}

// durMs maps a duration to milliseconds, clamped to what an envelope holds.
func durMs(d time.Duration) uint64 { return uint64(min(max(d, 0), maxDuration) / time.Millisecond) }

// maxDuration is the longest duration an envelope holds (about 142 years,
// so that two of them added to a time cannot overflow): longer idle
// timeouts are stored as this, which the absolute deadline bounds anyway.
const maxDuration = time.Duration(maxMs/2000) * time.Millisecond

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
