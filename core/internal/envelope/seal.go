package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Sealed layout:
//
//	magic   2 bytes   "hs"
//	format  1 byte    0x81: AES-256-GCM, version 1
//	keyID   4 bytes   which key of the ring sealed it
//	nonce   12 bytes  random
//	sealed  the rest: AES-256-GCM of the plain envelope, with the associated
//	        data the caller binds it to, and its 16-byte tag
const (
	sealedFormat = 0x81
	keyIDLen     = 4
	nonceLen     = 12
	tagLen       = 16
	headerLen    = 3 + keyIDLen + nonceLen
	// Overhead is what sealing adds to an envelope's size.
	Overhead = headerLen + tagLen
	// KeySize is the length of a seal key in bytes.
	KeySize = 32

	deriveInfo = "hybridsession seal v1 aes-256-gcm"
	idInfo     = "hybridsession seal v1 key id"
)

type sealKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// Ring seals envelopes with its first key and opens them with any of its
// keys. A Ring without keys stores envelopes in plain text. It is safe for
// concurrent use.
type Ring struct {
	keys        []sealKey
	acceptPlain bool
}

// NewRing returns a ring of keys, each KeySize bytes; with acceptPlain, a
// ring with keys also opens plain-text envelopes.
func NewRing(keys [][]byte, acceptPlain bool) (*Ring, error) {
	r := &Ring{acceptPlain: acceptPlain}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("seal key %d is %d bytes; want %d", i+1, len(k), KeySize)
		}
		// The cipher's key and the id written into envelopes are both
		// derived, so the id reveals nothing about the key.
		block, err := aes.NewCipher(derive(k, deriveInfo))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sk := sealKey{aead: aead}
		copy(sk.id[:], derive(k, idInfo))
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

// Sealed reports whether the ring has keys.
func (r *Ring) Sealed() bool { return len(r.keys) > 0 }

// Overhead returns what the ring adds to an envelope's size.
func (r *Ring) Overhead() int {
	if r.Sealed() {
		return Overhead
	}
	return 0
}

// Seal appends e to dst, sealed with the first key and bound to ad (the
// storage key and its namespace), or plain without keys.
func (r *Ring) Seal(dst, ad []byte, e *Envelope) []byte {
	if !r.Sealed() {
		return e.Append(dst)
	}
	k := &r.keys[0]
	dst = slices.Grow(dst, Overhead+e.Size())
	dst = append(dst, magic0, magic1, sealedFormat)
	dst = append(dst, k.id[:]...)
	n := len(dst)
	dst = dst[:n+nonceLen]
	_, _ = rand.Read(dst[n:]) // never fails (crypto/rand)
	p := len(dst)
	dst = e.Append(dst)
	out := k.aead.Seal(dst[p:p], dst[n:p], dst[p:], ad)
	return dst[:p+len(out)]
}

// Open authenticates b against ad and decodes it into e. With inPlace it
// decrypts into b's memory (b is garbage afterwards); otherwise e.Payload
// points into a new buffer (or, for plain text, into b). Without inPlace,
// an envelope that fails to authenticate against ad is tried against
// legacyAD too, and accepted if it holds format 1 or 2: releases before
// format 3 bound their seals to legacyAD alone.
//
// It returns ErrUnreadable for an envelope sealed with a key that is not in
// the ring, or in plain text where the ring requires sealing, and
// ErrCorrupt for one that fails to authenticate or decode.
func (r *Ring) Open(b, ad, legacyAD []byte, e *Envelope, inPlace bool) error {
	if len(b) < 3 || b[0] != magic0 || b[1] != magic1 {
		return ErrCorrupt
	}
	if b[2] != sealedFormat {
		if r.Sealed() && !r.acceptPlain {
			return fmt.Errorf("%w: not sealed", ErrUnreadable)
		}
		return Decode(b, e)
	}
	if !r.Sealed() {
		return fmt.Errorf("%w: sealed, and this server has no keys", ErrUnreadable)
	}
	if len(b) < Overhead {
		return ErrCorrupt
	}
	id := b[3 : 3+keyIDLen]
	i := slices.IndexFunc(r.keys, func(k sealKey) bool { return string(k.id[:]) == string(id) })
	if i < 0 {
		return fmt.Errorf("%w: sealed with a key not in the ring", ErrUnreadable)
	}
	var dst []byte
	if inPlace {
		dst = b[headerLen:headerLen]
	} else {
		dst = make([]byte, 0, len(b)-Overhead)
	}
	plain, err := r.keys[i].aead.Open(dst, b[3+keyIDLen:headerLen], b[headerLen:], ad)
	if err != nil && !inPlace && legacyAD != nil {
		plain, err = r.keys[i].aead.Open(dst[:0], b[3+keyIDLen:headerLen], b[headerLen:], legacyAD)
		if err == nil && (len(plain) < 3 || plain[2] != 1 && plain[2] != 2) {
			err = errAuth // a format-3 envelope is bound to ad, never to legacyAD
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, errAuth)
	}
	return Decode(plain, e)
}

var errAuth = errors.New("authentication failed")

// Current reports whether b is sealed with the ring's first key (or, without
// keys, is plain text): resealing it would change nothing.
func (r *Ring) Current(b []byte) bool {
	if !r.Sealed() {
		return len(b) >= 3 && b[2] != sealedFormat
	}
	return len(b) >= headerLen && b[2] == sealedFormat && string(b[3:3+keyIDLen]) == string(r.keys[0].id[:])
}
