package main

import (
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	common := []string{"--node-name=edge-1", "--servers=203.0.113.7:10262", "--ca-file=/etc/edgeunit/tunnel-ca/ca.crt"}
	tests := map[string]struct {
		args    []string
		wantErr string
	}{
		// As the EdgeUnit controller's DaemonSet runs it.
		"kubelet kubeconfig": {args: []string{"--kubeconfig=/etc/kubernetes/kubelet.conf", "--cert-dir=/var/lib/edgeunit/tunnel-agent", "--zap-log-level=debug"}},
		"with pod ports":     {args: []string{"--kubeconfig=/etc/kubernetes/kubelet.conf", "--cert-dir=/var/lib/edgeunit/tunnel-agent", "--pod-ports=8443"}},
		"static files":       {args: []string{"--cert-file=/tls.crt", "--key-file=/tls.key"}},
		"both":               {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "--cert-file=/tls.crt", "--key-file=/tls.key"}, wantErr: "exclude each other"},
		"neither":            {wantErr: "an identity is required"},
		"stray argument":     {args: []string{"--kubeconfig=/k", "--cert-dir=/d", "extra"}, wantErr: "unexpected arguments"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o, _, err := parseFlags("tunnel-agent", append(append([]string{}, common...), tc.args...))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("parseFlags = %v", err)
				}
				if o.NodeName != "edge-1" {
					t.Errorf("node = %q", o.NodeName)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("parseFlags = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
