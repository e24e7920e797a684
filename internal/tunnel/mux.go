package tunnel

import (
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

// coalescingConn merges each yamux data-frame header with the body yamux
// writes right after it. yamux writes them separately; over TLS that would
// cost a record and a syscall per header.
type coalescingConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	return &coalescingConn{Conn: c, pending: make([]byte, 0, 64<<10)}
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) > 0 {
		buf := append(c.pending, p...)
		_, err := c.Conn.Write(buf)
		c.pending = buf[:0]
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// halfCloser is a connection that can close its write side alone.
type halfCloser interface {
	CloseWrite() error
}

// 256 KiB buffers: fewer syscalls on the plain hops and larger mux frames.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

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
		bp := copyBufPool.Get().(*[]byte)
		defer copyBufPool.Put(bp)
		// Hide ReadFrom/WriteTo so our larger buffer is used.
		var w io.Writer = writerOnly{dst}
		if _, ok := dst.(*yamux.Stream); ok {
			w = chunkWriter{dst}
		}
		_, err := io.CopyBuffer(w, readerOnly{src}, *bp)
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

type writerOnly struct{ io.Writer }

// maxMuxFrame bounds the data frames we hand yamux so that streams sharing a
// session interleave finely: a stream opening behind busy ones waits for
// frames of at most this size each, not for whole copy buffers.
const maxMuxFrame = 64 << 10

type chunkWriter struct{ w io.Writer }

func (c chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n, err := c.w.Write(p[:min(len(p), maxMuxFrame)])
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

type readerOnly struct{ io.Reader }
