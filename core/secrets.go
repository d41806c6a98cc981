package core

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

const tokenLength = 43

// NewToken returns a fresh session token: 32 random bytes (256 bits, twice OWASP's minimum of session id entropy)
// as 43 characters of unpadded base64url.
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24: it crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validToken reports whether s has the shape of NewToken's tokens: 43 characters of the base64url alphabet.
// Cookie values of any other shape are treated as absent and never reach a store.
func validToken(s string) bool {
	return len(s) == tokenLength &&
		strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}

// NewSealKey returns a new random seal key: 32 bytes (AES-256).
func NewSealKey() []byte {
	k := make([]byte, envelope.KeySize)
	_, _ = rand.Read(k) // never fails
	return k
}

// FormatSealKey returns key in the text form ParseSealKeys reads: unpadded base64url.
func FormatSealKey(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

// ParseSealKeys parses a key ring written as text, such as an environment variable: keys separated by commas or
// white space, each base64 (standard or URL alphabet, padded or not) of 32 bytes, the sealing key first. It
// returns nil for a string with no keys, and an error naming the position of a key that is not base64 of 32 bytes.
func ParseSealKeys(s string) ([][]byte, error) {
	var keys [][]byte
	toURLAlphabet := strings.NewReplacer("+", "-", "/", "_")
	for i, f := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(", \t\n\r", r) }) {
		k, err := base64.RawURLEncoding.DecodeString(toURLAlphabet.Replace(strings.TrimRight(f, "=")))
		if err != nil || len(k) != envelope.KeySize {
			return nil, fmt.Errorf("core: seal key %d is not base64 of %d bytes", i+1, envelope.KeySize)
		}
		keys = append(keys, k)
	}
	return keys, nil
}
