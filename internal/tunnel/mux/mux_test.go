package mux

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

func sessions(t testing.TB, cfg Config) (*Session, *Session) {
	t.Helper()
	a, b := tcpPair(t)
	c, s := Client(a, cfg), Server(b, cfg)
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c, s
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func within[T any](t *testing.T, d time.Duration, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out: %s", what)
		panic("unreachable")
	}
}

// TestManyStreamsEcho: many streams in both directions at once, of sizes
// around and above the frame size and the window, all arrive intact.
func TestManyStreamsEcho(t *testing.T) {
	c, s := sessions(t, Config{Window: 256 << 10})
	go func() {
		for {
			st, err := s.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				if _, err := io.Copy(st, st); err != nil {
					return
				}
				_ = st.CloseWrite()
			}()
		}
	}()
	const streams = 200
	sizes := []int{0, 1, 100, 16<<10 - 12, 64 << 10, 64<<10 + 1, 300 << 10, 1 << 20}
	errs := make(chan error, streams)
	for i := range streams {
		go func() {
			data := random(t, sizes[i%len(sizes)])
			st, err := c.OpenStream()
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			go func() { _, _ = st.Write(data); _ = st.CloseWrite() }()
			got, err := io.ReadAll(st)
			if err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("stream %d: got %d bytes, want %d, or different", i, len(got), len(data))
				return
			}
			errs <- nil
		}()
	}
	for range streams {
		if err := within(t, 60*time.Second, "streams", errs); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for (c.NumStreams() != 0 || s.NumStreams() != 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.NumStreams() != 0 || s.NumStreams() != 0 {
		t.Fatalf("streams left tracked: client %d, server %d", c.NumStreams(), s.NumStreams())
	}
}

// TestConcurrentWritesStayWhole: writes from several goroutines on one
// stream do not interleave within a Write.
func TestConcurrentWritesStayWhole(t *testing.T) {
	c, s := sessions(t, Config{Window: 128 << 10, MaxFrame: 16 << 10})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	const writers, records, size = 4, 20, 100 << 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range records {
				if _, err := st.Write(rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); _ = st.CloseWrite() }()
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*records*size {
		t.Fatalf("got %d bytes", len(got))
	}
	for i := 0; i < len(got); i += size {
		if bytes.Count(got[i:i+size], got[i:i+1]) != size {
			t.Fatalf("record at %d is mixed", i)
		}
	}
}

// TestStalledReaderDoesNotBlockOthers: a stream whose reader never reads
// fills its window and blocks only its own writer; deadlines apply to it.
func TestStalledReaderDoesNotBlockOthers(t *testing.T) {
	const window = 64 << 10
	c, s := sessions(t, Config{Window: window})
	stalled, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	stalledDone := make(chan error, 1)
	go func() {
		_, err := stalled.Write(make([]byte, 4*window))
		stalledDone <- err
	}()
	if _, err := s.AcceptStream(); err != nil { // never read
		t.Fatal(err)
	}
	busy, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	go func() { _, _ = busy.Write(make([]byte, size)); _ = busy.CloseWrite() }()
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, peer)
	if err != nil || n != size {
		t.Fatalf("busy stream moved %d bytes beside a stalled one: %v", n, err)
	}
	select {
	case err := <-stalledDone:
		t.Fatalf("stalled write returned early: %v", err)
	default:
	}
	_ = stalled.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	err = within(t, 5*time.Second, "write deadline on a stream without credit", stalledDone)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled write ended with %v, want a timeout", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%v is not a net.Error timeout", err)
	}
}

// TestHalfClose: after CloseWrite the peer reads EOF and can still answer.
func TestHalfClose(t *testing.T) {
	c, s := sessions(t, Config{})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, ErrWriteClosed) {
		t.Fatalf("write after CloseWrite: %v", err)
	}
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "request" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if _, err := peer.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	if err := peer.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(st)
	if err != nil || string(got) != "response" {
		t.Fatalf("read %q, %v", got, err)
	}
	_ = st.Close()
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// TestCloseWithUnreadDataResets: like TCP, closing with unread data resets
// the stream; the peer's writes and reads fail.
func TestCloseWithUnreadDataResets(t *testing.T) {
	c, s := sessions(t, Config{Window: 64 << 10})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; { // wait for the data to arrive
		peer.mu.Lock()
		n := peer.rlen
		peer.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the written data never arrived at the peer")
		}
		time.Sleep(time.Millisecond)
	}
	_ = peer.Close()
	done := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = st.Write(make([]byte, 32<<10))
		}
		done <- err
	}()
	if err := within(t, 5*time.Second, "write on a reset stream", done); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write: %v", err)
	}
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("read: %v", err)
	}
}

// TestClosedStreamResetsLateData: a stream closed by us resets the peer if
// the peer keeps sending.
func TestClosedStreamResetsLateData(t *testing.T) {
	c, s := sessions(t, Config{Window: 64 << 10})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil { // FIN, lingers for the peer
		t.Fatal(err)
	}
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read = %d, %v; want EOF", n, err)
	}
	done := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = peer.Write(make([]byte, 16<<10))
		}
		done <- err
	}()
	if err := within(t, 5*time.Second, "write to a closed stream", done); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.NumStreams() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.NumStreams() != 0 {
		t.Fatal("closed stream still tracked")
	}
}

// TestLingerResets: a closed stream whose peer never finishes is reset
// after the linger time.
func TestLingerResets(t *testing.T) {
	c, s := sessions(t, Config{Linger: 50 * time.Millisecond})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(peer); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (c.NumStreams() != 0 || s.NumStreams() != 0) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.NumStreams() != 0 || s.NumStreams() != 0 {
		t.Fatalf("tracked after linger: %d, %d", c.NumStreams(), s.NumStreams())
	}
	if _, err := peer.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write after linger reset: %v", err)
	}
}

// TestReadDeadline: a read deadline interrupts a blocked Read, a new one
// set while blocked takes effect, and clearing it lets reads go on.
func TestReadDeadline(t *testing.T) {
	c, s := sessions(t, Config{})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	// The deadline interrupts the blocked Read: it returns, and not before
	// the deadline. (How late it returns is up to the scheduler; within
	// only catches a Read the deadline never woke.)
	deadline := time.Now().Add(20 * time.Millisecond)
	_ = st.SetReadDeadline(deadline)
	done := make(chan error, 1)
	go func() { _, err := st.Read(make([]byte, 1)); done <- err }()
	if err := within(t, 10*time.Second, "read deadline", done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	if time.Now().Before(deadline) {
		t.Fatal("read returned before its deadline")
	}
	// A deadline set while a Read blocks.
	_ = st.SetReadDeadline(time.Time{})
	go func() { _, err := st.Read(make([]byte, 1)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	_ = st.SetReadDeadline(time.Unix(1, 0))
	if err := within(t, 5*time.Second, "deadline set while blocked", done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	_ = st.SetDeadline(time.Time{})
	if _, err := st.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(peer, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
	// A past write deadline fails writes even with credit.
	_ = st.SetWriteDeadline(time.Unix(1, 0))
	if _, err := st.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past deadline: %v", err)
	}
}

// TestOpenPipelinesData: the opener writes and closes before the peer
// accepts; nothing waits for a round trip.
func TestOpenPipelinesData(t *testing.T) {
	c, s := sessions(t, Config{})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "early" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestAcceptBacklog: streams beyond the backlog are reset, the others wait.
func TestAcceptBacklog(t *testing.T) {
	c, s := sessions(t, Config{AcceptBacklog: 4})
	var opened []*Stream
	for range 10 {
		st, err := c.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, st)
	}
	// Refused streams read a reset; queued ones block.
	refused := 0
	for _, st := range opened {
		_ = st.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := st.Read(make([]byte, 1))
		switch {
		case errors.Is(err, ErrStreamReset):
			refused++
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			t.Fatalf("read: %v", err)
		}
	}
	if refused != 6 {
		t.Fatalf("%d streams refused, want 6", refused)
	}
	for range 4 {
		if _, err := s.AcceptStream(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionCloseUnblocksEverything: reads, writes without credit and
// accepts fail on both sides when one side closes.
func TestSessionCloseUnblocksEverything(t *testing.T) {
	c, s := sessions(t, Config{Window: 64 << 10})
	st, err := c.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	tag := func(what string, err error) error {
		if err == nil {
			return fmt.Errorf("%s succeeded after close", what)
		}
		return nil
	}
	go func() { _, err := st.Write(make([]byte, 1<<20)); errs <- tag("write", err) }()
	go func() { _, err := st.Read(make([]byte, 1)); errs <- tag("read", err) }()
	go func() { // reads what was sent before the close, then fails
		<-c.CloseChan()
		var err error
		for err == nil {
			_, err = peer.Read(make([]byte, 1<<20))
		}
		errs <- nil
	}()
	go func() { _, err := c.AcceptStream(); errs <- tag("accept", err) }()
	time.Sleep(50 * time.Millisecond)
	_ = c.Close()
	for range 4 {
		if err := within(t, 5*time.Second, "unblock on close", errs); err != nil {
			t.Fatal(err)
		}
	}
	within(t, 5*time.Second, "peer session ends", s.CloseChan())
	if _, err := c.OpenStream(); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("open after close: %v", err)
	}
}

// TestPingAndDeadPeer: pings are answered; a peer that stops answering is
// detected by the keepalive.
func TestPingAndDeadPeer(t *testing.T) {
	c, _ := sessions(t, Config{})
	if _, err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer b.Close()
	go func() { _, _ = io.Copy(io.Discard, b) }() // a peer that never answers
	dead := Client(a, Config{KeepAlive: 20 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	defer dead.Close()
	within(t, 5*time.Second, "keepalive notices a dead peer", dead.CloseChan())
	if !errors.Is(dead.Err(), ErrPingTimeout) {
		t.Fatalf("session ended with %v", dead.Err())
	}
}

// TestWindowOverrunIsAProtocolError: a peer that sends beyond the window
// ends the session.
func TestWindowOverrunIsAProtocolError(t *testing.T) {
	a, b := tcpPair(t)
	s := Server(b, Config{Window: 1024})
	defer s.Close()
	defer a.Close()
	var frame []byte
	frame = appendHeader(frame, header{typ: typeData, flags: flagSYN, stream: 1, length: 2048})
	frame = append(frame, make([]byte, 2048)...)
	if _, err := a.Write(frame); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "session ends", s.CloseChan())
	if !errors.Is(s.Err(), errProtocol) {
		t.Fatalf("session ended with %v", s.Err())
	}
}

// TestControlFramesOvertakeData: with many busy streams saturating the
// connection, opening one more and getting an answer stays fast. 50 writers
// with 256 KiB windows keep far more queued than the socket buffers hold,
// which is all the test needs, and stay cheap on a small machine.
func TestControlFramesOvertakeData(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c, s := sessions(t, Config{Window: 256 << 10})
	go func() {
		for {
			st, err := s.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				_, _ = io.Copy(io.Discard, st)
				_, _ = st.Write([]byte("ok"))
			}()
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	const busy = 50
	buf := make([]byte, 64<<10)
	for range busy {
		st, err := c.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer st.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := st.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	for range 5 {
		start := time.Now()
		st, err := c.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		_ = st.CloseWrite()
		_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(st)
		if err != nil || string(got) != "ok" {
			t.Fatalf("read %q, %v", got, err)
		}
		t.Logf("open and answer beside %d busy streams: %s", busy, time.Since(start))
		_ = st.Close()
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(appendHeader(nil, header{typ: typeData, flags: flagSYN | flagFIN, stream: 3, length: 100}))
	f.Add(appendHeader(nil, header{typ: typeWindow, stream: 2, length: 1 << 20}))
	f.Add(appendHeader(nil, header{typ: typePing, flags: flagACK, length: 7}))
	f.Add(appendHeader(nil, header{typ: typeReset, stream: 9}))
	f.Add(appendHeader(nil, header{typ: typeGoAway}))
	f.Add([]byte{1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			return
		}
		if got := appendHeader(nil, h); !bytes.Equal(got, b[:headerSize]) {
			t.Fatalf("re-encoded %x, want %x", got, b[:headerSize])
		}
		if h.typ == typeData && h.length > maxPayload {
			t.Fatal("oversized data frame accepted")
		}
		if (h.typ == typePing || h.typ == typeGoAway) != (h.stream == 0) {
			t.Fatal("stream id not checked")
		}
	})
}

// FuzzSession feeds arbitrary bytes to a session: it must end or keep
// running, never panic or hang.
func FuzzSession(f *testing.F) {
	var seed []byte
	seed = appendHeader(seed, header{typ: typeData, flags: flagSYN, stream: 1, length: 3})
	seed = append(seed, "abc"...)
	seed = appendHeader(seed, header{typ: typeWindow, stream: 1, length: 10})
	seed = appendHeader(seed, header{typ: typeData, flags: flagFIN, stream: 1})
	seed = appendHeader(seed, header{typ: typeReset, stream: 1})
	seed = appendHeader(seed, header{typ: typePing, length: 1})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, p := net.Pipe()
		s := Server(a, Config{Window: 4096, AcceptBacklog: 2})
		go func() { _, _ = io.Copy(io.Discard, p) }()
		go func() {
			for {
				st, err := s.AcceptStream()
				if err != nil {
					return
				}
				go func() { _, _ = io.Copy(io.Discard, st); _ = st.Close() }()
			}
		}()
		_ = p.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = p.Write(b)
		_ = s.Close()
		_ = p.Close()
	})
}
