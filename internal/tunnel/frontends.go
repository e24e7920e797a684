package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ServeConnect serves HTTP CONNECT on ln, the protocol of kube-apiserver's
// egress selector (HTTPConnect). Wrap ln with TLS to require client
// certificates; a Unix socket relies on file permissions.
func (s *Server) ServeConnect(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serveConnect),
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		ErrorLog:          nil,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving CONNECT: %w", err)
	}
	return nil
}

func connectStatus(err error) int {
	switch {
	case errors.Is(err, ErrUnknownTarget):
		return http.StatusNotFound
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrOffPolicy):
		return http.StatusForbidden
	case errors.Is(err, ErrNoAgent):
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadGateway
	}
}

func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		http.Error(w, "only CONNECT is served here", http.StatusMethodNotAllowed)
		return
	}
	target := r.URL.Host
	if target == "" {
		target = r.Host
	}
	log := s.log.WithValues("target", target, "client", r.RemoteAddr)
	upstream, rt, err := s.DialRoute(r.Context(), target)
	s.cfg.Metrics.connect(rt.Kind, err)
	if err != nil {
		if rt.Kind == RouteRefused {
			// Off policy: say so where operators look, not only at V(2).
			log.Info("Refused CONNECT: destination off the egress policy", "reason", err.Error())
		} else {
			log.V(2).Info("CONNECT failed", "route", rt.Kind, "node", rt.Node, "reason", err.Error())
		}
		http.Error(w, err.Error(), connectStatus(err))
		return
	}
	log = log.WithValues("route", rt.Kind, "node", rt.Node)
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = upstream.Close()
		http.Error(w, "connection cannot be hijacked", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		_ = upstream.Close()
		log.Error(err, "Hijacking CONNECT connection")
		return
	}
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = conn.Close()
		_ = upstream.Close()
		return
	}
	client := conn
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		client = &prefixConn{Conn: conn, prefix: bytes.Clone(early)}
	}
	log.V(4).Info("Tunnelling CONNECT")
	splice(client, upstream)
}

// ServePassthrough serves TLS passthrough on ln: it reads the SNI of each
// ClientHello, resolves it to a node and relays the still-encrypted
// connection to targetPort on that node, so TLS ends at the node.
func (s *Server) ServePassthrough(ctx context.Context, ln net.Listener, targetPort int) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting passthrough connections: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handlePassthrough(ctx, conn, targetPort)
		}()
	}
}

func (s *Server) handlePassthrough(ctx context.Context, conn net.Conn, targetPort int) {
	log := s.log.WithValues("client", conn.RemoteAddr().String())
	_ = conn.SetReadDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	sni, hello, err := peekSNI(conn)
	if err != nil {
		log.V(2).Info("Refused passthrough", "reason", err.Error())
		_ = conn.Close()
		return
	}
	log = log.WithValues("serverName", sni)
	node, dialHost, err := s.cfg.Resolver.Resolve(sni)
	if err == nil {
		var upstream net.Conn
		upstream, err = s.DialNode(ctx, node, net.JoinHostPort(dialHost, strconv.Itoa(targetPort)))
		if err == nil {
			_ = conn.SetReadDeadline(time.Time{})
			log.V(4).Info("Passing TLS through", "node", node)
			splice(&prefixConn{Conn: conn, prefix: hello}, upstream)
			return
		}
	}
	log.V(2).Info("Refused passthrough", "reason", err.Error())
	_ = conn.Close()
}

var errSNIRead = errors.New("sni read")

// peekSNI reads a TLS ClientHello from conn and returns its server name and
// the bytes read, to be replayed to the real server.
func peekSNI(conn net.Conn) (string, []byte, error) {
	rec := &recordingConn{r: bufio.NewReaderSize(conn, 4096)}
	var sni string
	err := tls.Server(rec, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni = h.ServerName
			return nil, errSNIRead
		},
	}).Handshake()
	if !errors.Is(err, errSNIRead) {
		return "", nil, fmt.Errorf("reading TLS ClientHello: %w", err)
	}
	if sni == "" {
		return "", nil, errors.New("ClientHello carries no server name (SNI)")
	}
	// The bufio reader may hold bytes past the ClientHello.
	buffered, _ := rec.r.Peek(rec.r.Buffered())
	return sni, append(rec.buf.Bytes(), buffered...), nil
}

// recordingConn records what a TLS server reads and swallows what it writes.
type recordingConn struct {
	r   *bufio.Reader
	buf bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.buf.Write(p[:n])
	return n, err
}
func (c *recordingConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *recordingConn) Close() error                     { return nil }
func (c *recordingConn) LocalAddr() net.Addr              { return nil }
func (c *recordingConn) RemoteAddr() net.Addr             { return nil }
func (c *recordingConn) SetDeadline(time.Time) error      { return nil }
func (c *recordingConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }

// prefixConn replays prefix before reading from Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *prefixConn) CloseWrite() error {
	if hc, ok := c.Conn.(halfCloser); ok {
		return hc.CloseWrite()
	}
	return c.Conn.Close()
}
