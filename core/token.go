package core

import (
	"crypto/rand"
	"encoding/base64"
)

// tokenLength is the length of a session token: 32 bytes from crypto/rand
// (256 bits, twice OWASP's 128-bit minimum of session id entropy), encoded
// as unpadded base64url.
const tokenLength = 43

// NewToken returns a fresh session token. It panics only if the operating
// system's random source fails, which crypto/rand documents as unrecoverable.
func NewToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("core: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validToken reports whether s has the shape of a token NewToken makes:
// exactly 43 characters of the base64url alphabet. Cookie values of any
// other shape are treated as absent and never reach a store.
func validToken(s string) bool {
	if len(s) != tokenLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
