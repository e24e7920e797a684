// Package tunnel benchmarks the reverse tunnel against direct connections on
// loopback: throughput, added latency, many concurrent streams over one agent
// and reconnect time. Run with `make bench` (each benchmark runs once and
// reports its own measurements).
package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/internal/tunnel"
)

type rig struct {
	ca          *certs.CA
	serverCert  tls.Certificate
	agentCert   tls.Certificate
	srv         *tunnel.Server
	agent       *tunnel.Agent
	agentAddr   string
	connectAddr string
	stopServer  func()
	// suite is the cipher suite of the agent's session.
	suite atomic.Uint32
}

func pair(b *testing.B, kp certs.KeyPair) tls.Certificate {
	c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// newRig starts a server and an agent for node "bench" on loopback; the
// agent may dial ports.
func newRig(b *testing.B, ports []int) *rig {
	now := time.Now()
	ca, _, err := certs.NewCA("bench", time.Hour, now)
	if err != nil {
		b.Fatal(err)
	}
	skp, err := ca.Issue(certs.Request{CommonName: "server", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour, Server: true}, now)
	if err != nil {
		b.Fatal(err)
	}
	akp, err := ca.Issue(certs.TunnelAgentRequest("bench", time.Hour), now)
	if err != nil {
		b.Fatal(err)
	}
	r := &rig{ca: ca, serverCert: pair(b, skp), agentCert: pair(b, akp)}
	port, err := testenv.RestartablePort("127.0.0.1") // BenchmarkReconnect restarts the server on it
	if err != nil {
		b.Fatal(err)
	}
	r.agentAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", r.agentAddr)
	if err != nil {
		b.Fatal(err)
	}
	r.startServer(b, ln)
	cert := r.agentCert
	r.agent, err = tunnel.NewAgent(tunnel.AgentConfig{
		Node: "bench",
		TLSConfig: &tls.Config{RootCAs: ca.Pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
			VerifyConnection:     func(cs tls.ConnectionState) error { r.suite.Store(uint32(cs.CipherSuite)); return nil }},
		Discovery: tunnel.StaticServers{r.agentAddr},
		Policy:    tunnel.Policy{Ports: ports},
		Log:       logr.Discard(),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.agent.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	waitFor(b, 10*time.Second, func() bool { return r.srv.Connected("bench") })
	return r
}

// startServer runs a server replica with its agent listener on ln and a
// CONNECT listener on loopback.
func (r *rig) startServer(b *testing.B, ln net.Listener) {
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		ID:        "bench",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{r.serverCert}, ClientCAs: r.ca.Pool()},
		Resolver:  tunnel.StaticResolver{"127.0.0.1": "bench"},
		Log:       logr.Discard(),
	})
	if err != nil {
		b.Fatal(err)
	}
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.ServeAgents(ctx, ln) }()
	go func() { defer wg.Done(); _ = srv.ServeConnect(ctx, cl) }()
	r.srv, r.connectAddr = srv, cl.Addr().String()
	var once sync.Once
	r.stopServer = func() { once.Do(func() { cancel(); wg.Wait() }) }
	b.Cleanup(r.stopServer)
}

func waitFor(b *testing.B, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dialTunnel opens a CONNECT tunnel to target.
func (r *rig) dialTunnel(target string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", r.connectAddr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target)
	br := bufio.NewReaderSize(c, 64)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		_ = c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s: %s", target, res.Status, body)
	}
	_ = c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The target spoke first; keep what the reader already took.
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// source serves size bytes (a "log stream") to every connection; with tlsCfg
// it serves TLS.
func source(b *testing.B, size int64, tlsCfg *tls.Config) (string, int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tlsCfg != nil {
				c = tls.Server(c, tlsCfg)
			}
			go func() {
				defer c.Close()
				for left := size; left > 0; {
					n := min(left, int64(len(chunk)))
					if _, err := c.Write(chunk[:n]); err != nil {
						return
					}
					left -= n
				}
			}()
		}
	}()
	return ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port
}

// drain reads c to its end through a 256 KiB buffer (io.Discard's own
// ReadFrom would read 8 KiB at a time) and times it.
func drain(b *testing.B, c net.Conn, want int64) time.Duration {
	start := time.Now()
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{c}, buf)
	d := time.Since(start)
	_ = c.Close()
	if err != nil || n != want {
		b.Fatalf("read %d bytes (%v), want %d", n, err, want)
	}
	return d
}

func mibps(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkLogStreamThroughput moves one stream of the same size directly
// over TCP, directly over TLS 1.3 and through the tunnel (CONNECT, mTLS
// session, agent dials the plain source), all on loopback in the same run.
//
// The machine is shared, so the three are interleaved: after a warm-up round,
// every round measures all three back to back (in a rotating order) and
// yields its own ratios; the reported figures are medians over the rounds.
func BenchmarkLogStreamThroughput(b *testing.B) {
	const (
		size   = 256 << 20
		rounds = 7
	)
	plainAddr, plainPort := source(b, size, nil)
	r := newRig(b, []int{plainPort})
	// Same TLS versions as the tunnel's session; Go chooses the TLS 1.3
	// suite itself (AES-GCM with AES hardware on both ends), and both ends of
	// both connections run in this process, so they negotiate the same one.
	tlsAddr, _ := source(b, size, &tls.Config{Certificates: []tls.Certificate{r.serverCert}, MinVersion: tls.VersionTLS13})
	var directSuite uint16
	clientTLS := &tls.Config{RootCAs: r.ca.Pool(), MinVersion: tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error { directSuite = cs.CipherSuite; return nil }}

	kinds := []string{"tcp", "tls", "tunnel"}
	cpu := map[string][]float64{} // process CPU seconds per GiB moved
	measure := func(kind string) float64 {
		var c net.Conn
		var err error
		switch kind {
		case "tcp":
			c, err = net.Dial("tcp", plainAddr)
		case "tls":
			c, err = tls.Dial("tcp", tlsAddr, clientTLS)
		default:
			c, err = r.dialTunnel(plainAddr)
		}
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC() // no collection of the previous run's garbage inside this one
		c0 := processCPU()
		d := drain(b, c, size)
		cpu[kind] = append(cpu[kind], (processCPU()-c0).Seconds()/(float64(size)/(1<<30)))
		return mibps(size, d)
	}
	for _, k := range kinds { // warm-up: connections, buffers, window growth
		measure(k)
	}
	clear(cpu)
	got := map[string][]float64{}
	var vsTLS, vsTCP []float64
	for i := range rounds {
		round := map[string]float64{}
		for j := range kinds {
			k := kinds[(i+j)%len(kinds)]
			round[k] = measure(k)
			got[k] = append(got[k], round[k])
		}
		vsTLS = append(vsTLS, round["tunnel"]/round["tls"])
		vsTCP = append(vsTCP, round["tunnel"]/round["tcp"])
	}
	b.ReportMetric(median(got["tcp"]), "direct-tcp-MiB/s")
	b.ReportMetric(median(got["tls"]), "direct-tls13-MiB/s")
	b.ReportMetric(median(got["tunnel"]), "tunnel-MiB/s")
	b.ReportMetric(median(vsTLS), "tunnel/tls-ratio")
	b.ReportMetric(median(vsTCP), "tunnel/tcp-ratio")
	// CPU per byte does not depend on what else the machine runs.
	b.ReportMetric(median(cpu["tls"]), "direct-tls13-cpu-s/GiB")
	b.ReportMetric(median(cpu["tunnel"]), "tunnel-cpu-s/GiB")
	if tunnelSuite := uint16(r.suite.Load()); tunnelSuite != directSuite {
		b.Fatalf("the direct TLS stream uses %s but the tunnel %s", tls.CipherSuiteName(directSuite), tls.CipherSuiteName(tunnelSuite))
	}
	b.Logf("log stream of %d MiB, %d interleaved rounds after a warm-up (TLS 1.3 suite %s on both): median direct TCP %.0f MiB/s, direct TLS 1.3 %.0f MiB/s, tunnel %.0f MiB/s; median per-round tunnel/TLS %.2f (target >= 0.70; rounds %.2f), tunnel/TCP %.2f (rounds %.2f)",
		size>>20, rounds, tls.CipherSuiteName(directSuite), median(got["tcp"]), median(got["tls"]), median(got["tunnel"]),
		median(vsTLS), vsTLS, median(vsTCP), vsTCP)
	b.Logf("process CPU per GiB moved (all ends in this process): direct TCP %.2f s, direct TLS 1.3 %.2f s, tunnel %.2f s",
		median(cpu["tcp"]), median(cpu["tls"]), median(cpu["tunnel"]))
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// echo serves a line echo on loopback.
func echo(b *testing.B) (string, int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func roundTrips(b *testing.B, c net.Conn, n int) []time.Duration {
	msg := make([]byte, 64)
	got := make([]byte, 64)
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// BenchmarkAddedLatency measures 64-byte round trips and connection setup
// through the tunnel against direct loopback TCP.
func BenchmarkAddedLatency(b *testing.B) {
	const n = 2000
	addr, port := echo(b)
	r := newRig(b, []int{port})
	d, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	direct := roundTrips(b, d, n)
	t, err := r.dialTunnel(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	tun := roundTrips(b, t, n)

	var setup []time.Duration
	for range 200 {
		start := time.Now()
		c, err := r.dialTunnel(addr)
		if err != nil {
			b.Fatal(err)
		}
		setup = append(setup, time.Since(start))
		_ = c.Close()
	}
	p50 := percentile(tun, 0.5) - percentile(direct, 0.5)
	p99 := percentile(tun, 0.99) - percentile(direct, 0.99)
	b.ReportMetric(float64(p50.Microseconds()), "added-rtt-p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "added-rtt-p99-µs")
	b.ReportMetric(float64(percentile(setup, 0.5).Microseconds()), "connect-setup-p50-µs")
	b.ReportMetric(float64(percentile(setup, 0.99).Microseconds()), "connect-setup-p99-µs")
	b.Logf("64 B round trip: direct p50 %s p99 %s, tunnel p50 %s p99 %s (added p50 %s, p99 %s); CONNECT setup p50 %s p99 %s",
		percentile(direct, 0.5), percentile(direct, 0.99), percentile(tun, 0.5), percentile(tun, 0.99), p50, p99,
		percentile(setup, 0.5), percentile(setup, 0.99))
}

// concurrentRun is what one run of many concurrent streams measured.
type concurrentRun struct {
	total          time.Duration
	cpu            time.Duration   // process CPU time used
	open, finished []time.Duration // per stream, from the common start
}

// runConcurrent opens streams connections with dial at once, reads size
// bytes from each and times them.
func runConcurrent(b *testing.B, streams int, size int64, dial func() (net.Conn, error)) concurrentRun {
	out := concurrentRun{open: make([]time.Duration, streams), finished: make([]time.Duration, streams)}
	errs := make(chan error, streams)
	runtime.GC()
	c0 := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			out.open[i] = time.Since(start)
			_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
			buf := make([]byte, 32<<10)
			n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{c}, buf)
			if err != nil || n != size {
				errs <- fmt.Errorf("stream %d: %d bytes, %v", i, n, err)
				return
			}
			out.finished[i] = time.Since(start)
		}()
	}
	wg.Wait()
	out.total = time.Since(start)
	out.cpu = processCPU() - c0
	close(errs)
	for err := range errs {
		b.Fatalf("a stream failed or starved: %v", err)
	}
	return out
}

// BenchmarkConcurrentStreams runs 1,000 streams at once over one agent, each
// moving 1 MiB, and checks that every one finishes: none starved. The same
// load over direct loopback TCP, measured in the same run, is the reference.
func BenchmarkConcurrentStreams(b *testing.B) {
	const streams = 1000
	const size = 1 << 20
	addr, port := source(b, size, nil)
	r := newRig(b, []int{port})
	agg := func(run concurrentRun) float64 { return float64(streams) * size / (1 << 20) / run.total.Seconds() }
	cpuPerGiB := func(run concurrentRun) float64 { return run.cpu.Seconds() / (float64(streams) * size / (1 << 30)) }

	// Warm-up with a tenth of the load, then direct and tunnel.
	runConcurrent(b, streams/10, size, func() (net.Conn, error) { return r.dialTunnel(addr) })
	direct := runConcurrent(b, streams, size, func() (net.Conn, error) { return net.Dial("tcp", addr) })
	tun := runConcurrent(b, streams, size, func() (net.Conn, error) { return r.dialTunnel(addr) })

	median, slowest := percentile(tun.finished, 0.5), percentile(tun.finished, 1)
	b.ReportMetric(streams, "streams")
	b.ReportMetric(agg(tun), "aggregate-MiB/s")
	b.ReportMetric(agg(direct), "direct-aggregate-MiB/s")
	b.ReportMetric(agg(tun)/agg(direct), "tunnel/tcp-ratio")
	b.ReportMetric(cpuPerGiB(tun), "tunnel-cpu-s/GiB")
	b.ReportMetric(cpuPerGiB(direct), "direct-cpu-s/GiB")
	b.ReportMetric(percentile(tun.open, 0.5).Seconds()*1000, "open-p50-ms")
	b.ReportMetric(percentile(tun.open, 0.99).Seconds()*1000, "open-p99-ms")
	b.ReportMetric(median.Seconds(), "median-stream-s")
	b.ReportMetric(slowest.Seconds(), "slowest-stream-s")
	b.ReportMetric(slowest.Seconds()/median.Seconds(), "slowest/median")
	b.Logf("%d concurrent streams of %d KiB over one agent: all completed in %s (%.0f MiB/s, %.2f CPU-s/GiB; direct TCP %s, %.0f MiB/s, %.2f CPU-s/GiB); stream open p50 %s p99 %s; stream done median %s, slowest %s (%.2fx median)",
		streams, size>>10, tun.total, agg(tun), cpuPerGiB(tun), direct.total, agg(direct), cpuPerGiB(direct), percentile(tun.open, 0.5), percentile(tun.open, 0.99),
		median, slowest, slowest.Seconds()/median.Seconds())
}

// BenchmarkReconnect restarts the server on the same port and measures how
// long the agent takes to be back, from the moment the old server is gone.
func BenchmarkReconnect(b *testing.B) {
	const rounds = 5
	r := newRig(b, []int{1})
	var took []time.Duration
	for range rounds {
		r.stopServer()
		waitFor(b, 10*time.Second, func() bool { return len(r.agent.Connected()) == 0 })
		down := time.Now()
		ln, err := net.Listen("tcp", r.agentAddr)
		if err != nil {
			b.Fatal(err)
		}
		r.startServer(b, ln)
		waitFor(b, 30*time.Second, func() bool { return r.srv.Connected("bench") })
		took = append(took, time.Since(down))
	}
	b.ReportMetric(float64(percentile(took, 0.5).Milliseconds()), "reconnect-p50-ms")
	b.ReportMetric(float64(percentile(took, 1).Milliseconds()), "reconnect-max-ms")
	b.Logf("agent back after a server restart: %v (p50 %s, max %s; target 2s)", took, percentile(took, 0.5), percentile(took, 1))
}
