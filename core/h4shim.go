package core

import (
	"context"
	"time"
)

// TEMPORARY (branch h4): manager.go still uses the old exported names. When
// merging, rename there (Entry→entry, Change→change, store.Get→store.read,
// store.Insert→insert, store.Update→update, store.Destroy→destroy,
// store.Now()→store.now()) and delete this file.

type Entry = entry
type Change = change

func (s *Store) Get(ctx context.Context, token string) (*entry, error) { return s.read(ctx, token) }
func (s *Store) Insert(ctx context.Context, token string, e *entry, durable bool) error {
	return s.insert(ctx, token, e, durable)
}
func (s *Store) Update(ctx context.Context, e *entry, c change) error { return s.update(ctx, e, c) }
func (s *Store) Destroy(ctx context.Context, e *entry) error          { return s.destroy(ctx, e) }
func (s *Store) Now() time.Time                                       { return s.now() }
