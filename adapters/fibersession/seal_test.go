package fibersession_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// TestStorageSealed: what fiber stores through Storage is sealed like the
// Manager's sessions — unreadable in memcached's bytes and in the durable
// tier's rows — and reads back.
func TestStorageSealed(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	durable := durabletest.NewMemory()
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
		Durable:   durable,
		Seal:      core.SealConfig{Keys: [][]byte{core.NewSealKey()}},
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	st := fibersession.NewStorage(store, fibersession.StorageConfig{})
	secret := []byte("fiber-secret-value-5c1d")
	mustSet(t, st, "sess-1", secret, time.Minute)
	expect(t, st, "sess-1", secret)

	key := core.StorageKey("sess-1")
	it, err := memcache.New(mc.Addr).Get("hs:" + key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(it.Value, secret) {
		t.Fatal("the value is readable in memcached")
	}
	rec, found, err := durable.Load(context.Background(), key)
	if err != nil || !found {
		t.Fatalf("row: found=%v err=%v", found, err)
	}
	if bytes.Contains(rec.Payload, secret) {
		t.Fatal("the value is readable in the durable tier")
	}
}
