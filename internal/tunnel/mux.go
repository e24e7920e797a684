package tunnel

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/yamux"
)

// Stream windows: each stream may have this much in flight, so a stalled
// reader holds back only its own stream. 1 MiB keeps a single stream near
// line rate on loopback; memory for N idle streams stays small because yamux
// allocates receive buffers only as data arrives.
const maxStreamWindow = 1 << 20

func muxConfig(log logr.Logger, keepAlive time.Duration) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.AcceptBacklog = 4096
	cfg.EnableKeepAlive = keepAlive > 0
	if keepAlive > 0 {
		cfg.KeepAliveInterval = keepAlive
	}
	cfg.ConnectionWriteTimeout = 15 * time.Second
	cfg.MaxStreamWindowSize = maxStreamWindow
	cfg.StreamOpenTimeout = 30 * time.Second
	// A stream half-closed by us whose peer never finishes is reset after
	// this long; it bounds what an abandoned stream pins.
	cfg.StreamCloseTimeout = 30 * time.Second
	cfg.LogOutput = nil
	cfg.Logger = yamuxLogger{log.V(4)}
	return cfg
}

// yamuxLogger sends yamux's printf logging to logr.
type yamuxLogger struct{ log logr.Logger }

func (l yamuxLogger) Print(v ...any) { l.log.Info("Yamux", "message", v) }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.log.Info("Yamux", "format", format, "args", v)
}
func (l yamuxLogger) Println(v ...any) { l.log.Info("Yamux", "message", v) }

// yamux frame header layout (yamux spec): version(1) type(1) flags(2)
// stream id(4) length(4).
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

// maxTLSPayload is the most plaintext crypto/tls puts in one record.
const maxTLSPayload = 16 << 10

// coalescingConn merges each yamux data-frame header with the body yamux
// writes right after it. yamux writes them separately; over TLS that would
// cost a record and a syscall per header. Only the header and the start of
// the body, one record's worth, are copied: the rest of the body goes to
// TLS as it is. Over a batchConn the records of one frame leave in a single
// syscall.
type coalescingConn struct {
	net.Conn
	batch *batchConn // under Conn's TLS, if any

	mu      sync.Mutex
	pending bool
	head    []byte // a held header, then the first record of its frame
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, head: make([]byte, 0, maxTLSPayload)}
	if tc, ok := c.(*tls.Conn); ok {
		cc.batch, _ = tc.NetConn().(*batchConn)
	}
	return cc
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending {
		c.pending = false
		n := min(len(p), maxTLSPayload-len(c.head))
		c.head = append(c.head, p[:n]...)
		if err := c.write(c.head, p[n:]); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
		c.head = append(c.head[:0], p...)
		c.pending = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// write writes a and b, batched into one syscall when it can.
func (c *coalescingConn) write(a, b []byte) error {
	if c.batch != nil {
		c.batch.cork()
	}
	_, err := c.Conn.Write(a)
	if err == nil && len(b) > 0 {
		_, err = c.Conn.Write(b)
	}
	if c.batch != nil {
		if ferr := c.batch.uncork(); err == nil {
			err = ferr
		}
	}
	return err
}

// batchConn sits under a TLS connection. While corked it gathers the records
// TLS writes and sends them in one syscall when uncorked, instead of one
// syscall per record; it reads through a large buffer, so that one syscall
// fetches many records.
type batchConn struct {
	net.Conn
	r *bufio.Reader

	mu     sync.Mutex
	corked bool
	buf    []byte
}

func newBatchConn(c net.Conn) *batchConn {
	return &batchConn{Conn: c, r: bufio.NewReaderSize(c, batchReadSize)}
}

// batchReadSize is the read buffer under TLS.
const batchReadSize = 128 << 10

func (c *batchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *batchConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

func (c *batchConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// halfCloser is a connection that can close its write side alone.
type halfCloser interface {
	CloseWrite() error
}

// writeGate bounds how many data frames of a session's streams wait in
// yamux's send queue at once. That queue is a single FIFO shared with
// control frames (stream acknowledgements, window updates, pings): with a
// thousand busy streams each queueing a frame, every control frame waited
// behind tens of MiB of data, so opening a stream took seconds. Streams
// take turns at the gate in arrival order.
type writeGate chan struct{}

// gatedFrames is how many data frames a session queues at once: enough to
// keep its sender busy, few enough that a control frame waits for at most
// this many frames.
const gatedFrames = 16

func newWriteGate() writeGate { return make(writeGate, gatedFrames) }

// muxStream is a yamux stream whose writes pass the session's gate. A stream
// whose send window is full waits for it outside the gate, so a slow reader
// holds up only its own stream.
type muxStream struct {
	*yamux.Stream
	gate writeGate

	mu       sync.Mutex
	gated    bool      // a write holds the gate
	deadline time.Time // the caller's write deadline
}

func newMuxStream(st *yamux.Stream, gate writeGate) *muxStream {
	return &muxStream{Stream: st, gate: gate}
}

// pastDeadline makes a yamux write that finds no send window return at once.
var pastDeadline = time.Unix(1, 0)

func (s *muxStream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n, err := s.writeFrame(p[:min(len(p), maxMuxFrame)])
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// writeFrame writes p, at most maxMuxFrame bytes.
func (s *muxStream) writeFrame(p []byte) (int, error) {
	s.gate <- struct{}{}
	s.mu.Lock()
	s.gated = true
	_ = s.Stream.SetWriteDeadline(pastDeadline)
	s.mu.Unlock()
	n, err := s.Stream.Write(p)
	s.mu.Lock()
	s.gated = false
	deadline := s.deadline
	_ = s.Stream.SetWriteDeadline(deadline)
	s.mu.Unlock()
	<-s.gate
	if errors.Is(err, yamux.ErrTimeout) && (deadline.IsZero() || time.Now().Before(deadline)) {
		// The send window is full: wait for the reader without the gate.
		m, err := s.Stream.Write(p[n:])
		return n + m, err
	}
	return n, err
}

// SetWriteDeadline implements net.Conn.
func (s *muxStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	if s.gated {
		return nil // applied when the gated write is done
	}
	return s.Stream.SetWriteDeadline(t)
}

// SetDeadline implements net.Conn.
func (s *muxStream) SetDeadline(t time.Time) error {
	if err := s.Stream.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// CloseWrite half-closes the stream: Close on a yamux stream sends FIN and
// still lets it read.
func (s *muxStream) CloseWrite() error { return s.Stream.Close() }

// Copy buffers: a direction starts with a small one and moves to a large one
// once a read fills it, so idle directions of many streams pin little memory
// while busy ones make few syscalls and large mux frames.
var (
	smallBufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
	largeBufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
)

// copyConn copies src to dst until src ends (nil on EOF).
func copyConn(dst io.Writer, src io.Reader) error {
	bp, large := smallBufPool.Get().(*[]byte), false
	defer func() {
		if large {
			largeBufPool.Put(bp)
		} else {
			smallBufPool.Put(bp)
		}
	}()
	for {
		buf := *bp
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if n == len(buf) && !large {
				smallBufPool.Put(bp)
				bp, large = largeBufPool.Get().(*[]byte), true
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// splice copies a to b and b to a until both directions end, propagating
// half-closes; an error in either direction closes both connections.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	var once sync.Once
	abort := func() {
		once.Do(func() {
			_ = a.Close()
			_ = b.Close()
		})
	}
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		err := copyConn(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			abort()
			return
		}
		if hc, ok := dst.(halfCloser); ok {
			if hc.CloseWrite() != nil {
				abort()
			}
			return
		}
		if _, ok := dst.(*yamux.Stream); ok {
			// Close on a yamux stream is a half-close (FIN).
			_ = dst.Close()
			return
		}
		abort()
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
}

// maxMuxFrame bounds the data frames we hand yamux so that streams sharing a
// session interleave finely: a stream opening behind busy ones waits for
// frames of at most this size each, not for whole copy buffers.
const maxMuxFrame = 64 << 10
