package mux

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// chunk is a piece of a stream's receive buffer: data is buf[r:w].
type chunk struct {
	buf  []byte
	r, w int
}

// Chunk size classes; larger frames get a chunk of their own size.
var chunkClasses = [...]int{4 << 10, 16 << 10, 64 << 10, 256 << 10}

var chunkPools [len(chunkClasses)]sync.Pool

func getChunk(n int) *chunk {
	for i, size := range chunkClasses {
		if n <= size {
			if c, ok := chunkPools[i].Get().(*chunk); ok {
				c.r, c.w = 0, 0
				return c
			}
			return &chunk{buf: make([]byte, size)}
		}
	}
	return &chunk{buf: make([]byte, n)}
}

func putChunk(c *chunk) {
	for i, size := range chunkClasses {
		if len(c.buf) == size {
			chunkPools[i].Put(c)
			return
		}
	}
}

// Stream is one bidirectional byte stream of a session; it is a net.Conn.
// Close is a full close; CloseWrite half-closes (sends FIN) and keeps
// reading.
type Stream struct {
	s  *Session
	id uint32

	// wlock serialises writers, so one Write's frames stay in order and a
	// FIN follows the data written before it.
	wlock sync.Mutex

	mu        sync.Mutex
	chunks    []*chunk
	rlen      int    // bytes buffered
	inflight  uint32 // bytes received and not yet granted back
	pending   uint32 // bytes read and not yet granted back
	filling   bool   // the session reader is writing into the tail chunk
	credit    uint32 // bytes we may send
	finRecv   bool   // the peer sent FIN
	finSent   bool   // we sent FIN
	reset     bool   // reset by either side
	closed    bool   // Close was called
	linger    *time.Timer
	rdeadline time.Time
	wdeadline time.Time
	readCh    chan struct{} // data, FIN, reset, deadline change
	writeCh   chan struct{} // credit, reset, deadline change
}

func newStream(s *Session, id uint32) *Stream {
	return &Stream{s: s, id: id, credit: s.cfg.Window, readCh: make(chan struct{}, 1), writeCh: make(chan struct{}, 1)}
}

// ID is the stream's number in its session.
func (st *Stream) ID() uint32 { return st.id }

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (st *Stream) notifyAll() {
	notify(st.readCh)
	notify(st.writeCh)
}

// wait releases mu until ch fires, the deadline passes or the session ends.
// It reports a deadline already past.
func (st *Stream) wait(deadline time.Time, ch chan struct{}) error {
	var tc <-chan time.Time
	if !deadline.IsZero() {
		left := time.Until(deadline)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(left)
		defer t.Stop()
		tc = t.C
	}
	st.mu.Unlock()
	select {
	case <-ch:
	case <-tc:
	case <-st.s.done:
	}
	st.mu.Lock()
	return nil
}

// Read implements net.Conn. Buffered data is returned before EOF, a reset
// or the session's end.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	st.mu.Lock()
	for st.rlen == 0 {
		switch {
		case st.closed:
			st.mu.Unlock()
			return 0, net.ErrClosed
		case st.finRecv:
			st.mu.Unlock()
			return 0, io.EOF
		case st.reset:
			st.mu.Unlock()
			return 0, ErrStreamReset
		case st.s.IsClosed():
			st.mu.Unlock()
			return 0, st.s.err
		}
		if err := st.wait(st.rdeadline, st.readCh); err != nil {
			st.mu.Unlock()
			return 0, err
		}
	}
	if st.closed {
		st.mu.Unlock()
		return 0, net.ErrClosed
	}
	n := 0
	for n < len(p) && len(st.chunks) > 0 {
		c := st.chunks[0]
		m := copy(p[n:], c.buf[c.r:c.w])
		c.r += m
		n += m
		if c.r < c.w {
			break
		}
		if len(st.chunks) == 1 && st.filling {
			break // the session reader appends to it
		}
		st.chunks[0] = nil
		st.chunks = st.chunks[1:]
		putChunk(c)
	}
	if len(st.chunks) == 0 {
		st.chunks = nil
	}
	st.rlen -= n
	st.pending += uint32(n)
	var grant uint32
	if st.pending >= st.s.cfg.Window/2 && !st.finRecv && !st.reset {
		grant = st.pending
		st.pending = 0
		st.inflight -= grant
	}
	st.mu.Unlock()
	if grant > 0 {
		st.s.sendControl(header{typ: typeWindow, stream: st.id, length: grant})
	}
	return n, nil
}

// writeErr says why the stream cannot send; under mu.
func (st *Stream) writeErr() error {
	switch {
	case st.closed:
		return net.ErrClosed
	case st.reset:
		return ErrStreamReset
	case st.finSent:
		return ErrWriteClosed
	case st.s.IsClosed():
		return st.s.err
	}
	return nil
}

// Write implements net.Conn. It blocks, honouring the write deadline, only
// while this stream has no credit.
func (st *Stream) Write(p []byte) (int, error) {
	st.wlock.Lock()
	defer st.wlock.Unlock()
	written := 0
	for len(p) > 0 {
		st.mu.Lock()
		for {
			if err := st.writeErr(); err != nil {
				st.mu.Unlock()
				return written, err
			}
			if !st.wdeadline.IsZero() && !time.Now().Before(st.wdeadline) {
				st.mu.Unlock()
				return written, os.ErrDeadlineExceeded
			}
			if st.credit > 0 {
				break
			}
			if err := st.wait(st.wdeadline, st.writeCh); err != nil {
				st.mu.Unlock()
				return written, err
			}
		}
		n := min(len(p), int(st.credit), st.s.cfg.MaxFrame)
		st.credit -= uint32(n)
		st.mu.Unlock()
		if err := st.s.writeData(st.id, 0, p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// CloseWrite half-closes the stream: the peer reads EOF after the data
// written so far; this side can still read.
func (st *Stream) CloseWrite() error {
	st.wlock.Lock()
	defer st.wlock.Unlock()
	st.mu.Lock()
	if st.finSent {
		st.mu.Unlock()
		return nil
	}
	if st.closed || st.reset || st.s.IsClosed() {
		err := st.writeErr()
		st.mu.Unlock()
		return err
	}
	st.finSent = true
	done := st.finRecv
	st.mu.Unlock()
	err := st.s.writeData(st.id, flagFIN, nil)
	if done {
		st.s.forget(st.id)
	}
	return err
}

// Close closes the stream. Like TCP: a FIN if we read everything the peer
// sent, a reset if unread data remains (or arrives later).
func (st *Stream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	st.notifyAll()
	unread := st.rlen > 0
	st.releaseLocked()
	switch {
	case st.reset || st.s.IsClosed():
		st.mu.Unlock()
		st.s.forget(st.id)
		return nil
	case unread:
		st.reset = true
		st.mu.Unlock()
		st.s.forget(st.id)
		st.s.sendControl(header{typ: typeReset, stream: st.id})
		return nil
	}
	linger := !st.finRecv
	if linger {
		st.linger = time.AfterFunc(st.s.cfg.Linger, st.abort)
	}
	st.mu.Unlock()
	// Wait for a blocked writer to leave (Close woke it up), then FIN.
	st.wlock.Lock()
	st.mu.Lock()
	fin := !st.finSent && !st.reset
	st.finSent = true
	st.mu.Unlock()
	var err error
	if fin {
		err = st.s.writeData(st.id, flagFIN, nil)
	}
	st.wlock.Unlock()
	if !linger {
		st.s.forget(st.id)
	}
	return err
}

// abort resets a closed stream whose peer did not finish in time.
func (st *Stream) abort() {
	st.mu.Lock()
	if st.reset {
		st.mu.Unlock()
		return
	}
	st.reset = true
	st.mu.Unlock()
	st.s.forget(st.id)
	st.s.sendControl(header{typ: typeReset, stream: st.id})
}

// releaseLocked drops the receive buffer; under mu.
func (st *Stream) releaseLocked() {
	for i, c := range st.chunks {
		if !(st.filling && i == len(st.chunks)-1) {
			putChunk(c)
		}
	}
	st.chunks = nil
	st.rlen = 0
}

// receive takes a data frame from the session reader, reading its payload
// from the connection into the buffer.
func (st *Stream) receive(h header) error {
	n := int(h.length)
	conn := st.s.conn
	if n > 0 {
		st.mu.Lock()
		if st.inflight+h.length > st.s.cfg.Window || h.length > st.s.cfg.Window {
			st.mu.Unlock()
			return errProtocolf("stream %d overran its window", st.id)
		}
		if st.closed || st.reset || st.finRecv {
			// Closed by us: nobody reads; a FIN already came: bad peer,
			// but the data has nowhere to go either way.
			st.mu.Unlock()
			if _, err := io.CopyN(io.Discard, conn, int64(n)); err != nil {
				return err
			}
			st.resetClosed()
			return nil
		}
		st.inflight += h.length
		var c *chunk
		fresh := false
		if k := len(st.chunks); k > 0 && len(st.chunks[k-1].buf)-st.chunks[k-1].w >= n {
			c = st.chunks[k-1]
		} else {
			c, fresh = getChunk(n), true
		}
		start := c.w
		st.filling = !fresh
		st.mu.Unlock()
		if _, err := io.ReadFull(conn, c.buf[start:start+n]); err != nil {
			st.mu.Lock()
			st.filling = false
			st.mu.Unlock()
			return err
		}
		st.mu.Lock()
		st.filling = false
		if st.closed || st.reset {
			if fresh {
				putChunk(c)
			}
			st.mu.Unlock()
			st.resetClosed()
		} else {
			c.w = start + n
			if fresh {
				st.chunks = append(st.chunks, c)
			}
			st.rlen += n
			notify(st.readCh)
			st.mu.Unlock()
		}
	}
	if h.flags&flagFIN != 0 {
		st.mu.Lock()
		st.finRecv = true
		done := st.finSent || st.reset
		if st.linger != nil {
			st.linger.Stop()
		}
		notify(st.readCh)
		st.mu.Unlock()
		if done {
			st.s.forget(st.id)
		}
	}
	return nil
}

// resetClosed resets a stream closed by us that still receives data.
func (st *Stream) resetClosed() {
	st.mu.Lock()
	if !st.closed || st.reset {
		st.mu.Unlock()
		return
	}
	st.reset = true
	if st.linger != nil {
		st.linger.Stop()
	}
	st.mu.Unlock()
	st.s.forget(st.id)
	st.s.sendControlAsync(header{typ: typeReset, stream: st.id})
}

// onReset handles the peer's reset.
func (st *Stream) onReset() {
	st.mu.Lock()
	st.reset = true
	if st.linger != nil {
		st.linger.Stop()
	}
	st.notifyAll()
	st.mu.Unlock()
	st.s.forget(st.id)
}

func (st *Stream) addCredit(n uint32) {
	st.mu.Lock()
	st.credit += n
	notify(st.writeCh)
	st.mu.Unlock()
}

// SetReadDeadline implements net.Conn.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdeadline = t
	notify(st.readCh)
	st.mu.Unlock()
	return nil
}

// SetWriteDeadline implements net.Conn.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.wdeadline = t
	notify(st.writeCh)
	st.mu.Unlock()
	return nil
}

// SetDeadline implements net.Conn.
func (st *Stream) SetDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdeadline, st.wdeadline = t, t
	st.notifyAll()
	st.mu.Unlock()
	return nil
}

type muxAddr struct{}

func (muxAddr) Network() string { return "mux" }
func (muxAddr) String() string  { return "mux" }

// LocalAddr implements net.Conn: the session connection's.
func (st *Stream) LocalAddr() net.Addr {
	if c, ok := st.s.conn.(net.Conn); ok {
		return c.LocalAddr()
	}
	return muxAddr{}
}

// RemoteAddr implements net.Conn: the session connection's.
func (st *Stream) RemoteAddr() net.Addr {
	if c, ok := st.s.conn.(net.Conn); ok {
		return c.RemoteAddr()
	}
	return muxAddr{}
}

var _ net.Conn = (*Stream)(nil)
