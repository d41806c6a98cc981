package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/cache"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

// insert stores e's header and payload as a new session under token, active now: the row first
// (insert-if-absent), then memcached. While the database is down the copy alone holds it until the
// writer syncs it, unless durable or e has a Subject (DestroySubject finds sessions by their rows).
// Errors: errExists when a live session or a tombstone holds the key (a dead one is replaced),
// ErrTooLarge or ErrInvalidSubject before writing, ErrUnavailable wrapped when no tier (or,
// durable, the database) took it.
func (s *Store) insert(ctx context.Context, token string, e *entry, durable bool) error {
	if err := s.check(e); err != nil {
		return err
	}
	now := s.now()
	e.key, e.mkey = s.keys(token)
	e.Envelope = envelope.Envelope{
		Codec: e.Codec, Persistent: e.Persistent, Lineage: newLineage(), Scope: e.Scope,
		Created: e.Created, Deadline: e.Deadline, IdleTimeout: e.IdleTimeout, ActiveAt: now,
		Grace: s.grace, Version: 1, Unsynced: s.durable != nil, Subject: e.Subject, Payload: e.Payload,
	}
	dbErr, cacheErr := errNoTier, errNoTier
	if s.durable != nil {
		dbErr = s.insertRow(ctx, e)
		if dbErr != nil && (durable || e.Subject != "" || errors.Is(dbErr, errExists)) {
			return dbErr
		}
	}
	if s.mc != nil {
		if cacheErr = s.addCopy(ctx, e, now, dbErr == nil); errors.Is(cacheErr, errExists) {
			return cacheErr
		}
	}
	switch {
	case dbErr != nil && cacheErr != nil:
		return fmt.Errorf("%w: insert: %w", ErrUnavailable, errors.Join(dbErr, cacheErr))
	case cacheErr != nil:
		e.via = viaRow
	case dbErr != nil:
		s.writer.schedule(e.mkey, now.Add(s.syncInterval), 0)
	}
	return nil
}

// rowExpiry is when a row holding v may be reaped: its expiry plus grace, or a tombstone's deadline.
func rowExpiry(v *envelope.Envelope) time.Time {
	if v.Destroyed {
		return v.Deadline
	}
	return v.RowExpiresAt()
}

func dead(v *envelope.Envelope, now time.Time) bool { return !now.Before(rowExpiry(v)) }

var errNoTier = errors.New("not configured") // the failure of a tier the Store does not have

// insertRow writes e's row: insert-if-absent, or over a dead row.
func (s *Store) insertRow(ctx context.Context, e *entry) error {
	applied, err := s.write(ctx, s.record(e.mkey, &e.Envelope, 0))
	if err == nil && !applied {
		rec, found, lerr := s.load(ctx, e.key)
		var old envelope.Envelope
		if lerr != nil || !found || s.open(rec.Payload, e.mkey, &old, true) != nil || !dead(&old, s.now()) {
			return cmp.Or(lerr, errExists)
		}
		e.Base = rec.Version // kept on failure: the writer syncs the copy over the dead row
		applied, err = s.write(ctx, s.record(e.mkey, &e.Envelope, rec.Version))
	}
	if err != nil || !applied {
		return cmp.Or(err, errExists)
	}
	e.MarkSynced(e.Base+1, e.Version, s.now())
	return nil
}

// addCopy writes a new session's copy: over whatever is there when the row took the session (the
// row decides), else only over nothing, a dead or a corrupt copy.
func (s *Store) addCopy(ctx context.Context, e *entry, now time.Time, rowTook bool) error {
	buf := s.seal(nil, e.mkey, &e.Envelope)
	exp := cache.Expiration(now, copyExpiry(&e.Envelope))
	e.via = viaAdded
	if rowTook {
		return s.mc.Set(ctx, e.mkey, buf, exp)
	}
	err := s.mc.Add(ctx, e.mkey, buf, exp)
	if !errors.Is(err, memcache.ErrNotStored) {
		return err
	}
	it, err := s.mc.Get(ctx, e.mkey)
	if err != nil || it == nil {
		return cmp.Or(err, errExists) // gone since the add: the caller tries again
	}
	var old envelope.Envelope
	switch oerr := s.open(it.Value, e.mkey, &old, true); {
	case errors.Is(oerr, envelope.ErrUnreadable),
		oerr == nil && old.Destroyed && now.Before(old.Deadline),
		oerr == nil && !old.Destroyed && now.Before(old.ExpiresAt()):
		return errExists
	}
	err = s.mc.CompareAndSwap(ctx, e.mkey, buf, exp, it.CasID)
	if err != nil && !errors.Is(err, cache.ErrUnavailable) {
		return errExists // another copy came first
	}
	return err
}

// update writes e, as read or inserted, with change c: activity now and, unless c is a touch, a
// new version. memcached takes it by compare-and-swap and the writer the row, unless c.Durable;
// while memcached is unavailable the row takes it. Errors: ErrConflict when another writer changed
// the session since e was read, ErrTooLarge or ErrInvalidSubject before writing, errDestroyed when
// it was destroyed meanwhile, ErrUnavailable wrapped when no tier (or, durable, the database) took
// it. On success e is what was written (merged with others' changes, if any); else read again.
func (s *Store) update(ctx context.Context, e *entry, c change) error {
	if err := s.check(e); err != nil {
		return err
	}
	next := *e
	if c.changes() {
		next.Version++
		s.note(&next.Envelope, c)
	}
	c.Durable = c.Durable || s.writeThrough
	now := s.now()
	next.ActiveAt, next.Grace, next.Unsynced, next.merged = now, s.grace, s.durable != nil, false
	var err error
	switch {
	case next.via == viaRow || s.mc == nil:
		err = s.writeRow(ctx, &next)
	case c.Durable && s.durable != nil:
		err = s.writeDurable(ctx, &next, c, e, now)
	default:
		err = s.writeCopy(ctx, &next, c, e, now)
	}
	if err == nil {
		*e = next
	}
	return err
}

// note records in v the keys c changes, for a merge with the row (if there is one).
func (s *Store) note(v *envelope.Envelope, c change) {
	switch {
	case s.durable == nil:
		return
	case c.All:
		v.NoteWhole()
	default:
		for _, k := range c.Keys {
			v.Note(k)
		}
	}
	if c.Header {
		v.Note(headerKey)
	}
}

// writeCopy writes e's copy (compare-and-swap on the copy read) and schedules its sync; when
// memcached fails it writes the row around it.
func (s *Store) writeCopy(ctx context.Context, e *entry, c change, read *entry, now time.Time) error {
	err := s.cas(ctx, e, read, now)
	switch {
	case err == nil:
		s.writer.schedule(e.mkey, e.SyncedAt.Add(s.syncInterval), 0)
		return nil
	case !errors.Is(err, cache.ErrUnavailable):
		return err
	case s.durable == nil:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	e.Lineage = newLineage() // the copy did not take this state
	if err = s.sync(ctx, e, &c); err == nil {
		e.via = viaRow
		s.writer.schedule(e.mkey, now, e.Base)
	}
	return err
}

// writeDurable writes e's row first (merging if the row moved), then its copy, under a new lineage
// (a state no copy held): should memcached not take it (a concurrent copy won, the node is
// unreachable), that copy's next sync merges with the row, where keys written here directly stay.
func (s *Store) writeDurable(ctx context.Context, e *entry, c change, read *entry, now time.Time) error {
	e.Lineage = newLineage()
	if err := s.sync(ctx, e, &c); err != nil {
		if errors.Is(err, errDestroyed) {
			_ = s.bury(ctx, e.mkey, &e.Envelope, now)
		}
		return err
	}
	if err := s.cas(ctx, e, read, now); !errors.Is(err, cache.ErrUnavailable) {
		return err
	}
	e.via = viaRow
	s.writer.schedule(e.mkey, now, e.Base)
	return nil
}

// bury replaces with a tombstone the copy under mkey whose row says the session is gone: a copy a
// logout could not reach ends at its next write, or at the reaper's next pass.
func (s *Store) bury(ctx context.Context, mkey string, v *envelope.Envelope, now time.Time) error {
	t := *v
	t.Destroyed, t.Payload, t.Unsynced = true, nil, false
	return s.mc.Set(ctx, mkey, s.seal(nil, mkey, &t), cache.Expiration(now, t.Deadline))
}

// writeRow writes a row-mode entry (viaRow needs a durable tier), conditional on the row version read.
// Refused: ErrConflict.
func (s *Store) writeRow(ctx context.Context, e *entry) error {
	e.Lineage = newLineage()
	noteWritten(&e.Envelope, e.Base+1)
	applied, err := s.write(ctx, s.record(e.mkey, &e.Envelope, e.Base))
	switch {
	case err != nil:
		return err
	case !applied:
		s.stats.conflicts.Add(1)
		return ErrConflict
	}
	e.MarkSynced(e.Base+1, e.Version, s.now())
	s.writer.schedule(e.mkey, e.SyncedAt, e.Base) // the copy, if there is one, was not written
	return nil
}

// cas writes e's copy: compare-and-swap on the CAS id read or, unknown (refilled, added), on the copy
// there now if it is still read's. Any other copy is a concurrent writer's: ErrConflict.
func (s *Store) cas(ctx context.Context, e, read *entry, now time.Time) error {
	casID := e.casID
	if e.via != viaCache {
		it, err := s.mc.Get(ctx, e.mkey)
		if err != nil {
			return err
		}
		var cur envelope.Envelope
		if it == nil || s.open(it.Value, e.mkey, &cur, true) != nil || cur.Destroyed ||
			cur.Lineage != read.Lineage || cur.Version != read.Version {
			s.stats.conflicts.Add(1)
			return ErrConflict
		}
		casID = it.CasID
	}
	buf := s.buffer()
	*buf = s.seal((*buf)[:0], e.mkey, &e.Envelope)
	err := s.mc.CompareAndSwap(ctx, e.mkey, *buf, cache.Expiration(now, copyExpiry(&e.Envelope)), casID)
	if cap(*buf) <= 64<<10 { // do not pin large buffers
		s.bufs.Put(buf)
	}
	if err != nil && !errors.Is(err, cache.ErrUnavailable) {
		s.stats.conflicts.Add(1)
		return ErrConflict
	}
	return err
}

// Delete destroys the session stored under token, if any: a tombstone in both tiers until its
// absolute deadline (docs/consistency.md), written to the row before Delete returns when the
// database answers, else by the background writer. Errors wrap ErrUnavailable when no tier took it.
func (s *Store) Delete(ctx context.Context, token string) error {
	e, err := s.read(ctx, token)
	if err != nil || e == nil {
		return err
	}
	return s.destroy(ctx, e)
}

// destroy replaces e with a tombstone in both tiers; see Delete.
func (s *Store) destroy(ctx context.Context, e *entry) error {
	now := s.now()
	t := &entry{key: e.key, mkey: e.mkey, Envelope: envelope.Envelope{
		Destroyed: true, Lineage: newLineage(), Created: e.Created, Deadline: e.Deadline, ActiveAt: now,
		Version: e.Version + 1, Base: e.Base, SyncedVersion: e.SyncedVersion,
		Unsynced: s.durable != nil, Subject: e.Subject,
	}}
	cacheErr, dbErr := errNoTier, errNoTier
	if s.mc != nil {
		cacheErr = s.mc.Set(ctx, e.mkey, s.seal(nil, e.mkey, &t.Envelope), cache.Expiration(now, e.Deadline))
	}
	if s.durable != nil {
		if dbErr = s.sync(ctx, t, nil); errors.Is(dbErr, errDestroyed) {
			dbErr = nil // the row is a tombstone already
		}
	}
	switch {
	case dbErr != nil && cacheErr != nil:
		return fmt.Errorf("%w: destroy: %w", ErrUnavailable, errors.Join(dbErr, cacheErr))
	case dbErr != nil:
		s.writer.schedule(e.mkey, now, 0) // nil without a durable tier: nothing to schedule
	case s.mc != nil && (cacheErr != nil || e.source != srcCache):
		// A copy not reached (its node failed; or read from the row: another ring's node) may live on: a reaper buries it.
		w := s.record(t.mkey, &t.Envelope, t.Base)
		w.Record.ExpiresAt = now.Truncate(time.Millisecond)
		_, _ = s.write(ctx, w)
	}
	return nil
}

// destroyRows destroys every session of subject, among those which reports, whose row is no
// tombstone and before its deadline, whatever memcached holds (a server that cannot reach the copy
// serves the row). It returns how many were alive, by the copy where there is one.
func (s *Store) destroyRows(ctx context.Context, subject string, which func(key string) bool) (int, error) {
	if subject == "" || s.durable == nil {
		return 0, nil
	}
	n := 0
	err := s.each(ctx, subject, func(rec durable.Record, row, cp *envelope.Envelope) error {
		now := s.now()
		if !which(rec.Key) || row.Destroyed || !now.Before(row.Deadline) {
			return nil
		}
		alive := now.Before(row.RowExpiresAt())
		if cp != nil {
			alive = !cp.Destroyed && now.Before(cp.ExpiresAt())
		}
		e := &entry{key: rec.Key, mkey: s.prefix + rec.Key, Envelope: *row}
		e.Base = rec.Version
		if err := s.destroy(ctx, e); err != nil {
			return err
		}
		if alive {
			n++
		}
		return nil
	})
	return n, err
}

const listPage = 500 // rows per page of a listing

// check refuses entries no tier can store.
func (s *Store) check(e *entry) error {
	if len(e.Subject) > envelope.MaxSubject || !utf8.ValidString(e.Subject) || strings.IndexByte(e.Subject, 0) >= 0 {
		return fmt.Errorf("%w: %d bytes (at most %d of UTF-8, no NUL)",
			ErrInvalidSubject, len(e.Subject), envelope.MaxSubject)
	}
	if n := e.Size() + envelopeGrowth + s.ring.Overhead(); n > s.maxItem {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, s.maxItem)
	}
	return nil
}

const envelopeGrowth = 64 + envelope.MaxChanged*8 // a write's growth of the header, at most

// record returns the row write of v under mkey, built on row version base.
func (s *Store) record(mkey string, v *envelope.Envelope, base uint64) durable.Write {
	return durable.Write{Base: base, Record: durable.Record{
		Key: mkey[len(s.prefix):], Payload: s.seal(nil, mkey, v), Version: base + 1, Subject: v.Subject,
		ExpiresAt: rowExpiry(v).Truncate(time.Millisecond), Deadline: v.Deadline.Truncate(time.Millisecond),
	}}
}

// write and writeBatch apply row writes within DBTimeout; errors wrap ErrUnavailable.
func (s *Store) write(ctx context.Context, w durable.Write) (bool, error) {
	applied, err := s.writeBatch(ctx, []durable.Write{w})
	return err == nil && applied[0], err
}

func (s *Store) writeBatch(ctx context.Context, ws []durable.Write) ([]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	applied, err := s.durable.Write(ctx, ws)
	if err == nil && len(applied) != len(ws) {
		err = fmt.Errorf("Durable.Write answered %d of %d writes", len(applied), len(ws))
	}
	if err != nil {
		s.stats.dbErrors.Add(1)
		return nil, fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	s.stats.dbWrites.Add(uint64(len(ws)))
	return applied, nil
}
