package core_test

import (
	"context"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

func TestTierInfo(t *testing.T) {
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
	if got := s.TierInfo(); got != (core.TierInfo{}) {
		t.Errorf("new session: Info = %+v, want the zero value", got)
	}
	s.Put("k", "v")
	s.MarkDurable()
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}

	s, _ = m.Load(ctx, s.Token())
	info := s.TierInfo()
	if info.Source != core.SourceCache || info.Version == 0 || info.SyncedAt.IsZero() || info.SyncedVersion != info.Version {
		t.Errorf("after a durable save: Info = %+v, want from memcached, synced at its version", info)
	}

	mc.Restart() // memcached forgets; the row stays
	s, _ = m.Load(ctx, s.Token())
	if got := s.TierInfo(); got.Source != core.SourceDatabase || got.Source.String() != "database" {
		t.Errorf("after a memcached restart: Info = %+v, want from the database", got)
	}
	if s.GetString("k") != "v" {
		t.Errorf("restored session lost its value: %v", s.Get("k"))
	}
}
