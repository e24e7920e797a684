package netbind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/edgeunit/edgeunit/internal/netbind/wire"
)

// Handler answers edge-ipam's lookups (a pod's bound IP, and every bound IP
// of this node) from the durable copy, so it works with the cloud
// unreachable.
func Handler(store *Store, podIPs bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.PodIPPath, func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
		if msgs := append(validation.IsDNS1123Label(ns), validation.IsDNS1123Subdomain(name)...); ns == "" || name == "" || len(msgs) > 0 {
			writeJSON(w, http.StatusBadRequest, wire.Error{Message: fmt.Sprintf("namespace and name must be a pod's namespace and name (got %q, %q)", ns, name)})
			return
		}
		if !podIPs {
			writeJSON(w, http.StatusNotFound, wire.Error{Message: "stable pod IPs are off for this unit"})
			return
		}
		ip, ok := store.Get().Pods[ns+"/"+name]
		if !ok {
			writeJSON(w, http.StatusNotFound, wire.Error{Message: "no IP is bound to pod " + ns + "/" + name + " on this node"})
			return
		}
		writeJSON(w, http.StatusOK, wire.PodIP{IP: ip})
	})
	mux.HandleFunc("GET "+wire.BoundIPsPath, func(w http.ResponseWriter, _ *http.Request) {
		// With stable pod IPs off no pod gets its IP back, so none is
		// kept free for it.
		ips := []string{}
		if podIPs {
			ips = slices.AppendSeq(ips, maps.Values(store.Get().Pods))
			slices.Sort(ips)
			ips = slices.Compact(ips)
		}
		writeJSON(w, http.StatusOK, wire.BoundIPs{IPs: ips})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Listen opens the server's listener. A unix socket left by an earlier
// process is removed first; the socket is readable by root only.
func Listen(addr string) (net.Listener, error) {
	network, a, err := ParseListen(addr)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := os.MkdirAll(filepath.Dir(a), 0o755); err != nil {
			return nil, fmt.Errorf("netbind: listening on %s: %w", addr, err)
		}
		if err := os.Remove(a); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("netbind: removing the stale socket %s: %w", a, err)
		}
	}
	ln, err := net.Listen(network, a)
	if err != nil {
		return nil, fmt.Errorf("netbind: listening on %s: %w", addr, err)
	}
	if network == "unix" {
		if err := os.Chmod(a, 0o600); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("netbind: %w", err)
		}
	}
	return ln, nil
}

// serve runs the server on ln until ctx ends.
func serve(ctx context.Context, ln net.Listener, h http.Handler, log logr.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("Serving pod IP bindings", "address", ln.Addr().String())
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return fmt.Errorf("netbind: serving: %w", err)
	}
}
