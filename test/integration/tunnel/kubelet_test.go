package tunnel

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// kubeletStandIn serves the kubelet APIs kube-apiserver proxies for kubectl
// logs, exec, attach and port-forward: /containerLogs, and /exec, /attach
// and /portForward over the SPDY streaming protocol (what kube-apiserver
// speaks to kubelets, translating kubectl's WebSocket).
type kubeletStandIn struct {
	logLine      string
	logs         atomic.Int32
	execs        atomic.Int32
	attaches     atomic.Int32
	portForwards atomic.Int32
	// dialPod connects to a port of the pod, as a kubelet's runtime does
	// inside the pod's network namespace.
	dialPod  func(port int) (net.Conn, error)
	srv      *http.Server
	listener net.Listener
}

func startKubelet(ln net.Listener, cert tls.Certificate, logLine string, dialPod func(port int) (net.Conn, error)) *kubeletStandIn {
	k := &kubeletStandIn{logLine: logLine, listener: ln, dialPod: dialPod}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{container}", k.serveLogs)
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", k.serveExec)
	mux.HandleFunc("/attach/{ns}/{pod}/{container}", k.serveAttach)
	mux.HandleFunc("/portForward/{ns}/{pod}", k.servePortForward)
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}}
	go func() { _ = k.srv.ServeTLS(ln, "", "") }()
	return k
}

func (k *kubeletStandIn) close() { _ = k.srv.Close() }

func (k *kubeletStandIn) serveLogs(w http.ResponseWriter, r *http.Request) {
	k.logs.Add(1)
	w.Header().Set("Content-Type", "text/plain")
	for i := range 3 {
		fmt.Fprintf(w, "%s %s/%s/%s line %d\n", k.logLine, r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container"), i)
	}
}

// attachLine is what the attached container writes first.
func (k *kubeletStandIn) attachLine(ns, pod, container string) string {
	return fmt.Sprintf("%s attached to %s/%s/%s", k.logLine, ns, pod, container)
}

var execProtocols = []string{"v4.channel.k8s.io"}

// remoteCommandStreams upgrades an /exec or /attach request and waits, as a
// kubelet does, for the streams its query asks for and until the client has
// the reply to each, so nothing is written on a stream it does not know yet.
func remoteCommandStreams(w http.ResponseWriter, r *http.Request) (httpstream.Connection, map[string]httpstream.Stream, bool) {
	q := r.URL.Query()
	want := map[string]bool{corev1.StreamTypeError: true}
	for param, stream := range map[string]string{"input": corev1.StreamTypeStdin, "output": corev1.StreamTypeStdout, "error": corev1.StreamTypeStderr} {
		if q.Get(param) == "1" {
			want[stream] = true
		}
	}
	if q.Get("tty") == "1" {
		want[corev1.StreamTypeResize] = true
	}
	if _, err := httpstream.Handshake(r, w, execProtocols); err != nil {
		return nil, nil, false // Handshake wrote the error.
	}
	type created struct {
		s         httpstream.Stream
		replySent <-chan struct{}
	}
	streamCh := make(chan created, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, replySent <-chan struct{}) error {
		streamCh <- created{s, replySent}
		return nil
	})
	if conn == nil {
		return nil, nil, false
	}
	streams := map[string]httpstream.Stream{}
	var replies []<-chan struct{}
	timeout := time.After(30 * time.Second)
	for len(streams) < len(want) {
		select {
		case c := <-streamCh:
			streams[c.s.Headers().Get(corev1.StreamType)] = c.s
			replies = append(replies, c.replySent)
		case <-timeout:
			_ = conn.Close()
			return nil, nil, false
		}
	}
	for _, sent := range replies {
		select {
		case <-sent:
		case <-timeout:
			_ = conn.Close()
			return nil, nil, false
		}
	}
	return conn, streams, true
}

// finishRemoteCommand closes the output streams and reports status on the
// error stream, which ends the client's session.
func finishRemoteCommand(streams map[string]httpstream.Stream, status metav1.Status) {
	for _, t := range []string{corev1.StreamTypeStdout, corev1.StreamTypeStderr} {
		if s := streams[t]; s != nil {
			_ = s.Close()
		}
	}
	body, _ := json.Marshal(status)
	_, _ = streams[corev1.StreamTypeError].Write(body)
	_ = streams[corev1.StreamTypeError].Close()
}

func (k *kubeletStandIn) serveExec(w http.ResponseWriter, r *http.Request) {
	k.execs.Add(1)
	conn, streams, ok := remoteCommandStreams(w, r)
	if !ok {
		return
	}
	defer conn.Close()
	command := r.URL.Query()["command"]
	status := metav1.Status{Status: metav1.StatusSuccess}
	if len(command) > 0 && command[0] == "echo" {
		if out := streams[corev1.StreamTypeStdout]; out != nil {
			_, _ = fmt.Fprintln(out, strings.Join(command[1:], " "))
		}
	} else {
		status = metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode", Message: "command not found",
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: "127"}}}}
	}
	finishRemoteCommand(streams, status)
}

// serveAttach attaches to a container that writes attachLine, then echoes
// its standard input (when attached with -i) until EOF, and exits 0.
func (k *kubeletStandIn) serveAttach(w http.ResponseWriter, r *http.Request) {
	k.attaches.Add(1)
	conn, streams, ok := remoteCommandStreams(w, r)
	if !ok {
		return
	}
	defer conn.Close()
	if out := streams[corev1.StreamTypeStdout]; out != nil {
		_, _ = fmt.Fprintln(out, k.attachLine(r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")))
		if in := streams[corev1.StreamTypeStdin]; in != nil {
			_, _ = io.Copy(out, in)
		}
	}
	finishRemoteCommand(streams, metav1.Status{Status: metav1.StatusSuccess})
}

var portForwardProtocols = []string{"portforward.k8s.io"}

// portForwardPair is the two streams a client opens for one forwarded
// connection: "error" and "data", sharing a requestID.
type portForwardPair struct {
	data, errs             httpstream.Stream
	dataReply, errorsReply <-chan struct{}
}

// servePortForward speaks the kubelet's SPDY port-forward protocol: each
// complete pair of streams is one connection to the pod's port named in the
// streams' headers, dialled with dialPod.
func (k *kubeletStandIn) servePortForward(w http.ResponseWriter, r *http.Request) {
	k.portForwards.Add(1)
	if _, err := httpstream.Handshake(r, w, portForwardProtocols); err != nil {
		return // Handshake wrote the error.
	}
	var mu sync.Mutex
	pairs := map[string]*portForwardPair{}
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, replySent <-chan struct{}) error {
		h := s.Headers()
		port, err := strconv.ParseUint(h.Get(corev1.PortHeader), 10, 16)
		if err != nil || port == 0 {
			return fmt.Errorf("invalid port header %q", h.Get(corev1.PortHeader))
		}
		id := h.Get(corev1.PortForwardRequestIDHeader)
		if id == "" {
			return fmt.Errorf("missing %s header", corev1.PortForwardRequestIDHeader)
		}
		mu.Lock()
		defer mu.Unlock()
		p := pairs[id]
		if p == nil {
			p = &portForwardPair{}
			pairs[id] = p
		}
		switch t := h.Get(corev1.StreamType); t {
		case corev1.StreamTypeData:
			p.data, p.dataReply = s, replySent
		case corev1.StreamTypeError:
			p.errs, p.errorsReply = s, replySent
		default:
			return fmt.Errorf("invalid stream type %q", t)
		}
		if p.data != nil && p.errs != nil {
			delete(pairs, id)
			go k.forward(int(port), p)
		}
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	<-conn.CloseChan()
}

// forward copies one pair's data stream to and from the pod's port. It closes
// the data stream when the pod's side ends, then the error stream, empty on
// success: the client waits for both.
func (k *kubeletStandIn) forward(port int, p *portForwardPair) {
	// Both replies follow at once: the second stream's handler made the pair.
	<-p.dataReply
	<-p.errorsReply
	defer p.errs.Close()
	defer p.data.Close()
	target, err := k.dialPod(port)
	if err != nil {
		fmt.Fprintf(p.errs, "error forwarding port %d to the pod: %v", port, err)
		return
	}
	defer target.Close()
	go func() {
		_, _ = io.Copy(target, p.data)
		if cw, ok := target.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, _ = io.Copy(p.data, target)
}
