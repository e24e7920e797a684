//go:build linux

package testbed

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// systemdStandIn serves the part of systemd's private D-Bus socket
// (/run/systemd/private) that node conversion uses: RestartUnit of a
// unit, and the JobRemoved signal that ends its job. A node of the
// testbed runs no systemd, but node conversion restarts the kubelet
// through it, as on every real node.
//
// It speaks the peer-to-peer protocol, as systemd does on that socket:
// no bus daemon, no Hello, no unique names, and every signal goes to
// every authenticated connection (systemd's bus_foreach_bus sends to
// "all direct buses, unconditionally"), so AddMatch only needs an
// answer.
type systemdStandIn struct {
	ln net.Listener
	// units are the units it knows, each with what restarting it does.
	units      map[string]func() error
	jobTimeout time.Duration
	logf       func(format string, args ...any)
	guid       string
	lastJob    atomic.Uint32

	// turn is held by the running restart: restarts run one at a time,
	// so two conversions never stop and start the kubelet at once.
	turn      chan struct{}
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu sync.Mutex
	// peers are the open connections; ready once authenticated.
	peers  map[*busPeer]bool
	closed bool
}

// busPeer is one client connection.
type busPeer struct {
	conn net.Conn
	// mu serialises writes: replies come from the connection's
	// goroutine, signals from any job's.
	mu     sync.Mutex
	serial uint32
}

// D-Bus names the stand-in answers to or with, and job results beyond
// done and failed.
const (
	systemdPath        = godbus.ObjectPath("/org/freedesktop/systemd1")
	systemdManager     = "org.freedesktop.systemd1.Manager"
	errUnknownMethod   = "org.freedesktop.DBus.Error.UnknownMethod"
	errInvalidArgs     = "org.freedesktop.DBus.Error.InvalidArgs"
	errNoSuchUnit      = "org.freedesktop.systemd1.NoSuchUnit"
	systemdJobTimedOut = "timeout"
	systemdJobCanceled = "canceled"
)

// busWriteTimeout bounds a write to a client, so one that stops reading
// holds no goroutine for good.
const busWriteTimeout = 10 * time.Second

// startSystemdStandIn listens on socket (a stale socket file there is
// replaced). units are the units it knows; a restart runs at most
// jobTimeout, after which its job ends "timeout". logf records every
// restart request and its result.
func startSystemdStandIn(socket string, units map[string]func() error, jobTimeout time.Duration, logf func(format string, args ...any)) (*systemdStandIn, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	guid := make([]byte, 16)
	_, _ = rand.Read(guid)
	s := &systemdStandIn{
		ln: ln, units: units, jobTimeout: jobTimeout, logf: logf, guid: hex.EncodeToString(guid),
		turn: make(chan struct{}, 1), closing: make(chan struct{}), peers: map[*busPeer]bool{},
	}
	s.wg.Go(s.accept)
	return s, nil
}

// close stops listening, closes every connection and waits for their
// goroutines, then for a restart that still runs (at most jobTimeout).
// No restart starts after it.
func (s *systemdStandIn) close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		err = s.ln.Close()
		s.mu.Lock()
		s.closed = true
		for p := range s.peers {
			_ = p.conn.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		// Taking the turn for good waits for the running restart and
		// keeps any other from starting.
		select {
		case s.turn <- struct{}{}:
		case <-time.After(s.jobTimeout):
			err = errors.Join(err, fmt.Errorf("a unit restart still runs %s after the systemd stand-in closed", s.jobTimeout))
		}
	})
	return err
}

func (s *systemdStandIn) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		p := &busPeer{conn: conn}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = conn.Close()
			return
		}
		s.peers[p] = false
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(p) })
	}
}

// serve authenticates the client, then answers its method calls until
// it hangs up or the stand-in closes.
func (s *systemdStandIn) serve(p *busPeer) {
	defer func() {
		s.mu.Lock()
		delete(s.peers, p)
		s.mu.Unlock()
		_ = p.conn.Close()
	}()
	in := bufio.NewReader(p.conn)
	if err := s.authenticate(in, p.conn); err != nil {
		return
	}
	s.mu.Lock()
	s.peers[p] = true
	s.mu.Unlock()
	for {
		// An invalid message ends the connection, as with sd-bus: what
		// follows it can't be framed.
		msg, err := godbus.DecodeMessage(in)
		if err != nil {
			return
		}
		if msg.Type == godbus.TypeMethodCall {
			s.call(p, msg)
		}
	}
}

// authenticate runs the server's side of the SASL handshake, up to
// BEGIN: EXTERNAL only, and no file descriptors passed. godbus sends
// "AUTH EXTERNAL" without the uid (FirstData's response is dropped), so
// it gets an empty challenge (DATA) and answers with an empty DATA: the
// uid is the socket's peer's, as with sd-bus. A uid that is sent must be
// well formed. Lines are at most the reader's buffer (4 KiB), so a client
// can't make it hold more.
func (s *systemdStandIn) authenticate(in *bufio.Reader, out net.Conn) error {
	if b, err := in.ReadByte(); err != nil || b != 0 {
		return fmt.Errorf("no NUL byte before the handshake: %v", err)
	}
	const (
		started = iota
		waitingForData
		authenticated
	)
	state := started
	for {
		line, err := in.ReadSlice('\n')
		if err != nil {
			return err
		}
		args := bytes.Fields(line) // CR LF is white space too
		var verb string
		if len(args) > 0 {
			verb, args = string(args[0]), args[1:]
		}
		reply := "ERROR"
		switch {
		case verb == "AUTH" && len(args) == 1 && string(args[0]) == "EXTERNAL":
			state, reply = waitingForData, "DATA"
		case verb == "AUTH" && len(args) == 2 && string(args[0]) == "EXTERNAL" && isHexUID(args[1]),
			verb == "DATA" && state == waitingForData && (len(args) == 0 || len(args) == 1 && isHexUID(args[0])):
			state, reply = authenticated, "OK "+s.guid
		case verb == "AUTH" || verb == "CANCEL" || verb == "DATA" && state == waitingForData:
			state, reply = started, "REJECTED EXTERNAL"
		case verb == "BEGIN" && state == authenticated:
			return nil
		}
		// NEGOTIATE_UNIX_FD gets ERROR too: nothing here passes them.
		if _, err := out.Write([]byte(reply + "\r\n")); err != nil {
			return err
		}
	}
}

// isHexUID says whether b is a uid as EXTERNAL sends it: its decimal
// digits, hex-encoded.
func isHexUID(b []byte) bool {
	uid, err := hex.DecodeString(string(b))
	if err != nil {
		return false
	}
	_, err = strconv.ParseUint(string(uid), 10, 32)
	return err == nil
}

// call answers a method call.
func (s *systemdStandIn) call(p *busPeer, msg *godbus.Message) {
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)
	switch iface + "." + member {
	case "org.freedesktop.DBus.AddMatch":
		s.reply(p, msg)
	case systemdManager + ".RestartUnit":
		var unit, mode string
		if err := godbus.Store(msg.Body, &unit, &mode); err != nil {
			s.replyError(p, msg, errInvalidArgs, err.Error())
			return
		}
		restart, ok := s.units[unit]
		if !ok {
			s.logf("RestartUnit %s: no such unit", unit)
			s.replyError(p, msg, errNoSuchUnit, fmt.Sprintf("Unit %s not found.", unit))
			return
		}
		id := s.lastJob.Add(1)
		job := godbus.ObjectPath(fmt.Sprintf("%s/job/%d", systemdPath, id))
		// The job's path first: go-systemd registers the caller for
		// JobRemoved only once it has it.
		s.reply(p, msg, job)
		s.wg.Go(func() {
			result := s.runJob(unit, id, restart)
			s.broadcast(&godbus.Message{
				Type: godbus.TypeSignal,
				Headers: map[godbus.HeaderField]godbus.Variant{
					godbus.FieldPath:      godbus.MakeVariant(systemdPath),
					godbus.FieldInterface: godbus.MakeVariant(systemdManager),
					godbus.FieldMember:    godbus.MakeVariant("JobRemoved"),
				},
				Body: []any{id, job, unit, result},
			})
		})
	default:
		s.replyError(p, msg, errUnknownMethod, fmt.Sprintf("Unknown method %s or interface %s.", member, iface))
	}
}

// runJob restarts unit when its turn comes and returns the job's result
// as systemd names it: done, failed, timeout (after jobTimeout, waiting
// included) or canceled (the stand-in closed).
func (s *systemdStandIn) runJob(unit string, id uint32, restart func() error) (result string) {
	var cause error
	defer func() {
		if cause != nil {
			s.logf("RestartUnit %s (job %d): %s: %v", unit, id, result, cause)
		} else {
			s.logf("RestartUnit %s (job %d): %s", unit, id, result)
		}
	}()
	timeout := time.NewTimer(s.jobTimeout)
	defer timeout.Stop()
	select {
	case s.turn <- struct{}{}:
	case <-timeout.C:
		return systemdJobTimedOut
	case <-s.closing:
		return systemdJobCanceled
	}
	select {
	case <-s.closing:
		<-s.turn
		return systemdJobCanceled
	default:
	}
	done := make(chan error, 1)
	// Not in wg: close waits for it by taking the turn, bounded.
	go func() {
		defer func() { <-s.turn }()
		done <- restart()
	}()
	select {
	case err := <-done:
		if cause = err; err != nil {
			return "failed"
		}
		return "done"
	case <-timeout.C:
		return systemdJobTimedOut
	case <-s.closing:
		return systemdJobCanceled
	}
}

func (s *systemdStandIn) reply(p *busPeer, call *godbus.Message, body ...any) {
	m := &godbus.Message{Type: godbus.TypeMethodReply, Headers: map[godbus.HeaderField]godbus.Variant{}, Body: body}
	s.answer(p, call, m)
}

func (s *systemdStandIn) replyError(p *busPeer, call *godbus.Message, name, text string) {
	m := &godbus.Message{
		Type:    godbus.TypeError,
		Headers: map[godbus.HeaderField]godbus.Variant{godbus.FieldErrorName: godbus.MakeVariant(name)},
		Body:    []any{text},
	}
	s.answer(p, call, m)
}

// answer sends m as the answer to call, unless the caller wants none.
func (s *systemdStandIn) answer(p *busPeer, call *godbus.Message, m *godbus.Message) {
	if call.Flags&godbus.FlagNoReplyExpected != 0 {
		return
	}
	m.Headers[godbus.FieldReplySerial] = godbus.MakeVariant(call.Serial())
	// A write error ends the connection: its read fails next.
	_ = p.send(m)
}

// broadcast sends a signal to every authenticated connection.
func (s *systemdStandIn) broadcast(m *godbus.Message) {
	s.mu.Lock()
	var ready []*busPeer
	for p, ok := range s.peers {
		if ok {
			ready = append(ready, p)
		}
	}
	s.mu.Unlock()
	for _, p := range ready {
		_ = p.send(m)
	}
}

// send writes m, with its body's signature, under the connection's next
// serial. godbus takes serial 0 too, but the D-Bus specification forbids
// it, and a Message's serial can't be set: so it is written into the
// encoded header (bytes 8 to 11, little-endian as encoded).
func (p *busPeer) send(m *godbus.Message) error {
	if len(m.Body) > 0 {
		m.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(m.Body...))
	}
	var buf bytes.Buffer
	if err := m.EncodeTo(&buf, binary.LittleEndian); err != nil {
		return err
	}
	b := buf.Bytes()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serial++
	binary.LittleEndian.PutUint32(b[8:12], p.serial)
	if err := p.conn.SetWriteDeadline(time.Now().Add(busWriteTimeout)); err != nil {
		return err
	}
	_, err := p.conn.Write(b)
	return err
}
