package core

import (
	"encoding/json"
	"math"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// Value returns the value stored under key in s as a T, and whether there is one that converts to T. Codecs may
// return another type than was stored (JSON numbers as float64, msgpack integers as int64 or uint64, structs, maps
// and slices as generic data), so Value converts numbers that fit exactly (1.5 is no int, 300 no uint8) and
// re-encodes anything else into a T: with encoding/json for a session written with JSON (base64 []byte and RFC 3339
// times read back as []byte and time.Time), with msgpack otherwise; a struct thus reads back as itself under any
// codec (under gob, register it). Strings are never parsed as numbers. An absent key, or a value that does not
// convert, gives T's zero value and false.
func Value[T any](s *Session, key string) (T, bool) {
	s.lock()
	v := s.valuesLocked()[key]
	isJSON := s.entry != nil && s.entry.Codec == JSON.ID() ||
		s.entry == nil && s.m != nil && s.m.store.codec.ID() == JSON.ID()
	s.mu.Unlock()
	if x, ok := v.(T); ok || v == nil {
		return x, ok
	}
	return convert[T](v, isJSON)
}

// convert converts v to a T, apart from Value so that a T stored as a T allocates nothing; nor does an integer
// read as int or int64.
func convert[T any](v any, isJSON bool) (T, bool) {
	var zero T
	if n, ok := exactInt(reflect.ValueOf(v)); ok {
		switch p := any(&zero).(type) {
		case *int:
			if int64(int(n)) == n {
				*p = int(n)
				return zero, true
			}
		case *int64:
			*p = n
			return zero, true
		}
	}
	marshal, unmarshal := msgpack.Marshal, msgpack.Unmarshal
	if isJSON || isNumber(reflect.ValueOf(v).Kind()) && isNumber(reflect.TypeFor[T]().Kind()) {
		// encoding/json refuses a number that does not fit (300 as uint8, 1.5 as int); msgpack would wrap it.
		marshal, unmarshal = json.Marshal, json.Unmarshal
	}
	var t T
	if b, err := marshal(v); err != nil || unmarshal(b, &t) != nil {
		return zero, false
	}
	return t, true
}

// exactInt returns v as an int64 when it is an integer or a float holding exactly an integer that fits.
func exactInt(v reflect.Value) (int64, bool) {
	switch {
	case v.CanInt():
		return v.Int(), true
	case v.CanUint():
		return int64(v.Uint()), v.Uint() <= math.MaxInt64
	case v.CanFloat():
		f := v.Float()
		return int64(f), f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63
	}
	return 0, false
}

func isNumber(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64 && k != reflect.Uintptr
}
