package hub

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeunit/edgeunit/internal/certs"
)

func writeKubeconfig(t *testing.T, dir, name, server string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	kc := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: ` + server + `
users:
- name: u
  user:
    token: node-token
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A converted node's kubelet kubeconfig names the hub itself: the hub
// takes the apiserver from the original the conversion kept, and never
// dials itself.
func TestCredentialsOfAConvertedNode(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Kubeconfig = writeKubeconfig(t, dir, "kubelet.conf", "http://localhost:10261")

	if _, err := loadCredentials(cfg); err == nil || !strings.Contains(err.Error(), "points at this hub") {
		t.Fatalf("loadCredentials without an original = %v, want it to refuse", err)
	}

	cfg.OriginalKubeconfig = writeKubeconfig(t, dir, "kubelet.conf.orig", "https://10.0.0.1:6443")
	c, err := loadCredentials(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.server != "https://10.0.0.1:6443" || c.token != "node-token" {
		t.Fatalf("server %q token %q, want the original's server and the kubelet's credentials", c.server, c.token)
	}

	cfg.Server = "https://api.example:6443"
	if c, err := loadCredentials(cfg); err != nil || c.server != cfg.Server {
		t.Fatalf("an explicit server = %q, %v", c.server, err)
	}

	cfg.Server = "http://127.0.0.1:10268"
	if _, err := loadCredentials(cfg); err == nil || !strings.Contains(err.Error(), "own listener") {
		t.Fatalf("server = the hub's HTTPS listener: %v, want it refused", err)
	}
}

// The kubelet rotates the client certificate its kubeconfig names: the hub
// picks the new one up at its next handshake, and keeps the last good one
// while the files are caught mid-rotation.
func TestClientCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(cn string) {
		t.Helper()
		cert, key := selfSigned(t, cn)
		if err := os.WriteFile(certFile, cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("system:node:old")
	cfg := DefaultConfig()
	cfg.Server, cfg.CertFile, cfg.KeyFile = "https://10.0.0.1:6443", certFile, keyFile
	up, err := newUpstream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	get := up.rt.TLSClientConfig.GetClientCertificate
	if get == nil {
		t.Fatal("a certificate from files is not read again")
	}
	cn := func() string {
		t.Helper()
		pair, err := get(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := cn(); got != "system:node:old" {
		t.Fatalf("CN %q", got)
	}
	write("system:node:new")
	// A different mtime for sure, whatever the file system's resolution.
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(certFile, later, later)
	if got := cn(); got != "system:node:new" {
		t.Fatalf("after rotation: CN %q, want the new certificate", got)
	}
	if err := os.WriteFile(keyFile, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "system:node:new" {
		t.Fatalf("mid-rotation: CN %q, want the last good certificate", got)
	}
}

// selfSigned is a client certificate and key named cn.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	ca, _, err := certs.NewCA("test", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(certs.Request{CommonName: cn, Lifetime: time.Hour, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kp.CertPEM, kp.KeyPEM
}
