package mux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors.
var (
	// ErrSessionClosed is returned by operations on a closed session.
	ErrSessionClosed = errors.New("mux: session closed")
	// ErrStreamReset is returned once the peer reset a stream (or the
	// accepting side refused it).
	ErrStreamReset = errors.New("mux: stream reset")
	// ErrWriteClosed is returned by a write after CloseWrite.
	ErrWriteClosed = errors.New("mux: write on a stream closed for writing")
	// ErrPingTimeout is returned when a ping is not answered in time.
	ErrPingTimeout = errors.New("mux: ping timed out")
)

// Corker batches writes to the underlying transport: between Cork and
// Uncork writes may be held back and sent together.
type Corker interface {
	Cork()
	Uncork() error
}

// Config tunes a session. Both sides must use the same Window.
type Config struct {
	// Window is each stream's receive window in bytes (default 1 MiB).
	Window uint32
	// MaxFrame is the largest data payload a write puts in one frame
	// (default 64 KiB): streams sharing a session interleave at this grain.
	MaxFrame int
	// AcceptBacklog bounds streams opened by the peer and not yet accepted
	// (default 1024); streams beyond it are reset.
	AcceptBacklog int
	// KeepAlive is the interval of pings that detect a dead peer; 0
	// disables them.
	KeepAlive time.Duration
	// PingTimeout bounds the wait for a ping's answer (default 15 s).
	PingTimeout time.Duration
	// Linger bounds how long a stream closed by us waits for the peer's
	// FIN before it is reset (default 30 s).
	Linger time.Duration
	// Corker, if set, batches the records of one frame into one syscall.
	Corker Corker
}

func (c *Config) defaults() {
	if c.Window == 0 {
		c.Window = 1 << 20
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 64 << 10
	}
	c.MaxFrame = min(c.MaxFrame, int(c.Window), maxPayload)
	if c.AcceptBacklog <= 0 {
		c.AcceptBacklog = 1024
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 15 * time.Second
	}
	if c.Linger <= 0 {
		c.Linger = 30 * time.Second
	}
}

// headRoom is how much of a frame, header first, is copied into one buffer
// before the write: a TLS record's worth of plaintext, so a header always
// shares its record with payload.
const headRoom = 16 << 10

// Session is one end of a multiplexed connection.
type Session struct {
	conn   io.ReadWriteCloser
	cfg    Config
	client bool

	// wmu serialises writes to conn; wbuf is the head buffer, under wmu.
	wmu  sync.Mutex
	wbuf []byte

	// Control frames waiting for the write lock.
	cmu         sync.Mutex
	ctrl        []byte
	ctrlPending atomic.Bool

	smu      sync.Mutex
	streams  map[uint32]*Stream
	nextID   uint32
	pings    map[uint32]chan struct{}
	pingSeq  uint32
	acceptCh chan *Stream
	kick     chan struct{} // wakes the flusher

	done      chan struct{}
	closeOnce sync.Once
	err       error // why the session ended; set before done closes
}

// Client starts the dialling side of a session over conn.
func Client(conn io.ReadWriteCloser, cfg Config) *Session { return newSession(conn, cfg, true) }

// Server starts the accepting side of a session over conn.
func Server(conn io.ReadWriteCloser, cfg Config) *Session { return newSession(conn, cfg, false) }

func newSession(conn io.ReadWriteCloser, cfg Config, client bool) *Session {
	cfg.defaults()
	s := &Session{
		conn:     conn,
		cfg:      cfg,
		client:   client,
		wbuf:     make([]byte, 0, headRoom+headerSize),
		streams:  map[uint32]*Stream{},
		pings:    map[uint32]chan struct{}{},
		acceptCh: make(chan *Stream, cfg.AcceptBacklog),
		done:     make(chan struct{}),
		kick:     make(chan struct{}, 1),
	}
	if client {
		s.nextID = 1
	} else {
		s.nextID = 2
	}
	go s.readLoop()
	go s.flusher()
	if cfg.KeepAlive > 0 {
		go s.keepAlive()
	}
	return s
}

// CloseChan is closed when the session ends.
func (s *Session) CloseChan() <-chan struct{} { return s.done }

// IsClosed says whether the session has ended.
func (s *Session) IsClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Err says why the session ended (nil while it runs).
func (s *Session) Err() error {
	if !s.IsClosed() {
		return nil
	}
	return s.err
}

// NumStreams is the number of streams the session tracks.
func (s *Session) NumStreams() int {
	s.smu.Lock()
	defer s.smu.Unlock()
	return len(s.streams)
}

// Close ends the session: every stream and every blocked call fails.
func (s *Session) Close() error {
	// The peer learns from the connection closing.
	s.closeWith(ErrSessionClosed)
	return nil
}

func (s *Session) closeWith(err error) {
	s.closeOnce.Do(func() {
		s.err = err
		close(s.done)
		_ = s.conn.Close()
		s.smu.Lock()
		streams := s.streams
		s.streams = map[uint32]*Stream{}
		s.smu.Unlock()
		for _, st := range streams {
			st.notifyAll()
		}
	})
}

// OpenStream opens a stream. It does not wait for the peer: the open goes
// ahead of the stream's first data.
func (s *Session) OpenStream() (*Stream, error) {
	s.smu.Lock()
	if s.IsClosed() {
		s.smu.Unlock()
		return nil, ErrSessionClosed
	}
	id := s.nextID
	if id > 1<<31 {
		s.smu.Unlock()
		return nil, errors.New("mux: stream IDs exhausted")
	}
	s.nextID += 2
	st := newStream(s, id)
	s.streams[id] = st
	s.smu.Unlock()
	s.sendControl(header{typ: typeData, flags: flagSYN, stream: id})
	return st, nil
}

// AcceptStream waits for a stream opened by the peer.
func (s *Session) AcceptStream() (*Stream, error) {
	select {
	case st := <-s.acceptCh:
		return st, nil
	case <-s.done:
		return nil, s.err
	}
}

// Ping sends a ping and waits for its answer, returning the round trip.
func (s *Session) Ping() (time.Duration, error) {
	ch := make(chan struct{})
	s.smu.Lock()
	s.pingSeq++
	id := s.pingSeq
	s.pings[id] = ch
	s.smu.Unlock()
	defer func() {
		s.smu.Lock()
		delete(s.pings, id)
		s.smu.Unlock()
	}()
	start := time.Now()
	s.sendControl(header{typ: typePing, length: id})
	t := time.NewTimer(s.cfg.PingTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return time.Since(start), nil
	case <-t.C:
		return 0, ErrPingTimeout
	case <-s.done:
		return 0, s.err
	}
}

func (s *Session) keepAlive() {
	t := time.NewTicker(s.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if _, err := s.Ping(); err != nil {
				if errors.Is(err, ErrPingTimeout) {
					s.closeWith(fmt.Errorf("mux: keepalive: %w", err))
				}
				return
			}
		}
	}
}

// sendControl queues a control frame and flushes it unless a writer holds
// the lock: that writer flushes it before or right after its own frame.
func (s *Session) sendControl(h header) {
	if s.queueControl(h) {
		s.flushControl()
	}
}

// sendControlAsync queues a control frame for the flusher goroutine: the
// session reader uses it, so that it never blocks on a write (two readers
// blocked writing to each other would deadlock the session).
func (s *Session) sendControlAsync(h header) {
	if s.queueControl(h) {
		notify(s.kick)
	}
}

func (s *Session) queueControl(h header) bool {
	if s.IsClosed() {
		return false
	}
	s.cmu.Lock()
	s.ctrl = appendHeader(s.ctrl, h)
	s.ctrlPending.Store(true)
	s.cmu.Unlock()
	return true
}

// flusher writes control frames queued by the session reader.
func (s *Session) flusher() {
	for {
		select {
		case <-s.done:
			return
		case <-s.kick:
		}
		if !s.ctrlPending.Load() {
			continue
		}
		s.wmu.Lock()
		buf := s.takeControl(s.wbuf[:0])
		var err error
		if len(buf) > 0 && !s.IsClosed() {
			_, err = s.conn.Write(buf)
		}
		s.wbuf = buf[:0]
		s.wmu.Unlock()
		if err != nil {
			s.closeWith(fmt.Errorf("mux: writing: %w", err))
			return
		}
	}
}

// flushControl writes queued control frames if the write lock is free.
func (s *Session) flushControl() {
	for s.ctrlPending.Load() {
		if !s.wmu.TryLock() {
			return // the holder flushes when it unlocks
		}
		buf := s.takeControl(s.wbuf[:0])
		var err error
		if len(buf) > 0 {
			_, err = s.conn.Write(buf)
		}
		s.wbuf = buf[:0]
		s.wmu.Unlock()
		if err != nil {
			s.closeWith(fmt.Errorf("mux: writing: %w", err))
			return
		}
	}
}

// takeControl appends the queued control frames to b; under wmu.
func (s *Session) takeControl(b []byte) []byte {
	if !s.ctrlPending.Load() {
		return b
	}
	s.cmu.Lock()
	b = append(b, s.ctrl...)
	s.ctrl = s.ctrl[:0]
	s.ctrlPending.Store(false)
	s.cmu.Unlock()
	return b
}

// writeData writes one data frame, preceded by queued control frames.
func (s *Session) writeData(id uint32, flags uint8, p []byte) error {
	s.wmu.Lock()
	if s.IsClosed() {
		s.wmu.Unlock()
		return s.err
	}
	buf := s.takeControl(s.wbuf[:0])
	buf = appendHeader(buf, header{typ: typeData, flags: flags, stream: id, length: uint32(len(p))})
	k := 0
	if len(buf) < headRoom {
		k = min(len(p), headRoom-len(buf))
	}
	buf = append(buf, p[:k]...)
	var err error
	if k < len(p) && s.cfg.Corker != nil {
		s.cfg.Corker.Cork()
		_, err = s.conn.Write(buf)
		if err == nil {
			_, err = s.conn.Write(p[k:])
		}
		if uerr := s.cfg.Corker.Uncork(); err == nil {
			err = uerr
		}
	} else {
		_, err = s.conn.Write(buf)
		if err == nil && k < len(p) {
			_, err = s.conn.Write(p[k:])
		}
	}
	if cap(buf) <= 4*headRoom {
		s.wbuf = buf[:0]
	} else {
		s.wbuf = make([]byte, 0, headRoom+headerSize)
	}
	s.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("mux: writing: %w", err)
		s.closeWith(err)
		return err
	}
	s.flushControl()
	return nil
}

func (s *Session) stream(id uint32) *Stream {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.streams[id]
}

func (s *Session) forget(id uint32) {
	s.smu.Lock()
	delete(s.streams, id)
	s.smu.Unlock()
}

// readLoop reads frames until the connection fails.
func (s *Session) readLoop() {
	err := s.read()
	s.closeWith(err)
}

func (s *Session) read() error {
	var hb [headerSize]byte
	for {
		if _, err := io.ReadFull(s.conn, hb[:]); err != nil {
			if s.IsClosed() {
				return s.err
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return ErrSessionClosed
			}
			return fmt.Errorf("mux: reading: %w", err)
		}
		h, err := parseHeader(hb[:])
		if err != nil {
			return err
		}
		switch h.typ {
		case typeData:
			if err := s.onData(h); err != nil {
				return err
			}
		case typeWindow:
			if st := s.stream(h.stream); st != nil {
				st.addCredit(h.length)
			}
		case typeReset:
			if st := s.stream(h.stream); st != nil {
				st.onReset()
			}
		case typePing:
			if h.flags&flagACK == 0 {
				s.sendControlAsync(header{typ: typePing, flags: flagACK, length: h.length})
				continue
			}
			s.smu.Lock()
			ch := s.pings[h.length]
			delete(s.pings, h.length)
			s.smu.Unlock()
			if ch != nil {
				close(ch)
			}
		case typeGoAway:
			return ErrSessionClosed
		}
	}
}

func (s *Session) onData(h header) error {
	var st *Stream
	if h.flags&flagSYN != 0 {
		// The peer opens streams of the other parity.
		if (h.stream%2 == 1) == s.client {
			return fmt.Errorf("%w: peer opened stream %d of our parity", errProtocol, h.stream)
		}
		s.smu.Lock()
		if s.streams[h.stream] != nil {
			s.smu.Unlock()
			return fmt.Errorf("%w: stream %d opened twice", errProtocol, h.stream)
		}
		st = newStream(s, h.stream)
		select {
		case s.acceptCh <- st:
			s.streams[h.stream] = st
			s.smu.Unlock()
		default:
			s.smu.Unlock()
			st = nil
			s.sendControlAsync(header{typ: typeReset, stream: h.stream})
		}
	} else {
		st = s.stream(h.stream)
	}
	if st == nil {
		// A stream we reset or refused: drop what was in flight.
		if h.length > 0 {
			if _, err := io.CopyN(io.Discard, s.conn, int64(h.length)); err != nil {
				return fmt.Errorf("mux: reading: %w", err)
			}
		}
		return nil
	}
	return st.receive(h)
}
