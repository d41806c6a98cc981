package core

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec turns a session's values into bytes and back. Its ID is written into every envelope, and a Store decodes
// with no codec but the one named there: keep an old codec in StoreConfig.Codecs while sessions written with it
// live. Implementations must be safe for concurrent use; Decode must not keep data after it returns and must
// return an error, never panic, on malformed input. The Store takes a nil map from Decode for an empty one, and
// nothing but the error from a failed Decode.
type Codec interface {
	// ID is the codec's stable id. Ids 1 to 63 are reserved for hybridsession; use 64 to 255.
	ID() uint8
	Encode(values map[string]any) ([]byte, error)
	Decode(data []byte) (map[string]any, error)
}

// opaqueCodec reports whether id is one of the ids 60 to 63 reserved for a KV's blobs (scsstore 60, the fiber
// Storage 61), which the Store keeps without decoding and always writes whole.
func opaqueCodec(id uint8) bool { return id >= 60 && id <= 63 }

// JSON is the encoding/json codec, readable from any language. JSON has one number type: integers come back as
// float64 (Value converts whole ones back), []byte as a base64 string, structs as map[string]any. encoding/json
// limits nesting to 10000 levels and allocates in proportion to the input.
var JSON Codec = jsonCodec{}

// Gob is the encoding/gob codec. It round-trips Go types exactly, structs included, but every concrete type other
// than the basic ones must be registered with gob.Register in every process using the session; Encode fails with
// ErrEncode on an unregistered type. encoding/gob sizes a nested map, and a slice up to about 10 MiB, from the count
// its input declares: use gob with sealing (StoreConfig.Seal), so the decoder only sees bytes your servers wrote.
var Gob Codec = gobCodec{}

// Msgpack is the MessagePack codec (github.com/vmihailenco/msgpack/v5), the compact default. Integers come back
// as int64 or uint64, floats as float64, []byte as []byte, structs as map[string]any. Decode refuses (with an
// error wrapping ErrMalformed) input nesting arrays and maps over 64 deep or declaring a length beyond the bytes
// that follow, so it allocates at most a small multiple of the input's size.
var Msgpack Codec = msgpackCodec{}

type (
	jsonCodec    struct{}
	gobCodec     struct{}
	msgpackCodec struct{}
)

func (jsonCodec) ID() uint8    { return 1 }
func (gobCodec) ID() uint8     { return 2 }
func (msgpackCodec) ID() uint8 { return 3 }

func (jsonCodec) Encode(values map[string]any) ([]byte, error) { return json.Marshal(values) }

func (jsonCodec) Decode(data []byte) (m map[string]any, err error) {
	err = json.Unmarshal(data, &m)
	return m, err
}

func (gobCodec) Encode(values map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(values); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (gobCodec) Decode(data []byte) (m map[string]any, err error) {
	// encoding/gob documents that it may panic on some corrupt input in older releases.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("gob: %v", r)
		}
	}()
	if err := checkGobFraming(data); err != nil {
		return nil, err
	}
	// A nil map would be sized from the count the input declares, which hostile input sets to billions.
	m = map[string]any{}
	err = gob.NewDecoder(bytes.NewReader(data)).Decode(&m)
	return m, err
}

// checkGobFraming checks that every message of the gob stream declares a length within data: encoding/gob reads
// a message in chunks of up to 10 MB, whatever follows.
func checkGobFraming(data []byte) error {
	for len(data) > 0 {
		n, size := uint64(data[0]), 1
		if n >= 0x80 {
			size = 1 + int(-int8(data[0]))
			if size < 2 || size > 9 || size > len(data) {
				return fmt.Errorf("%w: gob: bad message length", ErrMalformed)
			}
			n = bigEndian(data[1:size])
		}
		if n > uint64(len(data)-size) {
			return fmt.Errorf("%w: gob: message longer than the input", ErrMalformed)
		}
		data = data[size+int(n):]
	}
	return nil
}

// msgpackState is a pooled encoder and decoder with their buffers: one allocation per Encode (the result), none
// per Decode but the values.
type msgpackState struct {
	buf bytes.Buffer
	r   bytes.Reader
	enc *msgpack.Encoder
	dec *msgpack.Decoder
}

var msgpackStates = sync.Pool{New: func() any {
	return &msgpackState{enc: msgpack.NewEncoder(nil), dec: msgpack.NewDecoder(nil)}
}}

func (msgpackCodec) Encode(values map[string]any) ([]byte, error) {
	st := msgpackStates.Get().(*msgpackState)
	defer msgpackStates.Put(st)
	st.buf.Reset()
	st.enc.Reset(&st.buf)
	if err := st.enc.Encode(values); err != nil {
		return nil, err
	}
	return bytes.Clone(st.buf.Bytes()), nil
}

func (msgpackCodec) Decode(data []byte) (map[string]any, error) {
	if err := checkMsgpack(data); err != nil {
		return nil, err
	}
	st := msgpackStates.Get().(*msgpackState)
	defer msgpackStates.Put(st)
	st.r.Reset(data)
	st.dec.Reset(&st.r)
	m, err := st.dec.DecodeMap()
	widenInts(m)
	return m, err
}

// widenInts turns the sized integers msgpack decodes (int8, uint16, ...) into int64 and uint64, nested ones too.
// (The library's loose mode would, but it also turns []byte into string.)
func widenInts(v any) any {
	switch n := v.(type) {
	case int8, int16, int32:
		return reflect.ValueOf(n).Int()
	case uint8, uint16, uint32:
		return reflect.ValueOf(n).Uint()
	case []any:
		for i := range n {
			n[i] = widenInts(n[i])
		}
	case map[string]any:
		for k, e := range n {
			n[k] = widenInts(e)
		}
	}
	return v
}

const maxMsgpackDepth = 64 // how deeply msgpack arrays and maps may nest

// checkMsgpack walks the first msgpack value in b and returns an error wrapping ErrMalformed when it is truncated,
// nests deeper than maxMsgpackDepth, or declares a length beyond the bytes that follow: the library sizes
// allocations from declared lengths (2^32-1 array elements: 64 GiB), and every element takes at least a byte.
func checkMsgpack(b []byte) error {
	c := msgpackChecker{b: b}
	if err := c.value(0); err != nil {
		return fmt.Errorf("%w: msgpack: %v at byte %d", ErrMalformed, err, c.i)
	}
	return nil
}

type msgpackChecker struct {
	b []byte
	i int
}

func (c *msgpackChecker) value(depth int) error {
	t, err := c.uint(1)
	var n, per uint64 // n bytes follow, or (per > 0) n items of per values each
	switch {
	case err != nil:
		return err
	case t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3: // fixint, nil, false, true
		return nil
	case t <= 0x8f: // fixmap: a key and a value per item
		n, per = t&0x0f, 2
	case t <= 0x9f: // fixarray
		n, per = t&0x0f, 1
	case t <= 0xbf: // fixstr
		n = t & 0x1f
	case t == 0xc1:
		return errors.New("reserved type byte")
	case t <= 0xc6: // bin 8, 16, 32
		n, err = c.uint(1 << (t - 0xc4))
	case t <= 0xc9: // ext 8, 16, 32: length, type, data
		n, err = c.uint(1 << (t - 0xc7))
		n++
	case t <= 0xcb: // float 32, 64
		n = 4 << (t - 0xca)
	case t <= 0xcf: // uint 8 to 64
		n = 1 << (t - 0xcc)
	case t <= 0xd3: // int 8 to 64
		n = 1 << (t - 0xd0)
	case t <= 0xd8: // fixext 1 to 16, plus the type byte
		n = 1 + 1<<(t-0xd4)
	case t <= 0xdb: // str 8, 16, 32
		n, err = c.uint(1 << (t - 0xd9))
	case t <= 0xdd: // array 16, 32
		n, err = c.uint(2 << (t - 0xdc))
		per = 1
	default: // map 16, 32
		n, err = c.uint(2 << (t - 0xde))
		per = 2
	}
	n *= max(per, 1) // bytes to skip, or values to check
	switch {
	case err != nil:
		return err
	case n > uint64(len(c.b)-c.i): // every value takes at least a byte
		return errors.New("declared length exceeds the input")
	case per == 0:
		c.i += int(n)
		return nil
	case n > 0 && depth >= maxMsgpackDepth:
		return fmt.Errorf("nested deeper than %d", maxMsgpackDepth)
	}
	for ; n > 0; n-- {
		if err := c.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// uint reads a big-endian unsigned integer of size bytes.
func (c *msgpackChecker) uint(size uint64) (uint64, error) {
	if uint64(len(c.b)-c.i) < size {
		return 0, errors.New("truncated")
	}
	c.i += int(size)
	return bigEndian(c.b[c.i-int(size) : c.i]), nil
}

func bigEndian(b []byte) (n uint64) {
	for _, x := range b {
		n = n<<8 | uint64(x)
	}
	return n
}
