package demo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// notReady says what still keeps the demo from being ready: pools whose
// Ready condition is not True for their current generation, and member
// nodes that do not carry their pool's type label and labels yet. Empty
// means ready.
func notReady(pools []edgev1.NodePool, nodes []corev1.Node) []string {
	var out []string
	byName := map[string]*edgev1.NodePool{}
	for i := range pools {
		p := &pools[i]
		byName[p.Name] = p
		c := meta.FindStatusCondition(p.Status.Conditions, edgev1.ConditionReady)
		switch {
		case c == nil:
			out = append(out, fmt.Sprintf("NodePool %s has no Ready condition yet", p.Name))
		case c.Status != "True":
			out = append(out, fmt.Sprintf("NodePool %s is not Ready: %s: %s", p.Name, c.Reason, c.Message))
		case p.Status.ObservedGeneration != p.Generation || c.ObservedGeneration != p.Generation:
			out = append(out, fmt.Sprintf("NodePool %s: status is for generation %d, spec is at %d", p.Name, p.Status.ObservedGeneration, p.Generation))
		}
	}
	for i := range nodes {
		n := &nodes[i]
		name := n.Labels[edgev1.LabelNodePool]
		if name == "" {
			continue
		}
		p, ok := byName[name]
		if !ok {
			out = append(out, fmt.Sprintf("node %s is labelled into NodePool %s, which does not exist", n.Name, name))
			continue
		}
		var missing []string
		typ := p.Spec.Type
		if typ == "" {
			typ = edgev1.NodePoolEdge
		}
		if n.Labels[edgev1.LabelPoolType] != strings.ToLower(string(typ)) {
			missing = append(missing, edgev1.LabelPoolType)
		}
		for k, v := range p.Spec.Labels {
			if n.Labels[k] != v {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			out = append(out, fmt.Sprintf("node %s lacks the labels of NodePool %s: %s", n.Name, name, strings.Join(missing, ", ")))
		}
	}
	return out
}

// waitReady polls until notReady is empty. Polling is fine here: the demo
// waits once, for a few seconds, and reports what is missing on timeout.
func waitReady(ctx context.Context, c client.Reader, timeout time.Duration) error {
	var pending []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var pools edgev1.NodePoolList
		if err := c.List(ctx, &pools); err != nil {
			pending = []string{err.Error()}
			return false, nil
		}
		var nodes corev1.NodeList
		if err := c.List(ctx, &nodes); err != nil {
			pending = []string{err.Error()}
			return false, nil
		}
		if len(pools.Items) == 0 {
			pending = []string{"no NodePools exist"}
			return false, nil
		}
		pending = notReady(pools.Items, nodes.Items)
		return len(pending) == 0, nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("the NodePools did not become Ready within %s (raise --ready-timeout or see the manager's log with --zap-log-level=info): %w",
		timeout, errors.New(strings.Join(pending, "; ")))
}
