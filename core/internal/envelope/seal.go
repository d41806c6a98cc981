package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"slices"
)

// Sealed layout: magic "hs", format 0x81 (AES-256-GCM, version 1), the
// 4-byte id of the key that sealed it, a random 12-byte nonce, then the plain
// envelope sealed with the associated data the caller binds it to, and the
// 16-byte tag.
const (
	sealedFormat = 0x81
	keyIDLen     = 4
	nonceLen     = 12
	headerLen    = 3 + keyIDLen + nonceLen
	// Overhead is what sealing adds to an envelope's size.
	Overhead = headerLen + 16
	// KeySize is the length of a seal key in bytes.
	KeySize = 32
)

type sealKey struct {
	id   string // keyIDLen bytes
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
		// derived, so the id reveals nothing about the key. AES with a
		// 32-byte key, and GCM on AES, cannot fail.
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
	dst = append(append(slices.Grow(dst, Overhead+e.Size()), magic0, magic1, sealedFormat), k.id[:]...)
	n := len(dst)
	dst = dst[:n+nonceLen]
	_, _ = rand.Read(dst[n:]) // never fails (crypto/rand)
	p := len(dst)
	dst = e.Append(dst)
	return dst[:p+len(k.aead.Seal(dst[p:p], dst[n:p], dst[p:], ad))]
}

// Open authenticates b against ad and decodes it into e. With inPlace it
// decrypts into b's memory (b is garbage afterwards); otherwise e.Payload
// points into a new buffer (or, for plain text, into b). Without inPlace, an
// envelope that fails to authenticate against ad is tried against legacyAD
// too, and accepted if it holds format 1 or 2: releases before format 3 bound
// their seals to legacyAD alone.
//
// It returns ErrUnreadable for an envelope sealed with a key that is not in
// the ring, or in plain text where the ring requires sealing, and ErrCorrupt
// for one that fails to authenticate or decode.
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
