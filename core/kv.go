package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// KV is a byte key-value view of a Store for other libraries' session stores (fiber's Storage in fibersession
// and fiber3session, scs's Store in scsstore), with the Store's tiers, sync rule and fallbacks. Keys are hashed
// like tokens (StorageKey), so any string works and none is stored in the clear. Values are the payload of entries
// carrying the KV's codec id; entries of other codecs (Manager sessions, other KVs' values) are read without
// their value and skipped by Delete and List. Writes are compare-and-swap over what Read returned. A KV is safe
// for concurrent use.
type KV struct {
	store *Store
	codec uint8
}

// NewKV returns a KV on s whose entries carry codec, an id from 60 to 63 (scsstore uses 60, the fiber Storage
// adapters 61). It panics if s is nil or codec is out of range.
func NewKV(s *Store, codec uint8) *KV {
	if s == nil || !opaqueCodec(codec) {
		panic("core: NewKV expects a Store and a codec from 60 to 63")
	}
	return &KV{store: s, codec: codec}
}

// KVItem is the entry Read found under a key, to write over with Write. A copy (without Value, to save memory)
// can be written in its place, but not by two goroutines at once.
type KVItem struct {
	// Value is the stored value (empty, not nil, for an empty one), or nil for an entry of another codec.
	Value []byte
	// Lag is how far Value may lag the key's latest write: SyncInterval when read from the database behind
	// memcached (write-behind), else 0.
	Lag time.Duration

	e entry
}

// Read returns the entry stored under key, or nil and a nil error when there is none (never set, expired,
// deleted, or an empty key). The error wraps ErrUnavailable when the store could not answer.
func (kv *KV) Read(ctx context.Context, key string) (*KVItem, error) {
	if key == "" {
		return nil, nil
	}
	e, err := kv.store.read(ctx, key)
	if err != nil || e == nil {
		return nil, err
	}
	it := &KVItem{Lag: kv.lag(e.source), e: *e}
	if e.Codec == kv.codec {
		it.Value = e.Payload
		if it.Value == nil {
			it.Value = []byte{}
		}
	}
	return it, nil
}

// Write stores val (unchanged until Write returns) under key with the idle timeout idle and the absolute deadline,
// by compare-and-swap over it, what Read returned for key (nil: nothing); an entry of another codec is replaced.
// memcached is written at once, the database under the Store's sync rule. It returns ErrConflict when the key
// changed since it was read (read again), ErrTooLarge for a value over the item size, and an error wrapping
// ErrUnavailable when the store could not take the write.
func (kv *KV) Write(ctx context.Context, key string, it *KVItem, val []byte, idle time.Duration, deadline time.Time) error {
	now := kv.store.now()
	var err error
	if it == nil {
		err = kv.store.insert(ctx, key, &entry{Envelope: envelope.Envelope{
			Payload: val, Codec: kv.codec, Created: now, Deadline: deadline, IdleTimeout: idle,
		}}, false)
	} else {
		e := &it.e
		if e.Codec != kv.codec || e.Created.IsZero() {
			e.Created = now
		}
		e.Payload, e.Codec, e.Subject, e.Deadline, e.IdleTimeout = val, kv.codec, "", deadline, idle
		err = kv.store.update(ctx, e, change{All: true, Header: true})
	}
	if errors.Is(err, errExists) || errors.Is(err, errDestroyed) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// Delete removes key's value by storing, in both tiers at once, an empty value whose deadline has passed, so a
// later Write may reuse the key (a destroyed session's tombstone would hold it until its deadline). A missing or
// empty key is not an error. The error wraps ErrUnavailable when the database (or, without one, memcached) did
// not take the deletion.
func (kv *KV) Delete(ctx context.Context, key string) error {
	if key == "" {
		return nil
	}
	for attempt := 0; ; attempt++ {
		e, err := kv.store.read(ctx, key)
		if err != nil || e == nil || e.Codec != kv.codec {
			return err
		}
		e.Payload, e.Deadline = nil, kv.store.now()
		err = kv.store.update(ctx, e, change{All: true, Header: true, Durable: true})
		if errors.Is(err, errDestroyed) {
			return nil // gone meanwhile
		}
		if !errors.Is(err, ErrConflict) || attempt >= maxRetries {
			return err
		}
	}
}

// List calls fn, in storage-key order, with the storage key, value and lag (KVItem.Lag) of every live value of
// the KV's codec that has reached the database, overlaid with memcached's newer copy: a database scan plus a
// memcached GetMulti per 500 rows, for iteration (scsstore's All), not the request path. The error wraps
// ErrUnavailable when a tier could not answer; without a database List returns an error.
func (kv *KV) List(ctx context.Context, fn func(storageKey string, val []byte, lag time.Duration)) error {
	return kv.store.each(ctx, "", func(rec durable.Record, row, cp *envelope.Envelope) error {
		if e, src := latest(row, cp, kv.store.now()); e != nil && e.Codec == kv.codec {
			fn(rec.Key, e.Payload, kv.lag(src))
		}
		return nil
	})
}

func (kv *KV) lag(source string) time.Duration {
	if source == srcDatabase {
		return kv.store.grace
	}
	return 0
}

// Now returns the Store's clock reading (StoreConfig.Clock).
func (kv *KV) Now() time.Time { return kv.store.now() }

// SyncInterval returns the Store's SyncInterval after defaults.
func (kv *KV) SyncInterval() time.Duration { return kv.store.syncInterval }
