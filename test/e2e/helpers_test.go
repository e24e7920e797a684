//go:build e2e && linux

package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func intOrPort(p int) intstr.IntOrString { return intstr.FromInt(p) }

// renewedAfter says whether the node's Lease in the apiserver was renewed
// after t.
func renewedAfter(ctx context.Context, node string, t time.Time, lease *coordinationv1.Lease) bool {
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: node}, lease); err != nil {
		return false
	}
	return lease.Spec.RenewTime != nil && lease.Spec.RenewTime.After(t)
}

// longKubectl is a kubectl that runs until its context ends
// (port-forward).
type longKubectl struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (k *longKubectl) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.out.Write(p)
}

func (k *longKubectl) output() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.out.String()
}

func (k *longKubectl) wait() {
	select {
	case <-k.done:
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}

func startKubectl(ctx context.Context, args ...string) *longKubectl {
	k := &longKubectl{done: make(chan struct{})}
	k.cmd = exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", tb.Cloud.Kubeconfig}, args...)...)
	k.cmd.Stdout, k.cmd.Stderr = k, k
	Expect(k.cmd.Start()).To(Succeed())
	go func() { _ = k.cmd.Wait(); close(k.done) }()
	DeferCleanup(func() { _ = k.cmd.Process.Kill(); k.wait() })
	return k
}
