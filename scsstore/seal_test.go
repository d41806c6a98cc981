package scsstore_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/scsstore"
)

// TestSealed: what scs commits through the Store is sealed like the
// Manager's sessions — unreadable in memcached's bytes and in the table —
// and reads back.
func TestSealed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b, false)
		cs, err := core.NewStore(core.StoreConfig{
			Memcached: core.MemcachedConfig{Servers: []string{st.mc.Addr}},
			Durable:   st.durable,
			Seal:      core.SealConfig{Keys: [][]byte{core.NewSealKey()}},
			Logger:    quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { flush(t, cs) })
		s, err := scsstore.New(cs, scsstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		token := newToken()
		secret := []byte("scs-secret-value-9e4b")
		mustCommit(t, s, token, secret, time.Now().Add(time.Hour))
		if got, found := mustFind(t, s, token); !found || !bytes.Equal(got, secret) {
			t.Fatalf("Find = %q, %v", got, found)
		}
		flush(t, cs)
		it, err := memcache.New(st.mc.Addr).Get("hs:" + core.StorageKey(token))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(it.Value, secret) {
			t.Fatal("the value is readable in memcached")
		}
		rows, err := st.db.Table(st.table).Select("payload").Rows()
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var p []byte
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			n++
			if bytes.Contains(p, secret) {
				t.Fatal("the value is readable in the table")
			}
		}
		if n == 0 {
			t.Fatal("no row written")
		}
	})
}
