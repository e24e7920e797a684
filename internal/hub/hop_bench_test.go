package hub

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// BenchmarkReadHop measures what the hub adds to a GET of one object on
// loopback, against a stand-in apiserver (HTTP/2 over TLS) that answers at
// once: the cost of the hop itself, without the apiserver's own time.
func BenchmarkReadHop(b *testing.B) {
	obj := `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"ns","resourceVersion":"7"},"spec":{"x":"` + strings.Repeat("y", 2000) + `"}}`
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, obj)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	defer up.Close()
	dir := b.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	_ = os.WriteFile(caFile, pemCert(up.Certificate().Raw), 0o600)
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Server, cfg.CAFile, cfg.DataDir = "n1", up.URL, caFile, dir
	cfg.ListenHTTP, cfg.ListenHTTPS, cfg.ListenAdmin = "127.0.0.1:0", "", ""
	h, err := New(cfg, logr.Discard())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-h.Listening()
	deadline := time.Now().Add(10 * time.Second)
	for !h.link.Online() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	direct := up.Client()
	through := &http.Client{Transport: &http.Transport{}}
	get := func(c *http.Client, base string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/namespaces/ns/pods/p", nil)
		req.Header.Set("User-Agent", "kubelet/v1")
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	_ = tls.VersionTLS13
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			get(direct, up.URL)
		}
	})
	b.Run("hub", func(b *testing.B) {
		for b.Loop() {
			get(through, "http://"+h.HTTPAddr)
		}
	})
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
