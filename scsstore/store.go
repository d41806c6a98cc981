package scsstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/hybridsession/hybridsession/core"
)

// Store is an scs session store on a hybridsession core.Store: memcached
// first, the database second, and a database write at most once per
// SyncInterval per session. It implements scs.Store, scs.CtxStore,
// scs.IterableStore and scs.IterableCtxStore; All works only with
// Config.Iterable.
//
// Tokens: scs hands the store its token, or the token's SHA-256 when
// HashTokenInStore is on; the core.Store hashes it again for its keys, so
// neither memcached nor the database holds a live token under either
// setting (see Config.Iterable for the one exception).
//
// Expiry: a session is found until the expiry scs gave its last Commit,
// to the millisecond. Both tiers keep it SyncInterval longer, so that a
// session whose last expiry had not reached the database yet survives the
// loss of memcached, at the price of an overshoot: a session read back
// from the database may be found up to SyncInterval past its expiry (see
// the package documentation).
//
// Find and Commit: scs calls them separately in each request. Find
// remembers the entry it read (bounded; see Config.RememberSize), and the
// Commit of the same token writes over it with compare-and-swap, so a
// request costs one memcached read and one compare-and-swap, and the
// Store's sync rule applies: the database is written when the session is
// new, or was last synced SyncInterval ago or more. When nothing is
// remembered, Commit reads the session first.
//
// Concurrent requests on one session: scs hands over whole sessions, so
// the last Commit wins; a Commit that meets a concurrent write reads the
// session again and writes over it. (core.Manager merges key by key
// instead.)
//
// A Store is safe for concurrent use. It never closes the core.Store.
type Store struct {
	store *core.Store
	kv    *core.KV
	cfg   Config
	memo  *memo
}

var (
	_ scs.Store            = (*Store)(nil)
	_ scs.CtxStore         = (*Store)(nil)
	_ scs.IterableStore    = (*Store)(nil)
	_ scs.IterableCtxStore = (*Store)(nil)
)

// commitAttempts bounds the reads and writes of one Commit that keeps
// meeting concurrent writers.
const commitAttempts = 16

// pause backs off after a lost compare-and-swap, for a random time that
// grows with the attempt (up to 1.6 ms), so that writers racing on one
// session spread out instead of colliding again.
func pause(attempt int) {
	time.Sleep(rand.N(time.Duration(min(attempt+1, 8)) * 200 * time.Microsecond))
}

// New returns a Store on s, which it does not close. It returns an error
// when s is nil or cfg is invalid (a negative RememberFor).
func New(s *core.Store, cfg Config) (*Store, error) {
	if s == nil {
		return nil, errors.New("scsstore: New needs a *core.Store")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	kv := core.NewKV(s, CodecID)
	return &Store{store: s, kv: kv, cfg: cfg, memo: newMemo(cfg.RememberSize, cfg.RememberFor)}, nil
}

// Find returns the session data stored under token. It is FindCtx with
// context.Background.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// FindCtx returns the session data that scs committed under token. found is
// false, with a nil error, when there is no such session, it has expired,
// or the token or the stored entry is malformed; err reports only that the
// tiers could not answer (it wraps core.ErrUnavailable). The returned bytes
// belong to the caller.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	if !validToken(token) {
		return nil, false, nil
	}
	it, err := s.kv.Read(ctx, token)
	if err != nil {
		return nil, false, fmt.Errorf("scsstore: find: %w", err)
	}
	if it == nil {
		return nil, false, nil
	}
	p, ok := s.open(it.Value, it.Lag, s.kv.Now())
	if !ok || (p.token != "" && p.token != token) {
		return nil, false, nil
	}
	s.memo.put(token, it)
	return p.blob, true, nil
}

// open decodes v, a value of the KV (nil: an entry of another codec) read
// at now with lag (core.KVItem.Lag), and reports whether it is a live scs
// session.
func (s *Store) open(v []byte, lag time.Duration, now time.Time) (payload, bool) {
	if v == nil {
		return payload{}, false
	}
	p, err := parsePayload(v)
	if err != nil {
		return payload{}, false
	}
	if now.Before(p.expiry) {
		return p, true
	}
	// Past the expiry scs gave. A copy written by Commit is exact: the
	// session is over. A value read from the database holds the expiry of
	// the last sync; later commits, lost with memcached, were made less than
	// lag (SyncInterval) after it and moved the expiry by as much at most:
	// accept it within that bound, and no further. (Without memcached the
	// Store writes every commit through and never reads with a lag.)
	return p, now.Before(p.expiry.Add(lag))
}

// Commit stores the session data under token until expiry. It is CommitCtx
// with context.Background.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// CommitCtx stores b, scs's encoded session, under token until expiry,
// replacing the data and expiry stored before. An expiry that has already
// passed deletes the session. b is copied.
//
// The session goes to memcached at once and to the database when it is new
// or its last sync is SyncInterval old (core.KV.Write). It returns
// ErrInvalidToken for an empty token or one over 255 bytes, an error
// wrapping core.ErrTooLarge when the session exceeds memcached's item size
// (nothing is written), and one wrapping core.ErrUnavailable when no tier
// took the write.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	if !validToken(token) {
		return ErrInvalidToken
	}
	now := s.kv.Now()
	if expiry.UnixMilli() <= now.UnixMilli() {
		return s.DeleteCtx(ctx, token)
	}
	kept := ""
	if s.cfg.Iterable {
		kept = token
	}
	// The idle timeout ends the session at scs's expiry, so that a copy
	// memcached holds past it reads as dead and is checked against the row
	// (another app server may have committed around a node it could not
	// reach); the deadline gives the row the database copy's lag.
	deadline := expiry.Add(max(s.kv.SyncInterval(), 0))
	p := make([]byte, 0, payloadSize(expiry, now, kept, b))
	it := s.memo.take(token)
	existed := it != nil
	for attempt := range commitAttempts {
		if it == nil {
			var err error
			if it, err = s.kv.Read(ctx, token); err != nil {
				return fmt.Errorf("scsstore: commit: %w", err)
			}
			if it == nil && existed {
				// The session was there when this request read it and is
				// gone now: another request destroyed it (a logout) or it
				// expired. The destruction wins; this commit is dropped.
				return nil
			}
			existed = existed || it != nil
		}
		// The commit time in the payload must be read just before the
		// write, which records activity at its own clock reading: open
		// tells the two apart from a copy read back from the database.
		now = s.kv.Now()
		p = appendPayload(p[:0], expiry, now, kept, b)
		err := s.kv.Write(ctx, token, it, p, expiry.Sub(now), deadline)
		switch {
		case errors.Is(err, core.ErrConflict):
			// Created, changed or destroyed since it was read: read it
			// again and write over it — unless it is gone by then (scs
			// never reuses a token: another request destroyed the
			// session after this one loaded it, and the destruction wins).
			it, existed = nil, true
			pause(attempt)
		case err != nil:
			return fmt.Errorf("scsstore: commit: %w", err)
		default:
			return nil
		}
	}
	return fmt.Errorf("scsstore: commit: %d concurrent writes in a row: %w", commitAttempts, core.ErrConflict)
}

// Delete removes the session stored under token. It is DeleteCtx with
// context.Background.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// DeleteCtx removes the session stored under token from both tiers. A
// missing session, or a malformed token, is not an error. An error wraps
// core.ErrUnavailable: a tier that may hold the session could not be
// reached, and the session may still exist.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if !validToken(token) {
		return nil
	}
	s.memo.forget(token)
	if err := s.store.Delete(ctx, token); err != nil {
		return fmt.Errorf("scsstore: delete: %w", err)
	}
	return nil
}

// All returns every live session. It is AllCtx with context.Background.
func (s *Store) All() (map[string][]byte, error) {
	return s.AllCtx(context.Background())
}

// AllCtx returns every live session, keyed by the token scs committed it
// under (the token's hash with HashTokenInStore), for scs's Iterate. With no
// live session it returns an empty, non-nil map.
//
// memcached cannot list its keys, so AllCtx pages through core.KV.List:
// the database's live rows with memcached's newer copies laid over them.
// It sees the sessions that have reached the database: every session does
// when it is created. It costs a database scan plus one memcached GetMulti
// per page; it is meant for administration, not for the request path. It returns ErrNotIterable
// unless Config.Iterable is set, and an error wrapping core.ErrUnavailable
// when a tier could not answer.
func (s *Store) AllCtx(ctx context.Context) (map[string][]byte, error) {
	if !s.cfg.Iterable {
		return nil, ErrNotIterable
	}
	all := make(map[string][]byte)
	err := s.kv.List(ctx, func(key string, v []byte, lag time.Duration) {
		p, ok := s.open(v, lag, s.kv.Now())
		if ok && p.token != "" && core.StorageKey(p.token) == key {
			all[p.token] = p.blob
		}
	})
	if err != nil {
		return nil, fmt.Errorf("scsstore: all: %w", err)
	}
	return all, nil
}

func validToken(token string) bool {
	return token != "" && len(token) <= maxTokenLen
}
