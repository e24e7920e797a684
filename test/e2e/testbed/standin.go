//go:build linux

package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StandInTaint keeps workloads off stand-in nodes, which run nothing.
const StandInTaint = "edge.edgeunit.io/e2e-stand-in"

// standInRenewal is how often a stand-in node renews its Lease, as a
// kubelet does (every 10 s by default; quicker here).
const standInRenewal = 2 * time.Second

// StartStandInNode registers a Node that runs no kubelet but heartbeats
// (a Ready condition and a Lease renewed every 2 s) until the testbed
// stops: a healthy node elsewhere, without which kube-controller-manager
// takes every node going unreachable at once for its own outage and
// evicts nothing. It is tainted NoSchedule so nothing lands on it.
func (c *Cloud) StartStandInNode(ctx context.Context, name string, labels map[string]string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: StandInTaint, Effect: corev1.TaintEffectNoSchedule}}},
	}
	if err := c.Client.Create(ctx, node); err != nil {
		return fmt.Errorf("registering stand-in node %s: %w", name, err)
	}
	now := metav1.Now()
	ready := corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "StandIn",
		Message: "e2e stand-in node: heartbeats, runs nothing", LastHeartbeatTime: now, LastTransitionTime: now}}}}
	patch, err := json.Marshal(map[string]any{"status": ready.Status})
	if err != nil {
		return err
	}
	// A merge patch: the NodePool controller labels the node meanwhile.
	if err := c.Client.Status().Patch(ctx, node, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("marking stand-in node %s Ready: %w", name, err)
	}
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: new(int32(40)), RenewTime: &metav1.MicroTime{Time: now.Time}},
	}
	if err := c.Client.Create(ctx, lease); err != nil {
		return fmt.Errorf("creating the Lease of stand-in node %s: %w", name, err)
	}
	logf, err := logFile(c.tb.LogDir, "stand-in-"+name+".log")
	if err != nil {
		return err
	}
	hbCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = logf.Close() }()
		t := time.NewTicker(standInRenewal)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
			}
			// Only renewTime, by merge patch: nothing else writes it.
			patch := fmt.Appendf(nil, `{"spec":{"renewTime":%q}}`, time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
			if err := c.Client.Patch(hbCtx, lease, client.RawPatch(types.MergePatchType, patch)); err != nil && hbCtx.Err() == nil {
				// A failed renewal makes the cloud zone look down too:
				// say so where the failing spec's logs are.
				fmt.Fprintf(logf, "%s renewing the Lease of stand-in node %s: %v\n", time.Now().Format(time.RFC3339Nano), name, err)
			}
		}
	}()
	c.tb.cleanup("stand-in node "+name, func() error { stop(); <-done; return nil })
	return nil
}
