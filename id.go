package herald

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Id prefixes shown at the API.
const (
	PrefixEvent        = "msg_"
	PrefixSubscription = "sub_"
	PrefixDelivery     = "dlv_"
	PrefixBatch        = "bat_"
	PrefixKey          = "key_"
)

// NewUUID returns a UUIDv7 (RFC 9562) in its canonical text form: a 48-bit
// Unix millisecond timestamp followed by random bits, so ids sort by creation
// time and index well. It is written here rather than imported to keep this
// package standard-library only.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	ms := uint64(time.Now().UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(b[0:6], ts[2:8])
	b[6] = (b[6] & 0x0f) | 0x70 // version 7
	b[8] = (b[8] & 0x3f) | 0x80 // variant RFC 9562
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// NewID returns prefix followed by a UUIDv7, such as "sub_01929f0e-…".
func NewID(prefix string) string { return prefix + NewUUID() }
