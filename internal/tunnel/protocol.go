package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// protocolVersion is the version of the hello and request frames.
const protocolVersion = 1

// maxFrame bounds a control frame so a peer cannot make us allocate much.
const maxFrame = 4096

// hello is the agent's first frame on a new connection.
type hello struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
}

// welcome answers a hello.
type welcome struct {
	OK     bool   `json:"ok"`
	Server string `json:"server,omitempty"`
	Error  string `json:"error,omitempty"`
}

// streamKind says what a stream opened by the agent carries.
type streamKind string

const kindReport streamKind = "report"

// request opens a stream: server to agent, or agent to server for reports.
type request struct {
	Kind   streamKind `json:"kind,omitempty"`
	Target string     `json:"target,omitempty"`
	// Servers is the number of server replicas the agent is connected to,
	// in a report.
	Servers int32 `json:"servers,omitempty"`
}

// Reply codes.
const (
	codeOK          = "OK"
	codeForbidden   = "Forbidden"
	codeUnreachable = "Unreachable"
	codeBadRequest  = "BadRequest"
)

// reply answers a request.
type reply struct {
	Code  string `json:"code"`
	Error string `json:"error,omitempty"`
}

// ErrForbidden is returned when the agent refuses a target by policy.
var ErrForbidden = errors.New("target forbidden by the agent's policy")

// ErrUnreachable is returned when the agent could not dial the target.
var ErrUnreachable = errors.New("target unreachable from the agent")

// ErrNoAgent is returned when no agent is connected for a node.
var ErrNoAgent = errors.New("no agent connected for the node")

// ErrUnknownTarget is returned when a host resolves to no node.
var ErrUnknownTarget = errors.New("target does not belong to a known node")

func (r reply) err() error {
	switch r.Code {
	case codeOK:
		return nil
	// The agent's message already starts with the sentinel's text when it
	// wrapped it: say it once.
	case codeForbidden:
		return fmt.Errorf("%w: %s", ErrForbidden, strings.TrimPrefix(r.Error, ErrForbidden.Error()+": "))
	case codeUnreachable:
		return fmt.Errorf("%w: %s", ErrUnreachable, strings.TrimPrefix(r.Error, ErrUnreachable.Error()+": "))
	default:
		return fmt.Errorf("agent refused the request (%s): %s", r.Code, r.Error)
	}
}

func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding frame: %w", err)
	}
	if len(body) > maxFrame {
		return fmt.Errorf("frame of %d bytes exceeds %d", len(body), maxFrame)
	}
	buf := make([]byte, 2+len(body))
	binary.BigEndian.PutUint16(buf, uint16(len(body)))
	copy(buf[2:], body)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("writing frame: %w", err)
	}
	return nil
}

func readFrame(r io.Reader, v any) error {
	var size [2]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return fmt.Errorf("reading frame length: %w", err)
	}
	n := int(binary.BigEndian.Uint16(size[:]))
	if n > maxFrame {
		return fmt.Errorf("frame of %d bytes exceeds %d", n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("reading frame: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding frame: %w", err)
	}
	return nil
}
