package core_test

import (
	"context"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

func TestSource(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
		Durable:   durabletest.NewMemory(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, _ := m.Load(ctx, "")
	if got := s.Source(); got != "" {
		t.Errorf("new session: Source = %q, want empty", got)
	}
	s.Put("k", "v")
	s.MarkDurable()
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}

	s, _ = m.Load(ctx, s.Token())
	if got := s.Source(); got != "memcached" {
		t.Errorf("after a durable save: Source = %q, want memcached", got)
	}

	mc.Restart() // memcached forgets; the row stays
	s, _ = m.Load(ctx, s.Token())
	if got := s.Source(); got != "database" {
		t.Errorf("after a memcached restart: Source = %q, want database", got)
	}
	if getString(s, "k") != "v" {
		t.Errorf("restored session lost its value: %v", s.Get("k"))
	}
}
