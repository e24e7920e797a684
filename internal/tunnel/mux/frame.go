// Package mux multiplexes many bidirectional byte streams over one reliable,
// ordered connection (the tunnel's TLS session).
//
// Design, in short:
//   - A writer puts its frame on the connection itself, under the session's
//     write lock: no hand-off to a send goroutine. A data frame's header, any
//     pending control frames and the start of its payload go in one Write, so
//     they share a TLS record; the rest of the payload follows without a copy.
//   - Control frames (window updates, opens, resets, pings) never queue behind
//     data: they wait in a small queue that whoever holds the write lock
//     flushes before its own frame, so they wait for at most one data frame.
//   - Per-stream credit flow control: the receiver grants a window; a sender
//     out of credit blocks only its own stream.
//   - One copy on receive: payloads are read from the connection straight
//     into the stream's bounded buffer (pooled chunks) and copied out once by
//     the reader.
//   - Opening a stream costs no round trip: the open travels ahead of the
//     stream's first data. The accepting side bounds its backlog and resets
//     streams it cannot queue.
//   - Half-close (FIN), reset (RST), deadlines, keepalive pings.
package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format: every frame starts with a 12-byte header
//
//	version(1) type(1) flags(1) reserved(1) stream(4) length(4)
//
// big endian. Data frames carry length bytes of payload; for window updates
// length is the credit granted, for pings an opaque value echoed back, for
// go-away a code. Reset frames carry nothing.
const (
	headerSize = 12
	version    = 1
)

// Frame types.
const (
	typeData   uint8 = 0
	typeWindow uint8 = 1
	typePing   uint8 = 2
	typeGoAway uint8 = 3
	typeReset  uint8 = 4
	typeMax          = typeReset
)

// Flags.
const (
	flagSYN uint8 = 1 << 0 // data: opens the stream
	flagFIN uint8 = 1 << 1 // data: the sender will send no more data
	flagACK uint8 = 1 << 0 // ping: this is the answer
)

// maxPayload bounds a data frame on the wire, whatever the window.
const maxPayload = 16 << 20

type header struct {
	typ    uint8
	flags  uint8
	stream uint32
	length uint32
}

var errProtocol = errors.New("mux: protocol error")

func appendHeader(b []byte, h header) []byte {
	return append(b, version, h.typ, h.flags, 0,
		byte(h.stream>>24), byte(h.stream>>16), byte(h.stream>>8), byte(h.stream),
		byte(h.length>>24), byte(h.length>>16), byte(h.length>>8), byte(h.length))
}

// parseHeader decodes and checks a header: version, type, flags valid for
// the type, stream 0 exactly for session frames, payload size.
func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("%w: short header", errProtocol)
	}
	h := header{typ: b[1], flags: b[2], stream: binary.BigEndian.Uint32(b[4:8]), length: binary.BigEndian.Uint32(b[8:12])}
	if b[0] != version {
		return h, fmt.Errorf("%w: version %d", errProtocol, b[0])
	}
	if b[3] != 0 {
		return h, fmt.Errorf("%w: reserved byte set", errProtocol)
	}
	switch h.typ {
	case typeData:
		if h.flags&^(flagSYN|flagFIN) != 0 {
			return h, fmt.Errorf("%w: data flags %#x", errProtocol, h.flags)
		}
		if h.length > maxPayload {
			return h, fmt.Errorf("%w: data frame of %d bytes", errProtocol, h.length)
		}
	case typeWindow, typeReset:
		if h.flags != 0 {
			return h, fmt.Errorf("%w: flags %#x on frame type %d", errProtocol, h.flags, h.typ)
		}
		if h.typ == typeReset && h.length != 0 {
			return h, fmt.Errorf("%w: reset with length", errProtocol)
		}
	case typePing:
		if h.flags&^flagACK != 0 {
			return h, fmt.Errorf("%w: ping flags %#x", errProtocol, h.flags)
		}
	case typeGoAway:
		if h.flags != 0 {
			return h, fmt.Errorf("%w: go-away flags %#x", errProtocol, h.flags)
		}
	default:
		return h, fmt.Errorf("%w: frame type %d", errProtocol, h.typ)
	}
	session := h.typ == typePing || h.typ == typeGoAway
	if session != (h.stream == 0) {
		return h, fmt.Errorf("%w: frame type %d on stream %d", errProtocol, h.typ, h.stream)
	}
	return h, nil
}

func errProtocolf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errProtocol}, args...)...)
}
