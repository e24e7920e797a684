package tunnel

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// kubeletStandIn serves the two kubelet APIs kube-apiserver proxies for
// kubectl logs and exec: /containerLogs and /exec over the SPDY streaming
// protocol (what kube-apiserver speaks to kubelets, translating kubectl's
// WebSocket).
type kubeletStandIn struct {
	logLine  string
	logs     atomic.Int32
	execs    atomic.Int32
	srv      *http.Server
	listener net.Listener
}

func startKubelet(ln net.Listener, cert tls.Certificate, logLine string) *kubeletStandIn {
	k := &kubeletStandIn{logLine: logLine, listener: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{container}", k.serveLogs)
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", k.serveExec)
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

var execProtocols = []string{"v4.channel.k8s.io"}

func (k *kubeletStandIn) serveExec(w http.ResponseWriter, r *http.Request) {
	k.execs.Add(1)
	q := r.URL.Query()
	command := q["command"]
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
		return // Handshake wrote the error.
	}
	streamCh := make(chan httpstream.Stream, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
		streamCh <- s
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	streams := map[string]httpstream.Stream{}
	timeout := time.After(30 * time.Second)
	for len(streams) < len(want) {
		select {
		case s := <-streamCh:
			streams[s.Headers().Get(corev1.StreamType)] = s
		case <-timeout:
			return
		}
	}
	status := metav1.Status{Status: metav1.StatusSuccess}
	if len(command) > 0 && command[0] == "echo" {
		if out := streams[corev1.StreamTypeStdout]; out != nil {
			_, _ = fmt.Fprintln(out, strings.Join(command[1:], " "))
		}
	} else {
		status = metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode", Message: "command not found",
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: "127"}}}}
	}
	for _, t := range []string{corev1.StreamTypeStdout, corev1.StreamTypeStderr} {
		if s := streams[t]; s != nil {
			_ = s.Close()
		}
	}
	body, _ := json.Marshal(status)
	_, _ = streams[corev1.StreamTypeError].Write(body)
	_ = streams[corev1.StreamTypeError].Close()
}
