package core

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// SealKeySize is the length of a seal key in bytes (AES-256).
const SealKeySize = envelope.KeySize

// NewSealKey returns a new random seal key of SealKeySize bytes.
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
// or URL alphabet, padded or not) of SealKeySize bytes, the sealing key
// first. It returns nil for a string with no keys, and an error naming the
// position of a key that is not valid base64 of SealKeySize bytes.
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
