// Package envelope encodes and seals what both tiers store for one session, a binary header and the codec-encoded
// values: the same bytes in memcached and in the row, so either tier refills the other without re-encoding.
// Decoding never panics or allocates more than its input: every length is checked.
package envelope

import (
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Format 4 (3 lacks the scope): "hs", format, codec, flags (bit 0 persistent, 1 destroyed, 2 unsynced), 8-byte
// big-endian lineage, varints created, deadline, idle, active, grace, version, base, syncedAt, syncedVersion, wholeAt,
// Changed (count, then per key: length, bytes, version), WrittenFloor, Written (as Changed), scope, subject (length,
// bytes), the payload; times in Unix ms (0: the zero time), durations in ms. Sealed: "hs", sealedFormat (AES-256-GCM,
// v1), the 4-byte key id, a random 12-byte nonce, the plain envelope sealed with the caller's associated data, the tag.
const (
	magic0, magic1 = 'h', 's'
	format         = 4
	fixedLen       = 5 + 8
	maxKey         = 255 // longer keys count as the whole payload
	sealedFormat   = 0x81
	keyIDLen       = 4
	nonceLen       = 12
	headerLen      = 3 + keyIDLen + nonceLen
	// maxMs bounds a decoded time, maxDuration a duration (about 142 years), so no arithmetic on them overflows;
	// longer idle timeouts are stored as maxDuration.
	maxMs       = 1 << 53
	maxDurMs    = maxMs / 2000
	maxDuration = maxDurMs * time.Millisecond
	MaxSubject  = 255            // bounds a subject: the database column is varchar(255)
	MaxChanged  = 64             // bounds Written, and Changed (past it the whole payload counts as changed)
	AllKeys     = "\x00all"      // the key Written uses for a direct write of the whole payload
	Overhead    = headerLen + 16 // what sealing adds to an envelope's size
	KeySize     = 32             // the length of a seal key in bytes
)

var (
	// ErrCorrupt: malformed, of no known format, or failing to authenticate under the ring; may be overwritten.
	ErrCorrupt = errors.New("corrupt envelope")
	// ErrUnreadable: well formed but unreadable here (a newer format, a key not in the ring, plain text where
	// sealing is required) while another server may read it, so it must not be overwritten.
	ErrUnreadable = errors.New("envelope unreadable here")
)

// Changed is a key with the Version of its latest change (in Written, the row version that wrote it).
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
	// Lineage names this copy's history: writes through the memcached copy keep it, others (a refill from
	// the row, a write around an unreachable node) start a new one. Versions compare only within one lineage.
	Lineage       uint64
	Created       time.Time
	Deadline      time.Time     // end of the absolute lifetime
	IdleTimeout   time.Duration // inactivity before the session dies
	ActiveAt      time.Time     // last recorded activity
	Grace         time.Duration // how far the row's ActiveAt may lag: the writer's SyncInterval
	Version       uint64        // bumped on every change of the values or subject
	Base          uint64        // the row version this copy was built on; 0: no row
	SyncedAt      time.Time     // when the row last took (or gave) this copy
	SyncedVersion uint64        // Version at SyncedAt
	WholeAt       uint64        // Version of the last change of the whole payload since SyncedVersion; 0: none
	Changed       []Changed     // keys changed since SyncedVersion
	// Written lists the keys the row took directly (durable writes, writes around memcached) with the row
	// version that wrote each, the MaxChanged latest; keys that fell off may have been written so up to
	// WrittenFloor. A merge never overwrites such a key from a copy built on an earlier row version.
	Written      []Changed
	WrittenFloor uint64
	Scope        uint64 // names the Manager that created the session (a hash of its cookie name); 0: none (KVs, format 3)
	Subject      string
	Payload      []byte
}

// ExpiresAt returns when the session dies if nothing more happens: ActiveAt+IdleTimeout, capped at Deadline.
// RowExpiresAt returns when a row holding e may be reaped: that plus Grace (the row may lag that much activity),
// capped at Deadline; memcached keeps a copy as long, so an idled-out copy still says so.
func (e *Envelope) ExpiresAt() time.Time    { return e.expiry(0) }
func (e *Envelope) RowExpiresAt() time.Time { return e.expiry(e.Grace) }

func (e *Envelope) expiry(grace time.Duration) time.Time {
	if t := e.ActiveAt.Add(min(e.IdleTimeout, maxDuration) + min(grace, maxDuration)); !t.After(e.Deadline) {
		return t
	}
	return e.Deadline
}

// Note records a change of key at e.Version; a key over 255 bytes or past MaxChanged changes the whole payload.
func (e *Envelope) Note(key string) {
	if i := index(e.Changed, key); i >= 0 {
		e.Changed[i].Version = e.Version
	} else if len(key) > maxKey || len(e.Changed) >= MaxChanged {
		e.NoteWhole()
	} else {
		e.Changed = append(e.Changed, Changed{key, e.Version})
	}
}

// NoteWhole records a change of the whole payload at e.Version (a Clear, or a payload that is not a map).
func (e *Envelope) NoteWhole() {
	e.WholeAt, e.Changed = e.Version, e.Changed[:0]
}

// NoteWritten records that the row took key directly at row version v; a key over 255 bytes counts as AllKeys.
func (e *Envelope) NoteWritten(key string, v uint64) {
	if len(key) > maxKey {
		key = AllKeys
	}
	if i := index(e.Written, key); i >= 0 {
		e.Written[i].Version = v
		return
	}
	if len(e.Written) >= MaxChanged {
		oldest := slices.MinFunc(e.Written, func(a, b Changed) int { return cmp.Compare(a.Version, b.Version) })
		i := slices.Index(e.Written, oldest)
		e.WrittenFloor = max(e.WrittenFloor, e.Written[i].Version)
		e.Written = slices.Delete(e.Written, i, i+1)
	}
	e.Written = append(e.Written, Changed{key, v})
}

func index(list []Changed, key string) int {
	return slices.IndexFunc(list, func(c Changed) bool { return c.Key == key })
}

// WrittenSince reports whether the row took key (or AllKeys) directly after row version base.
func (e *Envelope) WrittenSince(key string, base uint64) bool {
	return e.WrittenFloor > base || slices.ContainsFunc(e.Written, func(w Changed) bool {
		return w.Version > base && (w.Key == key || w.Key == AllKeys)
	})
}

// AnyWrittenSince reports whether the row took any key directly after row version base.
func (e *Envelope) AnyWrittenSince(base uint64) bool {
	return e.WrittenFloor > base || slices.ContainsFunc(e.Written, func(w Changed) bool { return w.Version > base })
}

// MarkSynced records that row version base holds this copy's state at version v: changes up to v are forgotten.
func (e *Envelope) MarkSynced(base, v uint64, at time.Time) {
	e.Base, e.SyncedAt = base, at
	if v < e.SyncedVersion {
		return
	}
	e.SyncedVersion = v
	if e.WholeAt <= v {
		e.WholeAt = 0
	}
	e.Changed = slices.DeleteFunc(e.Changed, func(c Changed) bool { return c.Version <= v })
	e.Unsynced = e.Version > v
}

// Size returns the exact length Append produces for e.
func (e *Envelope) Size() int {
	h := *e
	h.Payload = nil
	var buf [256]byte // most headers fit: no allocation
	return len(h.Append(buf[:0])) + len(e.Payload)
}

// Append appends the encoded envelope to dst.
func (e *Envelope) Append(dst []byte) []byte {
	var flags byte
	for i, f := range [...]bool{e.Persistent, e.Destroyed, e.Unsynced} {
		if f {
			flags |= 1 << i
		}
	}
	dst = binary.BigEndian.AppendUint64(append(dst, magic0, magic1, format, e.Codec, flags), e.Lineage)
	for _, v := range [...]uint64{ms(e.Created), ms(e.Deadline), durMs(e.IdleTimeout), ms(e.ActiveAt), durMs(e.Grace),
		e.Version, e.Base, ms(e.SyncedAt), e.SyncedVersion, e.WholeAt} {
		dst = binary.AppendUvarint(dst, v)
	}
	dst = binary.AppendUvarint(appendKeys(dst, e.Changed), e.WrittenFloor)
	dst = appendKeys(dst, e.Written)
	dst = append(binary.AppendUvarint(binary.AppendUvarint(dst, e.Scope), uint64(len(e.Subject))), e.Subject...)
	return append(dst, e.Payload...)
}

func appendKeys(dst []byte, list []Changed) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(list)))
	for _, c := range list {
		dst = binary.AppendUvarint(append(binary.AppendUvarint(dst, uint64(len(c.Key))), c.Key...), c.Version)
	}
	return dst
}

func ms(t time.Time) uint64        { return uint64(max(t.UnixMilli(), 0)) } // the zero time and before 1970: 0
func durMs(d time.Duration) uint64 { return uint64(min(max(d, 0), maxDuration) / time.Millisecond) }

// Decode decodes b into e; e.Payload aliases b. It returns ErrCorrupt for anything that is not a
// well-formed envelope, ErrUnreadable for a format newer than this package's; it never panics.
func Decode(b []byte, e *Envelope) error {
	switch {
	case len(b) < 3 || b[0] != magic0 || b[1] != magic1:
		return ErrCorrupt
	case b[2] == 1 || b[2] == 2:
		return decodeLegacy(b, e)
	case b[2] > format && b[2] < sealedFormat:
		return ErrUnreadable
	case b[2] < 3 || len(b) < fixedLen || b[4]&^7 != 0:
		return ErrCorrupt
	}
	e.Codec, e.Lineage = b[3], binary.BigEndian.Uint64(b[5:13])
	e.Persistent, e.Destroyed, e.Unsynced = b[4]&1 != 0, b[4]&2 != 0, b[4]&4 != 0
	d := decoder{b: b[fixedLen:]}
	e.Created, e.Deadline, e.IdleTimeout, e.ActiveAt, e.Grace = d.time(), d.time(), d.duration(), d.time(), d.duration()
	e.Version, e.Base, e.SyncedAt, e.SyncedVersion, e.WholeAt = d.uvarint(), d.uvarint(), d.time(), d.uvarint(), d.uvarint()
	e.Changed, e.WrittenFloor, e.Written = d.keys(e.Changed[:0]), d.uvarint(), d.keys(e.Written[:0])
	if e.Scope = 0; b[2] == format {
		e.Scope = d.uvarint()
	}
	return d.finish(e)
}

// decodeLegacy decodes formats 1 and 2: codec, flags (bit 1 persistent), then varints created, deadline,
// idle, active, version (from 1<<62 on, a tombstone), synced at, synced version, (format 2 only) first
// unsynced version, subject and payload. Lineage 0 is no copy's; no grace: the reader supplies its own.
func decodeLegacy(b []byte, e *Envelope) error {
	if len(b) < 5 || b[4]&^3 != 0 {
		return ErrCorrupt
	}
	*e = Envelope{Codec: b[3], Persistent: b[4]&2 != 0}
	d := decoder{b: b[5:]}
	e.Created, e.Deadline, e.IdleTimeout, e.ActiveAt = d.time(), d.time(), d.duration(), d.time()
	e.Version, e.SyncedAt, e.SyncedVersion = d.uvarint(), d.time(), d.uvarint()
	if b[2] == 2 {
		d.uvarint()
	}
	e.Destroyed = e.Version >= 1<<62
	return d.finish(e)
}

// decoder returns zero values from its first error on.
type decoder struct {
	b   []byte
	bad bool
}

// finish reads the subject and takes the rest as e's payload.
func (d *decoder) finish(e *Envelope) error {
	if e.Subject = string(d.bytes(MaxSubject)); d.bad {
		return ErrCorrupt
	}
	e.Payload = d.b
	return nil
}

// upTo reads a varint of at most limit.
func (d *decoder) upTo(limit uint64) uint64 {
	v, n := binary.Uvarint(d.b)
	if d.bad = d.bad || n <= 0 || v > limit; d.bad {
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64         { return d.upTo(math.MaxUint64) }
func (d *decoder) duration() time.Duration { return time.Duration(d.upTo(maxDurMs)) * time.Millisecond }

// keys reads a count of at most MaxChanged, then that many keys and versions, appending them to list.
func (d *decoder) keys(list []Changed) []Changed {
	for n := d.upTo(MaxChanged); n > 0 && !d.bad; n-- {
		list = append(list, Changed{string(d.bytes(maxKey)), d.uvarint()})
	}
	return list
}

// bytes reads a length-prefixed byte string of at most limit bytes.
func (d *decoder) bytes(limit uint64) (b []byte) {
	n := d.upTo(limit)
	if d.bad = d.bad || n > uint64(len(d.b)); !d.bad {
		b, d.b = d.b[:n], d.b[n:]
	}
	return b
}

func (d *decoder) time() time.Time {
	if v := d.upTo(maxMs); v != 0 {
		return time.UnixMilli(int64(v))
	}
	return time.Time{}
}

// Ring seals with its first key and opens with any; without keys it stores plain text. Safe for concurrent use.
type Ring struct {
	keys        []sealKey
	acceptPlain bool
}

type sealKey struct {
	id   string // keyIDLen bytes
	aead cipher.AEAD
}

// NewRing returns a ring of keys, each KeySize bytes; with acceptPlain, it also opens plain-text envelopes.
func NewRing(keys [][]byte, acceptPlain bool) (*Ring, error) {
	r := &Ring{acceptPlain: acceptPlain}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("seal key %d is %d bytes; want %d", i+1, len(k), KeySize)
		}
		// The id is derived apart from the cipher key, so it reveals nothing. AES-256 and GCM cannot fail here.
		block, _ := aes.NewCipher(derive(k, "hybridsession seal v1 aes-256-gcm"))
		aead, _ := cipher.NewGCM(block)
		sk := sealKey{string(derive(k, "hybridsession seal v1 key id")[:keyIDLen]), aead}
		if slices.ContainsFunc(r.keys, func(o sealKey) bool { return o.id == sk.id }) {
			return nil, fmt.Errorf("seal key %d repeats an earlier key", i+1)
		}
		r.keys = append(r.keys, sk)
	}
	return r, nil
}

func derive(key []byte, info string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(info))
	return m.Sum(nil)
}

// Sealed reports whether the ring has keys; Overhead returns what it adds to an envelope's size: Overhead or 0.
func (r *Ring) Sealed() bool  { return len(r.keys) > 0 }
func (r *Ring) Overhead() int { return min(len(r.keys), 1) * Overhead }

// Seal appends e to dst, sealed with the first key and bound to ad (the namespaced storage key), or plain.
func (r *Ring) Seal(dst, ad []byte, e *Envelope) []byte {
	if !r.Sealed() {
		return e.Append(dst)
	}
	k := &r.keys[0]
	dst = append(append(slices.Grow(dst, Overhead+e.Size()), magic0, magic1, sealedFormat), k.id...)
	n, p := len(dst), len(dst)+nonceLen
	_, _ = rand.Read(dst[n:p]) // never fails (crypto/rand)
	dst = e.Append(dst[:p])
	return dst[:p+len(k.aead.Seal(dst[p:p], dst[n:p], dst[p:], ad))]
}

// Open authenticates b against ad and decodes it into e. With inPlace it decrypts into b (garbage after);
// otherwise e.Payload points into a new buffer (or, for plain text, into b), and formats 1 and 2 may also be
// bound to legacyAD, as releases before format 3 sealed them. It returns ErrUnreadable for a key not in the
// ring or plain text where the ring requires sealing, ErrCorrupt for what fails to authenticate or decode.
func (r *Ring) Open(b, ad, legacyAD []byte, e *Envelope, inPlace bool) error {
	switch {
	case len(b) < 3 || b[0] != magic0 || b[1] != magic1:
		return ErrCorrupt
	case b[2] != sealedFormat && r.Sealed() && !r.acceptPlain:
		return fmt.Errorf("%w: not sealed", ErrUnreadable)
	case b[2] != sealedFormat:
		return Decode(b, e)
	case !r.Sealed():
		return fmt.Errorf("%w: sealed, and this server has no keys", ErrUnreadable)
	case len(b) < Overhead:
		return ErrCorrupt
	}
	i := slices.IndexFunc(r.keys, func(k sealKey) bool { return k.id == string(b[3:3+keyIDLen]) })
	if i < 0 {
		return fmt.Errorf("%w: sealed with a key not in the ring", ErrUnreadable)
	}
	dst, nonce, sealed := b[headerLen:headerLen], b[3+keyIDLen:headerLen], b[headerLen:]
	if !inPlace {
		dst = make([]byte, 0, len(b)-Overhead)
	}
	plain, err := r.keys[i].aead.Open(dst, nonce, sealed, ad)
	if err != nil && !inPlace && legacyAD != nil {
		plain, err = r.keys[i].aead.Open(dst[:0], nonce, sealed, legacyAD)
		if err == nil && (len(plain) < 3 || plain[2] != 1 && plain[2] != 2) {
			err = ErrCorrupt // a format-3 envelope is bound to ad, never to legacyAD
		}
	}
	if err != nil {
		return fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return Decode(plain, e)
}
