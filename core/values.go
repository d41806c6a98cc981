package core

import (
	"encoding/json"
	"math"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// Value returns the value stored under key in s as a T, and whether there
// is one that converts to T. The codec may hand back another type than was
// stored — JSON numbers come back as float64, msgpack integers as int64 or
// uint64, and under both a struct, map or slice comes back as generic
// data — so Value converts:
//   - numbers between Go's integer and float types, when the value fits
//     exactly (1.5 is no int; 300 is no uint8);
//   - anything else that is not already a T, by encoding it again and
//     decoding it into a T: with encoding/json when the session was
//     written with the JSON codec (so JSON's base64 []byte and RFC 3339
//     times read back as []byte and time.Time), with msgpack otherwise. A
//     struct stored under any codec thus reads back as itself (under gob,
//     register it with gob.Register).
//
// Strings are never parsed as numbers. An absent key, or a value that does
// not convert, gives T's zero value and false.
func Value[T any](s *Session, key string) (T, bool) {
	var t T
	s.mu.Lock()
	v := s.valuesLocked()[key]
	jsonCodec := s.entry != nil && s.entry.Codec == JSON.ID() || s.entry == nil && s.m != nil && s.m.store.codec.ID() == JSON.ID()
	s.mu.Unlock()
	if v == nil {
		return t, false
	}
	if x, ok := v.(T); ok {
		return x, true
	}
	rv := reflect.ValueOf(&t).Elem()
	if convertNumber(v, rv) {
		return t, true
	}
	var err error
	if jsonCodec {
		var b []byte
		if b, err = json.Marshal(v); err == nil {
			err = json.Unmarshal(b, &t)
		}
	} else {
		var b []byte
		if b, err = msgpack.Marshal(v); err == nil {
			err = msgpack.Unmarshal(b, &t)
		}
	}
	if err != nil {
		var zero T
		return zero, false
	}
	return t, true
}

// convertNumber sets dst, a number, to v when v is a number that fits in it
// exactly, and reports whether it did.
func convertNumber(v any, dst reflect.Value) bool {
	src := reflect.ValueOf(v)
	if !isNumber(src.Kind()) || !isNumber(dst.Kind()) {
		return false
	}
	var f float64
	switch {
	case src.CanInt():
		f = float64(src.Int())
	case src.CanUint():
		f = float64(src.Uint())
	default:
		f = src.Float()
	}
	switch {
	case dst.CanInt():
		i, ok := toInt64(v)
		if !ok || dst.OverflowInt(i) {
			return false
		}
		dst.SetInt(i)
	case dst.CanUint():
		if src.CanUint() {
			if dst.OverflowUint(src.Uint()) {
				return false
			}
			dst.SetUint(src.Uint())
			return true
		}
		i, ok := toInt64(v)
		if !ok || i < 0 || dst.OverflowUint(uint64(i)) {
			return false
		}
		dst.SetUint(uint64(i))
	default:
		if dst.OverflowFloat(f) {
			return false
		}
		dst.SetFloat(f)
	}
	return true
}

func isNumber(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64 && k != reflect.Uintptr
}

// toInt64 converts an integer, or a float that is a whole number, to
// int64 when it fits exactly. The common types go without reflection.
func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case float64:
		return int64(n), n == math.Trunc(n) && n >= -(1<<63) && n < 1<<63
	}
	rv := reflect.ValueOf(v)
	switch {
	case !isNumber(rv.Kind()):
	case rv.CanInt():
		return rv.Int(), true
	case rv.CanUint():
		if u := rv.Uint(); u <= math.MaxInt64 {
			return int64(u), true
		}
	default:
		if f := rv.Float(); f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
			return int64(f), true
		}
	}
	return 0, false
}
