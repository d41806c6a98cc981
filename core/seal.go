package core

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// SealConfig configures the sealing of envelopes: authenticated encryption
// (AES-256-GCM) of every envelope the Store writes to memcached and to the
// database, bound to the session's storage key. A sealed envelope cannot be
// read, forged, altered, or moved to another session's key by anyone who
// can reach memcached or read the database without holding a key. See
// docs/security.md for the threat model.
//
// The zero value seals nothing: sessions are stored in plain text, and
// NewStore logs a warning saying so.
type SealConfig struct {
	// Keys is the key ring. Each key is 32 bytes from a cryptographically
	// secure random source (NewSealKey; ParseSealKeys reads them from an
	// environment variable). The first key seals every write; every key
	// opens. An entry sealed with a later key is resealed with the first on
	// its next write (a touch counts).
	//
	// To rotate with several app servers: add the new key at the end of
	// every server's ring; once all servers run with it, move it to the
	// front everywhere; remove the old key when Lifetime has passed since
	// (every entry sealed with it is dead by then). A server that meets an
	// envelope sealed with a key it does not hold treats it as a miss.
	//
	// Optional, but without keys anyone who can reach memcached can read
	// every session and forge any (for example, mark their own session as
	// logged in as another user).
	Keys [][]byte

	// AcceptUnsealed makes a Store with Keys also read envelopes that were
	// stored in plain text (before sealing was turned on); they are sealed
	// on their next write. Turn it on while switching a running site to
	// sealing so that nobody is logged out, and off again after Lifetime:
	// while it is on, a forged plain-text envelope is accepted.
	// Optional. Default false. Ignored without Keys.
	AcceptUnsealed bool
}

// SealKeySize is the length of a seal key in bytes.
const SealKeySize = 32

// Sealed envelope layout:
//
//	magic   2 bytes   "hs" (as a plain envelope)
//	format  1 byte    0x81: sealed, AES-256-GCM, version 1
//	keyID   4 bytes   which key of the ring sealed it
//	nonce   12 bytes  random
//	sealed  the rest: AES-256-GCM of the plain envelope, with the storage
//	        key as associated data, and its 16-byte tag
//
// A plain envelope's format byte is 1, so neither decoder mistakes the
// other's bytes for its own.
const (
	sealedFormat   = 0x81
	sealKeyIDLen   = 4
	sealNonceLen   = 12
	sealTagLen     = 16
	sealHeaderLen  = 3 + sealKeyIDLen + sealNonceLen
	sealOverhead   = sealHeaderLen + sealTagLen
	sealLogEvery   = time.Minute
	sealDeriveInfo = "hybridsession seal v1 aes-256-gcm"
	sealIDInfo     = "hybridsession seal v1 key id"
)

// NewSealKey returns a new random 32-byte seal key.
func NewSealKey() []byte {
	k := make([]byte, SealKeySize)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return k
}

// FormatSealKey returns key in the text form ParseSealKeys reads:
// unpadded base64url.
func FormatSealKey(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

// ParseSealKeys parses a key ring written as text, such as an environment
// variable: keys separated by commas or white space, each base64 (standard
// or URL alphabet, padded or not) of 32 bytes, the sealing key first. It
// returns nil for a string with no keys, and an error naming the position
// of a key that is not valid base64 of 32 bytes.
func ParseSealKeys(s string) ([][]byte, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	var keys [][]byte
	for i, f := range fields {
		f = strings.TrimRight(f, "=")
		f = strings.NewReplacer("+", "-", "/", "_").Replace(f)
		k, err := base64.RawURLEncoding.DecodeString(f)
		if err != nil || len(k) != SealKeySize {
			return nil, fmt.Errorf("core: seal key %d is not base64 of %d bytes", i+1, SealKeySize)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

type sealKey struct {
	id   [sealKeyIDLen]byte
	aead cipher.AEAD
}

// sealer seals and opens envelopes for one Store.
type sealer struct {
	keys           []sealKey // keys[0] seals
	acceptUnsealed bool
	log            *slog.Logger
	stats          *counters
	nextLog        atomic.Int64 // unix nanos before which failures are not logged
	unlogged       atomic.Uint64
}

// newSealer returns a sealer for cfg; without keys it stores envelopes
// plain (and still rate-limits the logging of corrupt ones).
func newSealer(cfg SealConfig, log *slog.Logger, stats *counters) (*sealer, error) {
	s := &sealer{acceptUnsealed: cfg.AcceptUnsealed, log: log, stats: stats}
	for i, k := range cfg.Keys {
		if len(k) != SealKeySize {
			return nil, fmt.Errorf("core: StoreConfig.Seal.Keys[%d] is %d bytes; want %d", i, len(k), SealKeySize)
		}
		// The key the cipher uses and the id written into envelopes are both
		// derived, so the id reveals nothing about the key.
		block, err := aes.NewCipher(derive(k, sealDeriveInfo))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sk := sealKey{aead: aead}
		copy(sk.id[:], derive(k, sealIDInfo))
		for _, o := range s.keys {
			if o.id == sk.id {
				return nil, fmt.Errorf("core: StoreConfig.Seal.Keys[%d] repeats an earlier key", i)
			}
		}
		s.keys = append(s.keys, sk)
	}
	return s, nil
}

func derive(key []byte, info string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(info))
	return m.Sum(nil)
}

// aad returns key's bytes without copying: the AEAD only reads them.
func aad(key string) []byte { return unsafe.Slice(unsafe.StringData(key), len(key)) }

// seal appends the sealed envelope of e, bound to the storage key, to dst;
// the plain envelope without keys.
func (s *sealer) seal(key string, dst []byte, e *Entry) []byte {
	if len(s.keys) == 0 {
		return AppendEnvelope(dst, e)
	}
	k := &s.keys[0]
	dst = slices.Grow(dst, sealOverhead+EnvelopeSize(e))
	dst = append(dst, envelopeMagic0, envelopeMagic1, sealedFormat)
	dst = append(dst, k.id[:]...)
	n := len(dst)
	dst = dst[:n+sealNonceLen]
	nonce := dst[n:]
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	p := len(dst)
	dst = AppendEnvelope(dst, e)
	out := k.aead.Seal(dst[p:p], nonce, dst[p:], aad(key))
	return dst[:p+len(out)]
}

// sealed reports whether the sealer has keys.
func (s *sealer) sealed() bool { return len(s.keys) > 0 }

// open authenticates and decrypts b, stored under the storage key, and
// decodes it into e. With inPlace it decrypts into b's own memory (b is
// garbage afterwards, and e.Payload points into it); otherwise e.Payload
// points into a new buffer, and b is left as it was. Without keys e.Payload
// points into b.
func (s *sealer) open(key string, b []byte, e *Entry, inPlace bool) error {
	if len(s.keys) == 0 {
		return s.check(DecodeEnvelope(b, e))
	}
	if len(b) < 3 || b[0] != envelopeMagic0 || b[1] != envelopeMagic1 || b[2] != sealedFormat {
		if s.acceptUnsealed && len(b) >= 3 && plainFormat(b[2]) {
			return s.check(DecodeEnvelope(b, e))
		}
		return s.fail(errors.New("not sealed"))
	}
	if len(b) < sealOverhead {
		return s.fail(errors.New("truncated"))
	}
	id := b[3 : 3+sealKeyIDLen]
	for i := range s.keys {
		k := &s.keys[i]
		if string(k.id[:]) != string(id) {
			continue
		}
		nonce := b[3+sealKeyIDLen : sealHeaderLen]
		var dst []byte
		if inPlace {
			dst = b[sealHeaderLen:sealHeaderLen]
		} else {
			dst = make([]byte, 0, len(b)-sealOverhead)
		}
		plain, err := k.aead.Open(dst, nonce, b[sealHeaderLen:], aad(key))
		if err != nil {
			return s.fail(errors.New("authentication failed"))
		}
		return s.check(DecodeEnvelope(plain, e))
	}
	return s.fail(errors.New("sealed with a key not in the ring"))
}

// check logs an envelope that does not decode (with keys, only a broken
// writer or a compromised key can produce one that opens).
func (s *sealer) check(err error) error {
	if err != nil {
		s.note(err)
	}
	return err
}

func (s *sealer) fail(reason error) error {
	s.stats.sealFailures.Add(1)
	err := fmt.Errorf("%w: %w: %w", ErrCorrupt, ErrNotAuthentic, reason)
	s.note(err)
	return err
}

// note logs err at most once per sealLogEvery, with the number of failures
// since the last log: a flood of forged entries must not flood the log.
func (s *sealer) note(err error) {
	now := time.Now().UnixNano()
	next := s.nextLog.Load()
	if now < next || !s.nextLog.CompareAndSwap(next, now+int64(sealLogEvery)) {
		s.unlogged.Add(1)
		return
	}
	s.log.Warn("hybridsession: a session envelope from memcached or the database is corrupt or failed to open (tampered, forged, copied under another key, or sealed with a key this server does not hold); treated as a miss",
		"error", err, "failures_since_last_log", s.unlogged.Swap(0)+1)
}

// sealEnvelope appends the envelope of e, stored under the storage key, to
// dst: sealed when the Store has keys, plain otherwise.
func (s *Store) sealEnvelope(key string, dst []byte, e *Entry) []byte {
	return s.seal.seal(key, dst, e)
}

// openEnvelope decodes b, read from a tier under the storage key, into e:
// it authenticates and decrypts it first when the Store has keys. Any
// failure is an error wrapping ErrCorrupt (and ErrNotAuthentic when the
// envelope failed to open), for the caller to treat as a miss.
func (s *Store) openEnvelope(key string, b []byte, e *Entry) error {
	return s.seal.open(key, b, e, false)
}

// openEnvelopeInPlace is openEnvelope for bytes nobody uses afterwards (a
// fresh memcached read): it decrypts into b's memory instead of allocating,
// so b must not be used again.
func (s *Store) openEnvelopeInPlace(key string, b []byte, e *Entry) error {
	return s.seal.open(key, b, e, true)
}

// envelopeOverhead is what sealing adds to an envelope's size.
func (s *Store) envelopeOverhead() int {
	if len(s.seal.keys) == 0 {
		return 0
	}
	return sealOverhead
}

// warnUnsealed is logged by NewStore for a Store without keys.
const warnUnsealed = "hybridsession: StoreConfig.Seal.Keys is empty, so sessions are stored in plain text: " +
	"anyone who can reach memcached (it has no authentication) or read the database can read every session, " +
	"and anyone who can write to memcached can forge any session, for example one logged in as another user. " +
	"Set Seal.Keys (see docs/security.md)"

// current reports whether b is sealed with the ring's first key (or, without
// keys, stored in plain text): nothing for Reseal to do.
func (s *sealer) current(b []byte) bool {
	if len(s.keys) == 0 {
		return len(b) >= 3 && plainFormat(b[2])
	}
	return len(b) >= sealHeaderLen && b[2] == sealedFormat && string(b[3:3+sealKeyIDLen]) == string(s.keys[0].id[:])
}

// Reseal rewrites, sealed with the first key of the ring, the live sessions
// whose database row or memcached copy is sealed with another key of the
// ring (or stored in plain text, under AcceptUnsealed): after a key
// rotation, so that the retired key can leave the ring once a full run has
// ended, instead of after Lifetime. New writes are sealed with the first
// key anyway; Reseal is for sessions that are not written meanwhile.
//
// It works one page: up to limit rows with storage keys greater than after,
// in key order (as Store.List), and their memcached copies (one GetMulti).
// It returns the last key examined — pass it as after for the next page;
// "" means the end — and how many rows and memcached copies it resealed.
// Each write is conditional: a row or copy that changed meanwhile keeps
// the newer data (sealed with the first key by its writer). Copies that do
// not open (a key not in the ring) are left alone. The error wraps
// ErrUnavailable when the database could not answer; memcached failures
// leave those copies to their next write.
func (s *Store) Reseal(ctx context.Context, after string, limit int) (next string, resealed int, err error) {
	if s.durable == nil {
		return "", 0, errors.New("core: Reseal: the Store has no durable tier")
	}
	now := s.now()
	dctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	recs, err := s.durable.List(dctx, now, after, limit)
	cancel()
	if err != nil {
		return after, 0, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	if len(recs) == 0 {
		return "", 0, nil
	}
	for _, rec := range recs {
		if s.seal.current(rec.Payload) {
			continue
		}
		var e Entry
		if s.openEnvelope(rec.Key, rec.Payload, &e) != nil {
			continue
		}
		rec.Payload = s.sealEnvelope(rec.Key, nil, &e)
		if applied, err := s.save(ctx, rec); err != nil {
			return rec.Key, resealed, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
		} else if applied {
			resealed++
		}
	}
	if s.mc != nil {
		mkeys := make([]string, len(recs))
		for i := range recs {
			mkeys[i] = s.mc.key(recs[i].Key)
		}
		items, _ := s.mc.getMulti(mkeys)
		for mkey, it := range items {
			key := mkey[len(s.mc.prefix):]
			var e Entry
			if s.seal.current(it.Value) || s.openEnvelope(key, it.Value, &e) != nil || isTombstone(&e) || !e.Alive(now) {
				continue
			}
			if s.mc.cas(mkey, s.sealEnvelope(key, nil, &e), s.cacheExpiration(now, &e), it.CasID) == nil {
				resealed++
			}
		}
	}
	return recs[len(recs)-1].Key, resealed, nil
}
