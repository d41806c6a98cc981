package core

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec turns a session's values into bytes and back. Its ID is written into
// every envelope, so a session written with one codec stays readable after
// the configured codec changes, as long as the old codec is still listed in
// StoreConfig.Codecs. A Store decodes with no other codec.
//
// Implementations must be safe for concurrent use. Decode must not keep a
// reference to data after it returns, and must return an error, never panic,
// on malformed input.
type Codec interface {
	// ID is the codec's stable id, written into the envelope. Ids 1 to 63
	// are reserved for hybridsession's codecs; use 64 to 255 for your own.
	ID() uint8
	// Encode encodes the values of one session.
	Encode(values map[string]any) ([]byte, error)
	// Decode decodes what Encode produced.
	Decode(data []byte) (map[string]any, error)
}

// Ids of the built-in codecs.
const (
	jsonCodecID    uint8 = 1
	gobCodecID     uint8 = 2
	msgpackCodecID uint8 = 3
)

// opaqueCodec reports whether id is one of the ids 60 to 63 reserved for a
// KV's blobs (scsstore's 60, the fiber Storage's 61), which the Store keeps
// without decoding and always writes whole.
func opaqueCodec(id uint8) bool { return id >= 60 && id <= 63 }

// JSON is the encoding/json codec. It is the most portable (any language can
// read a session), but JSON has one number type: integers come back as
// float64 (Value converts them back when they are whole), []byte
// comes back as a base64 string, and structs come back as map[string]any.
// encoding/json limits nesting to 10000 levels and allocates in proportion
// to the input.
var JSON Codec = jsonCodec{}

// Gob is the encoding/gob codec. It round-trips Go types exactly, including
// structs, but every concrete type stored in a session other than the basic
// types must be registered with gob.Register before it is encoded or decoded,
// in every process that reads the session; an unregistered type makes Encode
// fail with ErrEncode. encoding/gob sizes a map nested in a value from the
// count its input declares: register map types for use in sessions only
// when sessions are sealed (StoreConfig.Seal), so that the decoder only
// ever sees bytes your own servers wrote.
var Gob Codec = gobCodec{}

// Msgpack is the MessagePack codec (github.com/vmihailenco/msgpack/v5), the
// compact default. Integers come back as int64 or uint64, floats as float64,
// []byte stays []byte; structs come back as map[string]any.
//
// Decode checks the input's structure before the library sees it: arrays
// and maps may nest at most 64 deep, and no declared length may exceed the
// bytes that follow, so decoding allocates at most a small multiple of the
// input's size. Input that breaks these rules gets an error wrapping
// ErrMalformed.
var Msgpack Codec = msgpackCodec{}

type jsonCodec struct{}

func (jsonCodec) ID() uint8 { return jsonCodecID }

func (jsonCodec) Encode(values map[string]any) ([]byte, error) {
	return json.Marshal(values)
}

func (jsonCodec) Decode(data []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

type gobCodec struct{}

func (gobCodec) ID() uint8 { return gobCodecID }

func (gobCodec) Encode(values map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(values); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (gobCodec) Decode(data []byte) (m map[string]any, err error) {
	// encoding/gob documents that it may panic on some corrupt input in
	// older releases; a session decoder must never take the process down.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("gob: %v", r)
		}
	}()
	if err := checkGobFraming(data); err != nil {
		return nil, err
	}
	// Decode into a map that exists: encoding/gob sizes a nil map from the
	// count the input declares, which hostile input sets to billions.
	m = map[string]any{}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkGobFraming checks that every message of the gob stream in data
// declares a length within data: encoding/gob reads a message of a declared
// length in chunks of up to 10 MB, whatever follows.
func checkGobFraming(data []byte) error {
	for len(data) > 0 {
		n, size := uint64(data[0]), 1
		if n >= 0x80 {
			size = 1 + int(-int8(data[0]))
			if size < 2 || size > 9 || size > len(data) {
				return fmt.Errorf("%w: gob: bad message length", ErrMalformed)
			}
			n = 0
			for _, b := range data[1:size] {
				n = n<<8 | uint64(b)
			}
		}
		if n > uint64(len(data)-size) {
			return fmt.Errorf("%w: gob: message longer than the input", ErrMalformed)
		}
		data = data[size+int(n):]
	}
	return nil
}

type msgpackCodec struct{}

func (msgpackCodec) ID() uint8 { return msgpackCodecID }

var msgpackEncoders = sync.Pool{New: func() any {
	enc := msgpack.NewEncoder(nil)
	enc.SetSortMapKeys(true)
	return &msgpackEncoder{enc: enc}
}}

type msgpackEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func (msgpackCodec) Encode(values map[string]any) ([]byte, error) {
	e := msgpackEncoders.Get().(*msgpackEncoder)
	defer msgpackEncoders.Put(e)
	e.buf.Reset()
	e.enc.Reset(&e.buf)
	if err := e.enc.Encode(values); err != nil {
		return nil, err
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

type msgpackDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var msgpackDecoders = sync.Pool{New: func() any { return &msgpackDecoder{dec: msgpack.NewDecoder(nil)} }}

func (msgpackCodec) Decode(data []byte) (map[string]any, error) {
	if err := checkMsgpack(data); err != nil {
		return nil, err
	}
	d := msgpackDecoders.Get().(*msgpackDecoder)
	defer msgpackDecoders.Put(d)
	d.r.Reset(data)
	d.dec.Reset(&d.r)
	m, err := d.dec.DecodeMap()
	if err != nil {
		return nil, err
	}
	if m == nil {
		return map[string]any{}, nil
	}
	for k, v := range m {
		m[k] = widenInts(v)
	}
	return m, nil
}

// widenInts turns the sized integers msgpack decodes (int8, uint16, ...)
// into int64 and uint64, in nested slices and maps too. (The library's
// loose mode would do this, but it also turns []byte into string.)
func widenInts(v any) any {
	switch n := v.(type) {
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case uint8:
		return uint64(n)
	case uint16:
		return uint64(n)
	case uint32:
		return uint64(n)
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
