package csr

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// TestEnsureFromDisk checks when Ensure requests a new certificate. The
// apiserver is unreachable here: every CSR create fails.
func TestEnsureFromDisk(t *testing.T) {
	issued := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, _, err := certs.NewCA("test-ca", 365*24*time.Hour, issued)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		node    string // whose identity is on disk; "" for none
		at      time.Duration
		wantReq bool
		wantErr bool
	}{
		"fresh certificate is used as is":            {node: "n1", at: time.Hour},
		"past two thirds: kept, renewal left to Run": {node: "n1", at: 17 * time.Hour},
		"expired: renewal must succeed":              {node: "n1", at: 25 * time.Hour, wantReq: true, wantErr: true},
		"another node's certificate is ignored":      {node: "n2", at: time.Hour, wantReq: true, wantErr: true},
		"nothing on disk":                            {at: time.Hour, wantReq: true, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.node != "" {
				kp, err := ca.Issue(certs.TunnelAgentIdentity.Request(tc.node, 24*time.Hour, false), issued)
				if err != nil {
					t.Fatal(err)
				}
				if err := writeAtomic(pathIn(dir, "tunnel-agent"), append(kp.CertPEM, kp.KeyPEM...)); err != nil {
					t.Fatal(err)
				}
			}
			cs, requests := unreachable()
			r, err := New(Config{Client: cs, Identity: certs.TunnelAgentIdentity, Node: "n1", Dir: dir, Clock: testingclock.NewFakeClock(issued.Add(tc.at))})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Ensure(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Ensure() = %v, want error %v", err, tc.wantErr)
			}
			if (*requests > 0) != tc.wantReq {
				t.Errorf("%d requests, want some: %v", *requests, tc.wantReq)
			}
			if held := r.Current() != nil; held == tc.wantErr {
				t.Errorf("holding a certificate: %v", held)
			}
		})
	}
}

func TestWriteAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.pem")
	for _, data := range []string{"one", "two"} {
		if err := writeAtomic(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read %q, %v; want %q", got, err, data)
		}
		info, err := os.Stat(path)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, %v; want 0600", info.Mode(), err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory holds %v, %v; want only x.pem", entries, err)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: minRetry, 2: 2 * minRetry, 100: maxRetry} {
		if got := backoff(n); got < want*8/10 || got > want*12/10 {
			t.Errorf("backoff(%d) = %s, want %s ± 20%%", n, got, want)
		}
	}
}

// TestRunKeepsCertificateWhileRetrying: a rotation that fails keeps the
// valid certificate and is retried after a backoff on the injected clock.
func TestRunKeepsCertificateWhileRetrying(t *testing.T) {
	issued := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, _, err := certs.NewCA("test-ca", 365*24*time.Hour, issued)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kp, err := ca.Issue(certs.TunnelAgentIdentity.Request("n1", 24*time.Hour, false), issued)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(pathIn(dir, "tunnel-agent"), append(kp.CertPEM, kp.KeyPEM...)); err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset()
	attempts := make(chan struct{}, 10)
	cs.PrependReactor("create", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
		attempts <- struct{}{}
		return true, nil, errors.New("apiserver unreachable")
	})
	clk := testingclock.NewFakeClock(issued.Add(20 * time.Hour)) // past the rotation point
	r, err := New(Config{Client: cs, Identity: certs.TunnelAgentIdentity, Node: "n1", Dir: dir, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := r.Current()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	expectAttempt := func() {
		t.Helper()
		select {
		case <-attempts:
		case <-time.After(10 * time.Second):
			t.Fatal("no rotation attempt")
		}
	}
	expectAttempt() // at once: the certificate is due
	poll, timeout := time.NewTicker(time.Millisecond), time.After(10*time.Second)
	defer poll.Stop()
	for !clk.HasWaiters() {
		select {
		case <-poll.C:
		case <-timeout:
			t.Fatal("Run does not wait for the backoff")
		}
	}
	if r.Current() != held {
		t.Error("the valid certificate was dropped after a failed rotation")
	}
	select {
	case <-attempts:
		t.Fatal("retried before the backoff passed")
	default:
	}
	clk.Step(maxRetry * 2)
	expectAttempt()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run() = %v, want context.Canceled", err)
	}
}

// TestRequest checks the CSR each identity sends: signer, subject, usages
// and SANs. The apiserver refuses every request; only the request matters.
func TestRequest(t *testing.T) {
	hubIPs := []net.IP{net.ParseIP(certs.DefaultHubInClusterIP), net.ParseIP("fe80::31:1")}
	ds, clientAuth, serverAuth := certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth
	tests := map[string]struct {
		cfg        Config
		wantSigner string
		wantCN     string
		wantOrg    string
		wantUsages []certificatesv1.KeyUsage
		wantDNS    []string
		wantIPs    []net.IP
	}{
		"tunnel agent": {
			cfg:        Config{Identity: certs.TunnelAgentIdentity},
			wantSigner: certs.SignerTunnelAgent, wantCN: "edgeunit:tunnel-agent:n1", wantOrg: certs.TunnelAgentOrganization,
			wantUsages: []certificatesv1.KeyUsage{ds, clientAuth},
		},
		"edge hub serving loopback": {
			cfg:        Config{Identity: certs.EdgeHubIdentity, ServeLoopback: true},
			wantSigner: certs.SignerEdgeHub, wantCN: "edgeunit:edge-hub:n1", wantOrg: certs.EdgeHubOrganization,
			wantUsages: []certificatesv1.KeyUsage{ds, clientAuth, serverAuth}, wantDNS: certs.LoopbackDNSNames(), wantIPs: certs.LoopbackIPs(),
		},
		"hub serving in-cluster clients": {
			cfg:        Config{Identity: certs.HubInClusterIdentity, IPs: hubIPs},
			wantSigner: certs.SignerKubeletServing, wantCN: "system:node:n1", wantOrg: "system:nodes",
			wantUsages: []certificatesv1.KeyUsage{ds, serverAuth}, wantIPs: hubIPs,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cs := fake.NewClientset()
			var sent *certificatesv1.CertificateSigningRequest
			cs.PrependReactor("create", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
				sent = a.(k8stesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest)
				return true, nil, errors.New("apiserver unreachable")
			})
			cfg := tc.cfg
			cfg.Client, cfg.Node, cfg.Dir = cs, "n1", t.TempDir()
			r, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Ensure(context.Background()); err == nil {
				t.Fatal("Ensure succeeded without an apiserver")
			}
			if sent == nil {
				t.Fatal("no CSR sent")
			}
			if prefix := "edgeunit-" + cfg.Identity.Component + "-n1-"; !strings.HasPrefix(sent.Name, prefix) {
				t.Errorf("CSR name %q, want prefix %q", sent.Name, prefix)
			}
			if sent.Spec.SignerName != tc.wantSigner {
				t.Errorf("signer %q, want %q", sent.Spec.SignerName, tc.wantSigner)
			}
			if !slices.Equal(sent.Spec.Usages, tc.wantUsages) {
				t.Errorf("usages %q, want %q", sent.Spec.Usages, tc.wantUsages)
			}
			block, _ := pem.Decode(sent.Spec.Request)
			if block == nil {
				t.Fatal("no PEM in spec.request")
			}
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if req.Subject.CommonName != tc.wantCN || !slices.Equal(req.Subject.Organization, []string{tc.wantOrg}) {
				t.Errorf("subject %q %q, want %q [%q]", req.Subject.CommonName, req.Subject.Organization, tc.wantCN, tc.wantOrg)
			}
			if !slices.Equal(req.DNSNames, tc.wantDNS) || !slices.EqualFunc(req.IPAddresses, tc.wantIPs, net.IP.Equal) {
				t.Errorf("SANs %q %v, want %q %v", req.DNSNames, req.IPAddresses, tc.wantDNS, tc.wantIPs)
			}
			if len(req.EmailAddresses)+len(req.URIs) != 0 {
				t.Errorf("email or URI SANs %q %v", req.EmailAddresses, req.URIs)
			}
		})
	}
}

// TestNewRefuses: New refuses a configuration that cannot yield a valid
// request for its identity.
func TestNewRefuses(t *testing.T) {
	tests := map[string]struct {
		identity      certs.Identity
		ips           []net.IP
		serveLoopback bool
		wantErr       string // "" when accepted
	}{
		"hub in-cluster on the default address":   {identity: certs.HubInClusterIdentity, ips: []net.IP{net.ParseIP(certs.DefaultHubInClusterIP)}},
		"hub in-cluster on IPv6 link-local":       {identity: certs.HubInClusterIdentity, ips: []net.IP{net.ParseIP("fe80::1")}},
		"hub in-cluster without addresses":        {identity: certs.HubInClusterIdentity, wantErr: "at least one link-local address is required"},
		"hub in-cluster on a node address":        {identity: certs.HubInClusterIdentity, ips: []net.IP{net.ParseIP(certs.DefaultHubInClusterIP), net.ParseIP("10.0.0.5")}, wantErr: "10.0.0.5 is not link-local"},
		"hub in-cluster on loopback":              {identity: certs.HubInClusterIdentity, ips: []net.IP{net.ParseIP("127.0.0.1")}, wantErr: "127.0.0.1 is not link-local"},
		"hub in-cluster on link-local multicast":  {identity: certs.HubInClusterIdentity, ips: []net.IP{net.ParseIP("224.0.0.1")}, wantErr: "is not link-local"},
		"hub in-cluster serving loopback":         {identity: certs.HubInClusterIdentity, ips: []net.IP{net.ParseIP(certs.DefaultHubInClusterIP)}, serveLoopback: true, wantErr: "may not serve"},
		"addresses for a tunnel agent":            {identity: certs.TunnelAgentIdentity, ips: []net.IP{net.ParseIP(certs.DefaultHubInClusterIP)}, wantErr: "serves no IP addresses"},
		"addresses for the hub's client identity": {identity: certs.EdgeHubIdentity, ips: []net.IP{net.ParseIP(certs.DefaultHubInClusterIP)}, serveLoopback: true, wantErr: "serves no IP addresses"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(Config{Client: fake.NewClientset(), Identity: tc.identity, Node: "n1", Dir: t.TempDir(), IPs: tc.ips, ServeLoopback: tc.serveLoopback})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestHubInClusterFromDisk: the hub's in-cluster certificate on disk is
// reused while it serves the configured addresses, and requested anew when
// the hub is to serve others. The apiserver is unreachable here.
func TestHubInClusterFromDisk(t *testing.T) {
	issued := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clusterCA, _, err := certs.NewCA("cluster-ca", 365*24*time.Hour, issued)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := []net.IP{net.ParseIP(certs.DefaultHubInClusterIP)}
	tests := map[string]struct {
		ips     []net.IP
		wantReq bool
	}{
		"same address":              {ips: onDisk},
		"same address in IPv6 form": {ips: []net.IP{net.ParseIP("::ffff:" + certs.DefaultHubInClusterIP)}},
		"another address":           {ips: []net.IP{net.ParseIP("169.254.31.2")}, wantReq: true},
		"one more address":          {ips: append(slices.Clone(onDisk), net.ParseIP("fe80::31:1")), wantReq: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			req, err := certs.HubInClusterIdentity.LinkLocalRequest("n1", 24*time.Hour, onDisk)
			if err != nil {
				t.Fatal(err)
			}
			kp, err := clusterCA.Issue(req, issued)
			if err != nil {
				t.Fatal(err)
			}
			if err := writeAtomic(pathIn(dir, "edge-hub-incluster"), append(kp.CertPEM, kp.KeyPEM...)); err != nil {
				t.Fatal(err)
			}
			cs, requests := unreachable()
			r, err := New(Config{Client: cs, Identity: certs.HubInClusterIdentity, Node: "n1", Dir: dir, IPs: tc.ips, Clock: testingclock.NewFakeClock(issued.Add(time.Hour))})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Ensure(context.Background())
			if (err != nil) != tc.wantReq || (*requests > 0) != tc.wantReq {
				t.Fatalf("Ensure() = %v after %d requests, want a request: %v", err, *requests, tc.wantReq)
			}
			if !tc.wantReq && !slices.EqualFunc(r.Current().Leaf.IPAddresses, onDisk, net.IP.Equal) {
				t.Errorf("serving %v", r.Current().Leaf.IPAddresses)
			}
		})
	}
}

// unreachable is a clientset whose CSR creations fail as an unreachable
// apiserver's would, counting them.
func unreachable() (*fake.Clientset, *int) {
	cs := fake.NewClientset()
	requests := new(int)
	cs.PrependReactor("create", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
		*requests++
		return true, nil, errors.New("apiserver unreachable")
	})
	return cs, requests
}
