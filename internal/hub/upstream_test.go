package hub

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
