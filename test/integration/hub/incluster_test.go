package hub_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
	"github.com/edgeunit/edgeunit/internal/netnstest"
)

// TestInClusterClients runs the edge-hub binary in a node's network
// namespace with its in-cluster listener, and checks what a pod using
// InClusterConfig gets there: the hub requests its serving certificate
// through the CSR API (this test approves and signs it with the cluster CA,
// as edgeunit's approver and kube-controller-manager do), the kubelet's view
// of default/kubernetes names the listener, each request is forwarded with
// the pod's own token, and with kube-apiserver gone a token seen online
// keeps reading what it read, also after a hub restart, while a token never
// seen is refused.
func TestInClusterClients(t *testing.T) {
	nsn := netnstest.New(t, "eu-ic")
	link := nsn.Link(t)
	cp := hubtest.StartControlPlaneWith(t, hubtest.ControlPlaneOptions{BindAddress: link.HostIP})
	ctx := t.Context()
	admin := must(kubernetes.NewForConfig(cp.AdminConfig("incluster-test")))
	go hubtest.SignKubeletServing(ctx, t, admin, cp.CA)

	// A ConfigMap the reader service account may get, and the stranger may not.
	token := hubtest.SeedInClusterReader(ctx, t, admin)
	readerToken, laterToken, strangerToken := token("reader"), token("reader"), token("stranger")

	addr := net.JoinHostPort("169.254.31.1", strconv.Itoa(hubtest.FreePort(t)))
	hub := hubtest.StartHubWith(t, cp, cp.URL(), node, hubtest.HubOptions{
		NetNS: nsn.Name, AdminHost: link.NSIP,
		Args: []string{"--listen-in-cluster=" + addr},
	})
	// A pod's client: it trusts the cluster CA, from inside the node.
	pool := x509.NewCertPool()
	pool.AddCert(cp.CA.Cert)
	pod := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: nsn.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	get := func(client *http.Client, url, tok, userAgent string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if userAgent != "" {
			req.Header.Set("User-Agent", userAgent)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	configMap := "https://" + addr + "/api/v1/namespaces/default/configmaps/data"
	expect := func(what, tok string, wantCode int, wantBody string) func() error {
		return func() error {
			code, body, err := get(pod, configMap, tok, "")
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if code != wantCode || !strings.Contains(body, wantBody) {
				return fmt.Errorf("%s: HTTP %d %s, want HTTP %d with %q", what, code, body, wantCode, wantBody)
			}
			return nil
		}
	}
	wait := func(what string, timeout time.Duration, fn func() error) {
		t.Helper()
		if err := hubtest.WaitFor(timeout, 200*time.Millisecond, fn); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, hub.Proc.Tail(4000))
		}
	}

	wait("the in-cluster listener serving the reader", time.Minute, expect("reader online", readerToken, http.StatusOK, `"k":"from the cloud"`))
	// The stranger is refused by RBAC, as itself (the apiserver names it),
	// and no token at all by the hub.
	wait("the stranger refused", 10*time.Second, expect("stranger online", strangerToken, http.StatusForbidden, "system:serviceaccount:default:stranger"))
	wait("no token refused", 10*time.Second, expect("no token", "", http.StatusUnauthorized, "bearer token"))

	// The kubelet, on the hub's loopback listener, gets the listener's
	// address as the kubernetes Service's.
	nodeHTTP := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: nsn.DialContext}}
	host, port, _ := net.SplitHostPort(addr)
	for _, path := range []string{"/api/v1/namespaces/default/services/kubernetes", "/api/v1/services"} {
		wait("the kubelet's view of default/kubernetes in "+path, 10*time.Second, func() error {
			code, body, err := get(nodeHTTP, hub.URL()+path, "", kubeletUA)
			if err != nil || code != http.StatusOK || !strings.Contains(body, `"clusterIP":"`+host+`"`) || !strings.Contains(body, `"port":`+port) {
				return fmt.Errorf("HTTP %d %s (%v)", code, body, err)
			}
			return nil
		})
	}

	// Offline: the reader's token reads from the cache, a token never
	// used online is refused, and so after a restart.
	cp.KillAPIServer()
	offline := func() {
		wait("offline: the reader served from the cache", 30*time.Second, expect("reader offline", readerToken, http.StatusOK, `"k":"from the cloud"`))
		wait("offline: a token never seen refused", 10*time.Second, expect("new token offline", laterToken, http.StatusServiceUnavailable, "never used online"))
		// Its answers are the reader's: the stranger, seen online, gets
		// none of them.
		wait("offline: the stranger gets nothing", 10*time.Second, expect("stranger offline", strangerToken, http.StatusServiceUnavailable, "no cached copy"))
	}
	offline()
	hub.Stop()
	hub.Start()
	offline()
}
