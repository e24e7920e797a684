package tunnel

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/edgeunit/edgeunit/internal/tunnel/mux"
)

// Stream windows: each stream may have this much in flight, so a stalled
// reader holds back only its own stream. 1 MiB keeps a single stream near
// line rate on loopback; memory for N idle streams stays small because
// receive buffers are allocated only as data arrives.
const maxStreamWindow = 1 << 20

// muxConfig is the session configuration for a session over tc, whose
// transport may be a batchConn (then a frame's TLS records leave in one
// syscall).
func muxConfig(tc *tls.Conn, keepAlive time.Duration) mux.Config {
	cfg := mux.Config{
		Window:        maxStreamWindow,
		MaxFrame:      maxMuxFrame,
		AcceptBacklog: 4096,
		KeepAlive:     keepAlive,
		PingTimeout:   15 * time.Second,
		// A stream closed by us whose peer never finishes is reset after
		// this long; it bounds what an abandoned stream pins.
		Linger: 30 * time.Second,
	}
	if bc, ok := tc.NetConn().(*batchConn); ok {
		cfg.Corker = bc
	}
	return cfg
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

// Cork implements mux.Corker.
func (c *batchConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork implements mux.Corker.
func (c *batchConn) Uncork() error {
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
		abort()
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
}

// maxMuxFrame bounds a stream's data frames so that streams sharing a
// session interleave finely: a stream opening behind busy ones waits for
// frames of at most this size each, not for whole copy buffers.
const maxMuxFrame = 64 << 10
