package core

import (
	"encoding/binary"
	"fmt"
)

// maxMsgpackDepth bounds how deeply msgpack arrays and maps may nest in a
// session's values. Deeper input is refused before it is decoded.
const maxMsgpackDepth = 64

// checkMsgpack walks the first msgpack value in b without decoding it and
// returns an error wrapping ErrMalformed when the value is truncated,
// nests deeper than maxMsgpackDepth, or declares an array, map, string,
// binary or extension longer than the bytes that follow. The msgpack
// library sizes its allocations from those declared lengths (an array
// header claiming 2^32-1 elements allocates 64 GiB before reading one), so
// after this check every allocation it makes is bounded by a small
// multiple of len(b): each declared element takes at least one byte.
func checkMsgpack(b []byte) error {
	c := msgpackChecker{b: b}
	if err := c.value(0); err != nil {
		return fmt.Errorf("%w: msgpack: %s at byte %d", ErrMalformed, err.msg, c.i)
	}
	return nil
}

type msgpackChecker struct {
	b []byte
	i int
}

type checkError struct{ msg string }

var (
	errTruncated = &checkError{"truncated"}
	errTooDeep   = &checkError{fmt.Sprintf("nested deeper than %d", maxMsgpackDepth)}
	errTooLong   = &checkError{"declared length exceeds the input"}
	errBadType   = &checkError{"reserved type byte"}
)

// value checks one value at depth.
func (c *msgpackChecker) value(depth int) *checkError {
	if c.i >= len(c.b) {
		return errTruncated
	}
	t := c.b[c.i]
	c.i++
	switch {
	case t <= 0x7f || t >= 0xe0: // positive and negative fixint
		return nil
	case t <= 0x8f: // fixmap
		return c.items(uint64(t&0x0f)*2, depth)
	case t <= 0x9f: // fixarray
		return c.items(uint64(t&0x0f), depth)
	case t <= 0xbf: // fixstr
		return c.skip(uint64(t & 0x1f))
	}
	switch t {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return nil
	case 0xc4, 0xd9: // bin8, str8
		return c.sized(1, 0)
	case 0xc5, 0xda: // bin16, str16
		return c.sized(2, 0)
	case 0xc6, 0xdb: // bin32, str32
		return c.sized(4, 0)
	case 0xc7: // ext8: length, type, data
		return c.sized(1, 1)
	case 0xc8:
		return c.sized(2, 1)
	case 0xc9:
		return c.sized(4, 1)
	case 0xcc, 0xd0: // uint8, int8
		return c.skip(1)
	case 0xcd, 0xd1:
		return c.skip(2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return c.skip(4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return c.skip(8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 (plus the type byte)
		return c.skip(1 + 1<<(t-0xd4))
	case 0xdc, 0xdd: // array16, array32
		return c.counted(2<<(t-0xdc), 1, depth)
	case 0xde, 0xdf: // map16, map32: a key and a value per item
		return c.counted(2<<(t-0xde), 2, depth)
	}
	return errBadType // 0xc1
}

// counted checks a container whose item count takes size bytes.
func (c *msgpackChecker) counted(size int, per uint64, depth int) *checkError {
	n, err := c.length(size)
	if err != nil {
		return err
	}
	return c.items(n*per, depth)
}

// items checks n values nested one level below depth.
func (c *msgpackChecker) items(n uint64, depth int) *checkError {
	if n > uint64(len(c.b)-c.i) { // every value takes at least one byte
		return errTooLong
	}
	if n > 0 && depth >= maxMsgpackDepth {
		return errTooDeep
	}
	for ; n > 0; n-- {
		if err := c.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// length reads a big-endian length of size bytes.
func (c *msgpackChecker) length(size int) (uint64, *checkError) {
	if len(c.b)-c.i < size {
		return 0, errTruncated
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(c.b[c.i])
	case 2:
		n = uint64(binary.BigEndian.Uint16(c.b[c.i:]))
	default:
		n = uint64(binary.BigEndian.Uint32(c.b[c.i:]))
	}
	c.i += size
	return n, nil
}

// sized skips a length of size bytes, extra bytes, and the declared length.
func (c *msgpackChecker) sized(size int, extra uint64) *checkError {
	n, err := c.length(size)
	if err != nil {
		return err
	}
	return c.skip(n + extra)
}

func (c *msgpackChecker) skip(n uint64) *checkError {
	if n > uint64(len(c.b)-c.i) {
		return errTooLong
	}
	c.i += int(n)
	return nil
}
