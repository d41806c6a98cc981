package scsstore

import (
	"encoding/binary"
	"errors"
	"time"
)

// CodecID is the codec id scsstore writes into the envelope of every entry
// it stores (its core.KV's codec). The payload behind it is not a set of
// session values but scsstore's own layout wrapped around scs's opaque
// blob (see DecodePayload), so a core.Manager sharing the Store cannot read
// these entries: it treats them as absent (an unknown codec), and the
// reaper's archive hook receives them with nil Values and the raw payload.
//
// Ids 1 to 63 are reserved for hybridsession; 60 is taken by scsstore.
const CodecID uint8 = 60

// Payload layout, format 1. Integers are unsigned varints; times are Unix
// milliseconds.
//
//	format    1 byte   1
//	expiry    uvarint  the expiry scs passed to Commit
//	at        uvarint  when the commit was made (the Store's clock)
//	tokenLen  uvarint  0 unless Config.Iterable; at most maxTokenLen
//	token     the token scs passed to Commit (its SHA-256 with HashTokenInStore)
//	blob      the rest: scs's encoded session, as scs gave it
const (
	payloadFormat = 1
	// maxTokenLen bounds the tokens scsstore accepts. scs's tokens and
	// their hashes are 43 bytes.
	maxTokenLen = 255
)

var errBadPayload = errors.New("scsstore: malformed payload")

// payload is the decoded form of an entry's Payload.
type payload struct {
	expiry time.Time
	at     time.Time
	token  string
	blob   []byte
}

// appendPayload appends the encoded payload to dst. token is empty unless
// the Store is iterable.
func appendPayload(dst []byte, expiry, at time.Time, token string, blob []byte) []byte {
	dst = append(dst, payloadFormat)
	dst = binary.AppendUvarint(dst, unixMilli(expiry))
	dst = binary.AppendUvarint(dst, unixMilli(at))
	dst = binary.AppendUvarint(dst, uint64(len(token)))
	dst = append(dst, token...)
	return append(dst, blob...)
}

// payloadSize is the exact length appendPayload produces.
func payloadSize(expiry, at time.Time, token string, blob []byte) int {
	return 1 + uvarintLen(unixMilli(expiry)) + uvarintLen(unixMilli(at)) +
		uvarintLen(uint64(len(token))) + len(token) + len(blob)
}

// parsePayload decodes b. The blob aliases b and is capped at its length,
// so appending to it never writes into b. It never panics.
func parsePayload(b []byte) (payload, error) {
	var p payload
	if len(b) < 1 || b[0] != payloadFormat {
		return p, errBadPayload
	}
	b = b[1:]
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return p, errBadPayload
		}
		vals[i], b = v, b[n:]
	}
	if vals[2] > maxTokenLen || vals[2] > uint64(len(b)) {
		return p, errBadPayload
	}
	const maxMs = 1 << 53 // far beyond any real time; keeps time arithmetic in range
	if vals[0] > maxMs || vals[1] > maxMs {
		return p, errBadPayload
	}
	n := int(vals[2])
	p.expiry = time.UnixMilli(int64(vals[0]))
	p.at = time.UnixMilli(int64(vals[1]))
	if n > 0 {
		p.token = string(b[:n])
	}
	p.blob = b[n:len(b):len(b)]
	return p, nil
}

// DecodePayload splits the Payload of an entry that scsstore stored
// (a core.KV value or a core.ArchivedSession.Payload with Codec equal
// to CodecID) into the scs token it was stored with, the expiry scs gave, and
// scs's own encoded session, which scs's Codec decodes. token is empty when
// the entry was written without Config.Iterable. Use it in a reaper archive
// hook or a migration; the Store does it for Find and All. blob aliases p.
// It returns an error for bytes scsstore did not write.
func DecodePayload(p []byte) (token string, expiry time.Time, blob []byte, err error) {
	d, err := parsePayload(p)
	if err != nil {
		return "", time.Time{}, nil, err
	}
	return d.token, d.expiry, d.blob, nil
}

func unixMilli(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
