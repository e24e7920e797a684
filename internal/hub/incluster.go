package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/certs/csr"
	"github.com/edgeunit/edgeunit/internal/hub/kjson"
	"github.com/edgeunit/edgeunit/internal/nodeaddr"
)

// The Service whose address the kubelet hands pods as KUBERNETES_SERVICE_HOST
// and KUBERNETES_SERVICE_PORT.
const (
	apiServiceNamespace = "default"
	apiServiceName      = "kubernetes"
)

// inCluster serves in-cluster clients (pods using InClusterConfig,
// CoreDNS, flannel, kube-proxy without a kubeconfig) on a node-local
// link-local address on its loopback interface, over TLS with a
// certificate of the cluster CA.
//
// How pods get there: the kubelet builds KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT from the `default/kubernetes` Service it reads
// through the hub; the hub answers the kubelet with that Service's cluster
// IP and port replaced by this listener's (rewriteService), and only once
// the listener serves. Pods reach the address through their default route
// to the node, with no kube-proxy rule.
//
// Trust: the certificate is requested through the CSR API with signer
// kubernetes.io/kubelet-serving under the kubelet's identity, so
// kube-controller-manager signs it with the cluster CA that pods' ca.crt
// holds; edgeunit's manager approves exactly this shape (only link-local IP
// SANs) from nodes in a unit.
//
// Identity: each request carries the pod's own token, which the hub
// forwards as it is (without the node's certificate). The hub learns the
// token's user from the kubelet's TokenRequest that obtained it, or once,
// online, with a SelfSubjectReview, and caches answers per user (callers):
// offline, a token it knows reads what its user read.
type inCluster struct {
	h       *Hub
	addr    string
	ip      net.IP
	callers *callers

	serving atomic.Bool
	// stale: the kubelet read Services before the listener served; its
	// next watch must make it re-list (see expireWatch).
	stale   atomic.Bool
	mu      sync.Mutex
	changed chan struct{}
}

// viewed records a read of the kubelet's Services (what answerFilter's
// viewed is told).
func (ic *inCluster) viewed(ri reqInfo) {
	switch serving := ic.serving.Load(); {
	case !serving:
		ic.stale.Store(true)
	case ri.verb == "list":
		ic.stale.Store(false)
	}
}

// expireWatch says whether a Service watch of the kubelet starting now
// must end at once with 410 Expired: it continues a list answered before
// the listener served, which changes (closed as it started serving) could
// not reach, so the kubelet would keep the apiserver's address.
func (ic *inCluster) expireWatch() bool { return ic.serving.Load() && ic.stale.Load() }

func newInCluster(h *Hub) (*inCluster, error) {
	host, _, err := net.SplitHostPort(h.cfg.ListenInCluster)
	if err != nil {
		return nil, err
	}
	return &inCluster{h: h, addr: h.cfg.ListenInCluster, ip: net.ParseIP(host), callers: newCallers(h), changed: make(chan struct{})}, nil
}

// changes is closed when the listener starts or stops serving: the
// kubelet's Service watches then re-list and see the new address.
func (ic *inCluster) changes() <-chan struct{} {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return ic.changed
}

func (ic *inCluster) setServing(v bool) {
	if ic.serving.Swap(v) == v {
		return
	}
	ic.mu.Lock()
	close(ic.changed)
	ic.changed = make(chan struct{})
	ic.mu.Unlock()
	ic.h.log.Info("In-cluster listener", "serving", v, "address", ic.addr)
}

// rewriteService gives the `default/kubernetes` Service this listener's
// address and port while it serves; other Services pass unchanged.
func (ic *inCluster) rewriteService(obj []byte) ([]byte, bool) {
	if !ic.serving.Load() {
		return obj, false
	}
	meta, err := kjson.ObjectMeta(obj, true)
	if err != nil || meta.Namespace != apiServiceNamespace || meta.Name != apiServiceName {
		return obj, false
	}
	var svc map[string]any
	if err := json.Unmarshal(obj, &svc); err != nil {
		return obj, false
	}
	spec, _ := svc["spec"].(map[string]any)
	if spec == nil {
		return obj, false
	}
	host, portStr, _ := net.SplitHostPort(ic.addr)
	port, _ := strconv.Atoi(portStr)
	spec["clusterIP"] = host
	spec["clusterIPs"] = []any{host}
	ports, _ := spec["ports"].([]any)
	for i, p := range ports {
		pm, _ := p.(map[string]any)
		// The apiserver's port is named https; a lone port is it too.
		if pm != nil && (pm["name"] == "https" || len(ports) == 1) {
			pm["port"] = port
			ports[i] = pm
		}
	}
	out, err := json.Marshal(svc)
	if err != nil {
		return obj, false
	}
	return out, true
}

// ServeHTTP authenticates an in-cluster request by its bearer token and
// serves it as that caller.
func (ic *inCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(r)
	if !ok {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "edge-hub: in-cluster requests need a bearer token (a service account token)")
		return
	}
	user, err := ic.callers.identify(r.Context(), token)
	if err != nil {
		var se *statusError
		if errors.As(err, &se) {
			writeStatus(w, se.code, se.reason, se.msg)
			return
		}
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: "+err.Error())
		return
	}
	r = r.WithContext(withCallerToken(r.Context(), token))
	sw := &statusWriter{ResponseWriter: w}
	ic.h.handle(sw, r, callerClient(identify(r), user))
	if sw.code == http.StatusUnauthorized {
		ic.callers.forget(token) // revoked, or its pod gone
	}
}

// statusWriter notes the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController flush and hijack (watches, exec).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// run brings up the address, obtains the certificate and serves until ctx
// ends. Each step is retried: the node may be offline, or not yet approved.
func (ic *inCluster) run(ctx context.Context) {
	log := ic.h.log.WithValues("address", ic.addr)
	backoff := time.Second
	wait := func(err error, what string) bool {
		log.Error(err, "In-cluster listener not ready, retrying", "step", what, "retryIn", backoff.String())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
		return true
	}
	for {
		err := nodeaddr.EnsureLoopback(ic.ip)
		if err == nil {
			break
		}
		if !wait(err, "address") {
			return
		}
	}
	req, err := ic.requester()
	if err != nil {
		log.Error(err, "In-cluster listener disabled")
		return
	}
	for {
		ectx, cancel := context.WithTimeout(ctx, csr.DefaultIssueTimeout)
		err := req.Ensure(ectx)
		cancel()
		if err == nil {
			break
		}
		if !wait(err, "serving certificate") {
			return
		}
	}
	go func() { _ = req.Run(ctx) }()
	var ln net.Listener
	for {
		if ln, err = net.Listen("tcp", ic.addr); err == nil {
			break
		}
		if !wait(err, "listen") {
			return
		}
	}
	srv := &http.Server{
		Handler:           ic,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: req.GetCertificate, NextProtos: []string{"h2", "http/1.1"}},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "In-cluster listener failed")
		}
	}()
	ic.setServing(true)
	select {
	case <-ctx.Done():
		// Stopping: the hub is going away, and the kubelet's view stays
		// as it is until the next hub serves.
	case <-done:
		ic.setServing(false) // the kubelet hands out the apiserver again
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = srv.Close()
	<-done
}

// requester keeps the listener's certificate: requested through the hub's
// own loopback listener, as the node, and rotated before it expires.
func (ic *inCluster) requester() (*csr.Requester, error) {
	if ic.h.HTTPAddr == "" {
		return nil, errors.New("the in-cluster listener needs the hub's plain HTTP listener (--listen-http) to request its certificate")
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + ic.h.HTTPAddr, UserAgent: "edge-hub-incluster-cert"})
	if err != nil {
		return nil, err
	}
	return csr.New(csr.Config{
		Client:   cs,
		Identity: certs.HubInClusterIdentity,
		Node:     ic.h.cfg.NodeName,
		Dir:      filepath.Join(ic.h.cfg.DataDir, "pki"),
		IPs:      []net.IP{ic.ip},
	})
}
