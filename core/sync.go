package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hybridsession/hybridsession/core/durable"
	"github.com/hybridsession/hybridsession/core/internal/envelope"
)

const maxSyncAttempts = 8 // merges with a row that keeps changing under sync

var (
	errLeave      = errors.New("core: the row cannot be read here; left as it is") // envelope.ErrUnreadable
	errSuperseded = errors.New("core: the row holds a later state of this copy")   // another writer synced it first
)

// noteWritten records in v that the row takes directly, at row version at, every key v changed
// since its last sync: the write's own (update noted them) and the copy's earlier ones.
func noteWritten(v *envelope.Envelope, at uint64) {
	if v.WholeAt > v.SyncedVersion {
		v.NoteWritten(envelope.AllKeys, at)
	}
	for _, ch := range v.Changed {
		if ch.Version > v.SyncedVersion {
			v.NoteWritten(ch.Key, at)
		}
	}
}

// sync writes e to its row, conditional on the row version e was built on; a refused write is
// rebased on the row (merged key by key) and tried again. direct, if not nil, is a change the row
// takes directly (a durable write, or one around memcached), its keys noted as written at the row
// version taking them. On success e holds the row's state, synced. Errors: errSuperseded,
// errDestroyed (a tombstone, or no row under a copy that had one), errLeave, ErrUnavailable wrapped.
func (s *Store) sync(ctx context.Context, e *entry, direct *change) error {
	v := &e.Envelope
	for range maxSyncAttempts {
		if direct != nil {
			noteWritten(v, v.Base+1)
		}
		if applied, err := s.write(ctx, s.record(e.mkey, v, v.Base)); err != nil || applied {
			if applied {
				v.MarkSynced(v.Base+1, v.Version, s.now())
			}
			return err
		}
		rec, found, err := s.load(ctx, e.key)
		if err == nil {
			err = s.rebase(e, rec, found, direct)
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: the row kept changing", ErrConflict)
}

// rebase makes e a state built on rec, the row that refused e's write:
//   - a tombstone wins over everything, and a tombstone needs no merge;
//   - a row holding an earlier state of e's own lineage takes e as it is, and
//     one holding a later state needs nothing (errSuperseded);
//   - any other row gets e's changes since its last sync, key by key, on top of
//     the row's values, except keys the row took directly since e's base (merge).
func (s *Store) rebase(e *entry, rec durable.Record, found bool, direct *change) error {
	v := &e.Envelope
	if !found {
		if v.Base == 0 { // a new session's row vanished between insert and load: insert again
			return nil
		}
		return errDestroyed
	}
	var row envelope.Envelope
	err := s.open(rec.Payload, e.mkey, &row, false)
	switch {
	case errors.Is(err, envelope.ErrUnreadable):
		return errLeave
	case err != nil: // corrupt: e replaces it
	case row.Destroyed:
		return errDestroyed // a tombstone wins; over a tombstone, nothing to write
	case v.Destroyed:
	case row.Lineage == v.Lineage && v.Lineage != 0 && row.Version <= v.Version:
	case row.Lineage == v.Lineage && v.Lineage != 0:
		return errSuperseded
	default:
		if err := s.merge(v, &row, direct); err != nil {
			return err
		}
		v.Lineage = newLineage() // a state no copy held: no copy may take it for its own
		e.merged = true
		s.stats.merges.Add(1)
	}
	v.Base = rec.Version
	return nil
}

// merge puts into v, a copy whose write the row refused, the row's values for every key v did not
// change since its last sync and for every key the row took directly since v's base (later than
// any change of a copy built before it) — except the keys of direct, the write being made now —
// and the row's header unless v alone changed it. v takes the row's list of written keys.
func (s *Store) merge(v, row *envelope.Envelope, direct *change) error {
	since, base := v.SyncedVersion, v.Base
	lost := func(k string) bool { return row.WrittenSince(k, base) && !direct.has(k) }
	var mine []string
	header := false
	for _, c := range v.Changed {
		switch {
		case c.Version <= since || lost(c.Key):
		case c.Key == headerKey:
			header = true
		default:
			mine = append(mine, c.Key)
		}
	}
	if !header {
		v.Subject, v.IdleTimeout, v.Deadline, v.Persistent = row.Subject, row.IdleTimeout, row.Deadline, row.Persistent
	}
	if row.ActiveAt.After(v.ActiveAt) {
		v.ActiveAt = row.ActiveAt
	}
	v.Written, v.WrittenFloor = row.Written, row.WrittenFloor
	switch whole := v.WholeAt > since; {
	case whole && (!row.AnyWrittenSince(base) || direct.has(envelope.AllKeys)):
		return nil // the copy's whole payload, unchallenged
	case whole && !opaqueCodec(v.Codec) && row.WrittenFloor <= base:
		return s.mergeKeys(v, row, lost, true)
	case !whole && len(mine) > 0:
		return s.mergeKeys(v, row, func(k string) bool { return slices.Contains(mine, k) }, false)
	}
	// The row's payload: v kept no key of its own, or changed it whole and its keys cannot be told apart.
	v.Payload, v.Codec = row.Payload, row.Codec
	return nil
}

// mergeKeys sets v's payload to the row's values with v's for the keys take reports or, whole, to
// v's values with the row's for the keys take reports.
func (s *Store) mergeKeys(v, row *envelope.Envelope, take func(string) bool, whole bool) error {
	into, rowErr := s.decode(row.Codec, row.Payload)
	from, err := s.decode(v.Codec, v.Payload)
	if err := cmp.Or(rowErr, err); err != nil {
		return err
	}
	if whole {
		from, into = into, from
	}
	maps.DeleteFunc(into, func(k string, _ any) bool { return take(k) })
	for k, val := range from {
		if take(k) {
			into[k] = val
		}
	}
	p, err := s.codec.Encode(into)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrEncode, err)
	}
	v.Payload, v.Codec = p, s.codec.ID()
	return nil
}

func (s *Store) decode(id uint8, p []byte) (map[string]any, error) {
	c := s.codecs[id]
	if c == nil {
		return nil, fmt.Errorf("%w: id %d", errUnknownCodec, id)
	}
	if len(p) == 0 {
		return map[string]any{}, nil
	}
	m, err := c.Decode(p)
	if err != nil {
		return nil, err
	} else if m == nil {
		m = map[string]any{} // a codec's null
	}
	return m, nil
}
