package core

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// KV is a byte key-value view of a Store for the storage interfaces of
// frameworks (fiber's Storage in fibersession and fiber3session): opaque
// values under arbitrary string keys, in memcached with the database
// behind it, under the Store's sync rule and fallbacks.
//
// Keys are passed to the Store as tokens: the Store hashes them, so any
// string works and none is stored in the clear. Values become the payload
// of entries with codec FiberCodecID; entries of other codecs (Manager
// sessions) are neither read nor overwritten. An expiration given to Set
// becomes the entry's idle timeout and its deadline, so that it expires
// that long after the last Set; Get does not extend it.
//
// Concurrent Sets of one key are resolved by compare-and-swap: the last
// writer wins, whole value for whole value. A KV is safe for concurrent use.
type KV struct {
	store        *Store
	noExpiration time.Duration
	maxRetries   int
}

// NewKV returns a KV on s. noExpiration is the lifetime of a value Set
// with an expiration of 0 or less (the store keeps nothing forever);
// maxRetries bounds Set's compare-and-swap retries (see Set). It panics
// if s is nil or noExpiration or maxRetries is not positive.
func NewKV(s *Store, noExpiration time.Duration, maxRetries int) *KV {
	if s == nil || noExpiration <= 0 || maxRetries <= 0 {
		panic("core: NewKV expects a Store and a positive noExpiration and maxRetries")
	}
	return &KV{store: s, noExpiration: noExpiration, maxRetries: maxRetries}
}

// Get returns the value stored under key, or nil with a nil error when
// there is none (never set, expired, deleted, an entry that a KV did not
// write, or an empty key). The error wraps ErrUnavailable when the store
// could not answer.
func (kv *KV) Get(ctx context.Context, key string) ([]byte, error) {
	if key == "" {
		return nil, nil
	}
	e, err := kv.store.Get(ctx, key)
	if err != nil || e == nil || e.Codec != FiberCodecID {
		return nil, err
	}
	if e.Payload == nil {
		return []byte{}, nil
	}
	return e.Payload, nil
}

// Set stores val under key for exp. An empty key or an empty val is
// ignored and nil returned (fiber's Storage contract). Set does not keep
// val after it returns.
//
// Set reads the key and writes with compare-and-swap. When another writer
// changed the key in between, Set reads again and writes again, so the Set
// that finishes last wins. After maxRetries lost races in a row it returns
// nil without writing: each lost race was another Set or Delete of the
// key completing during this call, so the result equals this Set followed
// by the last of those writes. Set never fails with ErrConflict.
//
// It returns ErrTooLarge for a value over the store's item size, an error
// wrapping ErrUnavailable when the store could not take the write, and an
// error when key holds an entry that a KV did not write (a Manager
// session), which it does not overwrite.
func (kv *KV) Set(ctx context.Context, key string, val []byte, exp time.Duration) error {
	if key == "" || len(val) == 0 {
		return nil
	}
	if exp <= 0 {
		exp = kv.noExpiration
	}
	for attempt := 0; ; attempt++ {
		e, err := kv.store.Get(ctx, key)
		if err != nil {
			return err
		}
		now := kv.store.Now()
		if e == nil {
			err = kv.store.Insert(ctx, key, &Entry{
				Payload: val, Codec: FiberCodecID, Created: now, Deadline: now.Add(exp), IdleTimeout: exp,
			}, false)
		} else {
			if e.Codec != FiberCodecID {
				return fmt.Errorf("core: KV.Set: the key holds an entry of codec %d, not KV data", e.Codec)
			}
			e.Payload, e.Deadline, e.IdleTimeout = val, now.Add(exp), exp
			err = kv.store.Update(ctx, e, Change{All: true, Header: true})
		}
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrExists) {
			return err
		}
		if attempt >= kv.maxRetries {
			return nil
		}
	}
}

// Delete removes key's value: it is stored again, in both tiers at once,
// as an empty value whose deadline has passed, so that a later Set may
// reuse the key (a destroyed session's tombstone would keep it until its
// deadline). A missing or empty key is not an error. The error wraps
// ErrUnavailable when the database (or, without one, memcached) did not
// take the deletion.
func (kv *KV) Delete(ctx context.Context, key string) error {
	if key == "" {
		return nil
	}
	for attempt := 0; ; attempt++ {
		e, err := kv.store.Get(ctx, key)
		if err != nil || e == nil || e.Codec != FiberCodecID {
			return err
		}
		e.Payload, e.Deadline = nil, kv.store.Now()
		err = kv.store.Update(ctx, e, Change{All: true, Header: true, Durable: true})
		if !errors.Is(err, ErrConflict) || attempt >= kv.maxRetries {
			return err
		}
	}
}
