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
	isJSON := s.entry != nil && s.entry.Codec == jsonCodecID || s.entry == nil && s.m != nil && s.m.store.codec.ID() == jsonCodecID
	s.mu.Unlock()
	if v == nil {
		return t, false
	}
	if x, ok := v.(T); ok {
		return x, true
	}
	if convertNumber(v, reflect.ValueOf(&t).Elem()) {
		return t, true
	}
	marshal, unmarshal := msgpack.Marshal, msgpack.Unmarshal
	if isJSON {
		marshal, unmarshal = json.Marshal, json.Unmarshal
	}
	b, err := marshal(v)
	if err == nil {
		err = unmarshal(b, &t)
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
	switch {
	case dst.CanFloat():
		f := float64(0)
		switch {
		case src.CanInt():
			f = float64(src.Int())
		case src.CanUint():
			f = float64(src.Uint())
		default:
			f = src.Float()
		}
		if dst.OverflowFloat(f) {
			return false
		}
		dst.SetFloat(f)
	case src.CanUint() && dst.CanUint():
		if dst.OverflowUint(src.Uint()) {
			return false
		}
		dst.SetUint(src.Uint())
	default:
		i, ok := toInt64(src)
		switch {
		case !ok:
			return false
		case dst.CanInt():
			if dst.OverflowInt(i) {
				return false
			}
			dst.SetInt(i)
		case i < 0 || dst.OverflowUint(uint64(i)):
			return false
		default:
			dst.SetUint(uint64(i))
		}
	}
	return true
}

func isNumber(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64 && k != reflect.Uintptr
}

// toInt64 converts v, an integer or a float that is a whole number, to
// int64 when it fits exactly.
func toInt64(v reflect.Value) (int64, bool) {
	switch {
	case v.CanInt():
		return v.Int(), true
	case v.CanUint():
		return int64(v.Uint()), v.Uint() <= math.MaxInt64
	}
	f := v.Float()
	return int64(f), f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63
}
