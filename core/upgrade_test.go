package core_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// legacyRow is a row the release before envelope format 3 wrote for
// legacyToken: format 1, msgpack {"user":"ada"}, created at legacyCreated.
const (
	legacyToken   = "602fZekWx8RogX-TVOiLAPdK7ty2wLWAaGSSfMtxK_o"
	legacyPayload = "6873010300f5d0c9f5a434f588e39ea534c0ee6df5d0c9f5a4348080c0bae8e4ba921af5d0c9f5a4348080c0bae8e4ba921a0081a475736572a3616461"
)

var legacyCreated = time.UnixMilli(1796616644725)

// legacySeal seals plain as that release did: AES-256-GCM under a key
// derived from key, bound to the storage key alone.
func legacySeal(t *testing.T, key []byte, storageKey string, plain []byte) []byte {
	t.Helper()
	derive := func(info string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(info))
		return m.Sum(nil)
	}
	block, err := aes.NewCipher(derive("hybridsession seal v1 aes-256-gcm"))
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := cipher.NewGCM(block)
	out := append([]byte("hs\x81"), derive("hybridsession seal v1 key id")[:4]...)
	nonce := make([]byte, 12)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, []byte(storageKey))
}

// Sessions the previous release stored, plain or sealed, are still served
// after the upgrade: nobody is logged out by it. Its memcached copies are
// not read (they are reread from their rows).
func TestPreviousReleaseSessionsSurviveTheUpgrade(t *testing.T) {
	plain, _ := hex.DecodeString(legacyPayload)
	key := core.NewSealKey()
	for name, tc := range map[string]struct {
		payload []byte
		seal    core.SealConfig
	}{
		"plain":  {payload: plain},
		"sealed": {payload: legacySeal(t, key, core.StorageKey(legacyToken), plain), seal: core.SealConfig{Keys: [][]byte{key}}},
	} {
		t.Run(name, func(t *testing.T) {
			mc := memcachedtest.Start(t, memcachedtest.Options{})
			mem := durabletest.NewMemory()
			ctx := context.Background()
			rec := durable.Record{Key: core.StorageKey(legacyToken), Payload: tc.payload, Version: 1,
				ExpiresAt: legacyCreated.Add(30 * time.Minute), Deadline: legacyCreated.Add(24 * time.Hour)}
			if _, err := mem.Write(ctx, []durable.Write{{Record: rec}}); err != nil {
				t.Fatal(err)
			}
			c := newClock()
			c.ns.Store(legacyCreated.Add(time.Minute).UnixNano())
			a := newServer(t, c, serverOpts{servers: []string{mc.Addr}, durable: mem, seal: tc.seal})
			if got := a.value(legacyToken, "user"); got != "ada" {
				t.Fatalf("user = %q: the upgrade logged the session out", got)
			}
			a.request(legacyToken, func(s *core.Session) { s.Put("cart", "book"); s.MarkDurable() })
			mc.Restart()
			if got := a.value(legacyToken, "cart"); got != "book" {
				t.Errorf("a change after the upgrade: cart = %q", got)
			}
		})
	}
}
