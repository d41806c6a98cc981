package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/bradfitz/gomemcache/memcache"
)

// WriteFlags modify Store.Update.
type WriteFlags uint8

const (
	// WriteChanged marks a write that changed Payload or Subject: the
	// version is bumped. Without it the write only refreshes activity
	// (a touch).
	WriteChanged WriteFlags = 1 << iota
	// WriteDurable sends the write to the durable tier now, on the request
	// path, whatever SyncInterval says.
	WriteDurable
	// WriteReuseKey lets Insert replace the tombstone of a destroyed
	// session: for callers that reuse keys on purpose (fiber.Storage's
	// Set after Delete), never for session tokens, where it would let a
	// request that raced a logout bring the session back.
	WriteReuseKey

	writeInsert // internal: syncNow for Insert
)

// Insert stores a new session under token, in memcached (with add) and
// synchronously in the durable tier. It sets e's Version, ActiveAt and
// SyncedAt; the caller sets Payload, Codec, Subject, Created, Deadline and
// IdleTimeout. Of flags only WriteReuseKey counts; the write is always
// durable.
//
// It returns ErrExists when a live session holds token, ErrDestroyed when a
// destroyed one does (its tombstone stands until every copy of it has
// expired) unless flags has WriteReuseKey, ErrTooLarge when the envelope
// exceeds MaxItemSize, ErrInvalidSubject for a bad Subject, and an error
// wrapping ErrUnavailable when no tier stored it. When memcached stored it
// but the database did not, the background writer keeps the write until the
// database takes it, and Insert succeeds.
func (s *Store) Insert(ctx context.Context, token string, e *Entry, flags WriteFlags) error {
	if err := s.checkSize(e); err != nil {
		return err
	}
	now := s.now()
	next := *e
	next.Version = nextVersion(0, now)
	next.ActiveAt = now
	next.Restored = false
	next.SyncedAt, next.SyncedVersion = now, next.Version
	s.noteIdle(next.IdleTimeout)
	key, mkey := s.keys(token)
	buf := s.encode(key, &next)
	defer s.putBuf(buf)

	var cacheErr error
	if s.mc != nil {
		err := s.mc.add(mkey, *buf, s.cacheExpiration(now, &next))
		switch {
		case errors.Is(err, memcache.ErrNotStored):
			// Taken — unless by a tombstone or a dead entry of a reused key.
			if err := s.replaceDead(mkey, *buf, s.cacheExpiration(now, &next), now, flags&WriteReuseKey != 0); err != nil {
				if !errors.Is(err, ErrCacheUnavailable) {
					return err
				}
				cacheErr = err
				s.stats.fallbacks.Add(1)
			}
		case err != nil:
			cacheErr = err
			s.stats.fallbacks.Add(1)
		}
	}
	if cacheErr != nil {
		s.aroundNode(key, &next, buf)
	}
	if err := s.syncNow(ctx, key, &next, *buf, now, cacheErr != nil || s.mc == nil, flags|writeInsert, basis{}); err != nil {
		if errors.Is(err, ErrDestroyed) && cacheErr == nil && s.mc != nil {
			_ = s.mc.delete(mkey) // the database keeps the tombstone
		}
		return err
	}
	if cacheErr != nil {
		s.mc.markDirty(mkey, around(&next, flags&WriteReuseKey != 0))
	}
	next.casID, next.cached = 0, false
	*e = next
	return nil
}

// Update writes e, read from Get under token, back. With WriteChanged the
// version is bumped; without it the write is a touch that only refreshes
// ActiveAt. The write always goes to memcached, with compare-and-swap
// against the copy Get read, and to the durable tier when the sync rule
// says so: WriteDurable, SyncInterval is EveryWrite, the entry was never
// synced, or it was last synced SyncInterval ago or more. Periodic syncs are
// handed to the background writer; the others are written before Update
// returns. While memcached is unavailable for the key every write goes to
// the durable tier synchronously.
//
// Every database write is conditional on the row e was built on
// (Record.Base): when the row holds a change e never saw, written around
// e's memcached node by an app server that could not reach it, the row
// wins and replaces memcached's copy (docs/consistency.md, I4).
//
// On success e holds what was written. It returns ErrConflict when the
// session changed since Get, in memcached or, for a write that reaches the
// database before Update returns, in the row (re-read it and re-apply your
// change),
// ErrTooLarge when the envelope exceeds MaxItemSize (nothing is written), and
// an error wrapping ErrUnavailable when no tier accepted the write.
func (s *Store) Update(ctx context.Context, token string, e *Entry, flags WriteFlags) error {
	if err := s.checkSize(e); err != nil {
		return err
	}
	now := s.now()
	b := basisOf(e)
	next := *e
	if flags&WriteChanged != 0 {
		next.Version = nextVersion(next.Version, now)
		if next.UnsyncedSince == 0 && s.durable != nil {
			next.UnsyncedSince = cmp.Or(b.from, next.Version)
		}
	}
	s.noteIdle(next.IdleTimeout)
	next.ActiveAt = now
	next.Restored = false
	// A change is due when SyncInterval has passed since the last sync. A
	// touch only when no reaper runs: otherwise the reaper keeps the row
	// ahead of the session's expiry (ReaperConfig.Lookahead).
	due := flags&WriteDurable != 0 || s.syncInterval < 0 || next.SyncedAt.IsZero() ||
		(now.Sub(next.SyncedAt) >= s.syncInterval && (flags&WriteChanged != 0 || s.touchSyncs))
	if due && s.durable != nil {
		// SyncedVersion moves once the database has taken the sync
		// (promote): until then the change is one of the entry's own.
		next.SyncedAt = now
	}
	key, mkey := s.entryKeys(token, e)
	buf := s.encode(key, &next)
	defer s.putBuf(buf)

	var cacheErr error
	if s.mc != nil {
		cacheErr = s.casWrite(mkey, e, *buf, s.cacheExpiration(now, &next))
		if errors.Is(cacheErr, ErrConflict) {
			s.stats.casConflicts.Add(1)
			return cacheErr
		}
		if cacheErr != nil {
			s.stats.fallbacks.Add(1)
		}
	}
	switch {
	case s.durable == nil:
		if cacheErr != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, cacheErr)
		}
	case cacheErr != nil || s.mc == nil:
		// Write-through while memcached cannot take the write.
		if cacheErr != nil {
			s.aroundNode(key, &next, buf)
		}
		if err := s.saveConditional(ctx, key, &next, *buf, cacheErr, b); err != nil {
			return err // no tier took the change: memcached's copy is still the latest
		}
		if cacheErr != nil {
			s.mc.markDirty(mkey, around(&next, false)) // the database now holds a newer copy than the node may
		}
	case !due:
		s.stats.dbWritesSkipped.Add(1)
	case flags&WriteDurable != 0 || s.syncInterval < 0:
		if err := s.syncNow(ctx, key, &next, *buf, now, false, flags, b); err != nil {
			return err
		}
	default:
		s.syncLater(key, &next, *buf, now, b)
	}
	if flags&WriteChanged == 0 {
		s.stats.touches.Add(1)
	}
	next.casID, next.cached = 0, false
	*e = next
	return nil
}

// casWrite writes buf over the memcached copy that base was read from. It
// returns ErrConflict when that copy changed or vanished meanwhile, and an
// ErrCacheUnavailable error when memcached could not be asked.
func (s *Store) casWrite(mkey string, base *Entry, buf []byte, exp int32) error {
	if base.cached {
		err := s.mc.cas(mkey, buf, exp, base.casID)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, memcache.ErrCASConflict):
			return ErrConflict
		case errors.Is(err, memcache.ErrCacheMiss):
			// Gone since the read: evicted, expired — or destroyed and its
			// tombstone expired. Adding our copy back could revive a
			// destroyed session: let the caller re-read instead.
			return ErrConflict
		default:
			return err
		}
	}
	// base came from the durable tier (memcached missed or was down). Find
	// out what memcached holds now, and write only over the same version.
	it, err := s.mc.get(mkey)
	if err != nil {
		return err
	}
	if it == nil {
		return s.addOrConflict(mkey, buf, exp)
	}
	var cur Entry
	if err := s.openEnvelope(mkey[len(s.mc.prefix):], it.Value, &cur); err != nil {
		return s.mc.set(mkey, buf, exp) // corrupt: ours is the only good copy
	}
	if cur.Version != base.Version || isTombstone(&cur) {
		return ErrConflict
	}
	err = s.mc.cas(mkey, buf, exp, it.CasID)
	if errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrCacheMiss) {
		return ErrConflict
	}
	return err
}

// replaceDead writes buf over the entry at mkey if that entry is dead or
// corrupt, or a tombstone and reuse is set. It returns ErrExists when a live
// session holds the key and ErrDestroyed when a tombstone does (without
// reuse).
func (s *Store) replaceDead(mkey string, buf []byte, exp int32, now time.Time, reuse bool) error {
	it, err := s.mc.get(mkey)
	if err != nil {
		return err
	}
	if it == nil {
		return s.addOrExists(mkey, buf, exp)
	}
	var cur Entry
	if s.openEnvelope(mkey[len(s.mc.prefix):], it.Value, &cur) == nil {
		switch {
		case isTombstone(&cur) && !reuse:
			return ErrDestroyed
		case !isTombstone(&cur) && cur.Alive(now):
			return ErrExists
		}
	}
	err = s.mc.cas(mkey, buf, exp, it.CasID)
	if isProtocolAnswer(err) {
		return ErrExists // someone else wrote it first
	}
	return err
}

func (s *Store) addOrExists(mkey string, buf []byte, exp int32) error {
	err := s.mc.add(mkey, buf, exp)
	if errors.Is(err, memcache.ErrNotStored) {
		return ErrExists
	}
	return err
}

func (s *Store) addOrConflict(mkey string, buf []byte, exp int32) error {
	err := s.mc.add(mkey, buf, exp)
	if errors.Is(err, memcache.ErrNotStored) {
		return ErrConflict
	}
	return err
}

// Delete removes the session stored under token from both tiers. A missing
// session is not an error. In the database the row is replaced by a
// tombstone that no delayed sync from another app server can overwrite; the
// reaper removes tombstones once they expire.
//
// It returns an error wrapping ErrUnavailable when a tier that holds the
// session could not be reached: the caller must not assume the session is
// gone (a row left in the database would revive it after a memcached loss).
func (s *Store) Delete(ctx context.Context, token string) error {
	return s.deleteKey(ctx, StorageKey(token))
}

// aroundNode prepares e, about to be written to its row around a memcached
// node that could not take it, and re-encodes it into buf. The row expires
// exactly (record: nothing newer is left in memcached), so the entry is
// marked never synced: once the node answers again, the first write there
// is due and moves the row ahead of the writes that follow it, which land
// in memcached only (docs/consistency.md, I1).
func (s *Store) aroundNode(key string, e *Entry, buf *[]byte) {
	e.SyncedAt, e.SyncedVersion, e.UnsyncedSince = time.Time{}, 0, 0
	*buf = s.sealEnvelope(key, (*buf)[:0], e)
}

func (s *Store) deleteKey(ctx context.Context, key string) error {
	var errs []error
	var cacheErr error
	now := s.now()
	tomb := Entry{Version: tombstoneVersion, Created: now, ActiveAt: now, Deadline: now.Add(s.tombstoneLife())}
	if s.mc != nil {
		// A tombstone, not a delete: a request that read the session before
		// it was destroyed must find its compare-and-swap refused, not an
		// empty slot to add its copy back into.
		mkey := s.mc.key(key)
		cacheErr = s.mc.set(mkey, s.sealEnvelope(key, nil, &tomb), expiration(now, tomb.Deadline))
		// After an AddServer the key's previous owner may still hold a
		// copy that a later miss would move back (moveFromPriorOwner):
		// it goes too, whether or not this request read the session.
		s.mc.priorDelete(mkey)
		// An app server that has not applied the last ring change yet
		// reads the key on its previous owner: it goes there too.
		s.mc.previousDelete(mkey)
	}
	if s.durable != nil {
		s.syncer.forget(key)
		rec := Record{
			Key:       key,
			Payload:   s.sealEnvelope(key, nil, &tomb),
			Version:   tombstoneVersion,
			ExpiresAt: tomb.Deadline.Truncate(time.Millisecond),
			Deadline:  tomb.Deadline.Truncate(time.Millisecond),
		}
		if _, err := s.save(ctx, rec); err != nil {
			s.stats.dbWriteErrors.Add(1)
			// memcached holds the tombstone: the background writer keeps
			// the row's until the database takes it, like a durable write
			// (I5), rather than fail a logout or a RenewToken whose
			// memcached half is already done (docs/consistency.md, I2).
			if cacheErr != nil || s.mc == nil {
				errs = append(errs, fmt.Errorf("database: %w", err))
			} else if err := s.retryLater(rec, err); err != nil {
				errs = append(errs, err)
			}
		} else {
			s.stats.dbWrites.Add(1)
			if cacheErr != nil {
				// The tombstone holds; the node's copy is deleted before
				// the node serves again.
				s.mc.markDirty(s.mc.key(key), around(&tomb, false))
				cacheErr = nil
			}
		}
	}
	if cacheErr != nil {
		errs = append(errs, cacheErr)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: delete: %w", ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

// DeleteSubject removes every session of subject from both tiers ("log out
// everywhere") and returns how many it removed. Only sessions whose subject
// reached the database are found: the Manager writes subject changes as
// durable. An empty subject removes nothing.
func (s *Store) DeleteSubject(ctx context.Context, subject string) (int, error) {
	if subject == "" || s.durable == nil {
		return 0, nil
	}
	dctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	keys, err := s.durable.DeleteSubject(dctx, subject)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	var errs []error
	for _, k := range keys {
		if err := s.deleteKey(ctx, k); err != nil {
			errs = append(errs, err)
		}
	}
	return len(keys), errors.Join(errs...)
}

// envelopeGrowth is how much longer than e's envelope the one Insert or
// Update writes can be: activity (5 bytes), version (8), sync time (5),
// synced version (8) and first unsynced version (9) may each grow from a
// one-byte zero to a full varint.
const envelopeGrowth = 35

func (s *Store) checkSize(e *Entry) error {
	if len(e.Subject) > maxSubjectLen || !utf8.ValidString(e.Subject) {
		return fmt.Errorf("%w: %d bytes (at most %d of UTF-8)", ErrInvalidSubject, len(e.Subject), maxSubjectLen)
	}
	if n := EnvelopeSize(e) + envelopeGrowth + s.envelopeOverhead(); n > s.maxItem {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, s.maxItem)
	}
	return nil
}

func (s *Store) encode(key string, e *Entry) *[]byte {
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = s.sealEnvelope(key, (*bp)[:0], e)
	return bp
}

func (s *Store) putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 { // do not pin huge buffers
		s.bufs.Put(bp)
	}
}

func bytesClone(b []byte) []byte { return append([]byte(nil), b...) }
