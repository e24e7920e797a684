package csr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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
			cs := fake.NewClientset()
			requests := 0
			cs.PrependReactor("create", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
				requests++
				return true, nil, errors.New("apiserver unreachable")
			})
			r, err := New(Config{Client: cs, Identity: certs.TunnelAgentIdentity, Node: "n1", Dir: dir, Clock: testingclock.NewFakeClock(issued.Add(tc.at))})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Ensure(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Ensure() = %v, want error %v", err, tc.wantErr)
			}
			if (requests > 0) != tc.wantReq {
				t.Errorf("%d requests, want some: %v", requests, tc.wantReq)
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
