package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// SimulatedPod is a pod the demo places on an edge node and gives an IP, as
// a kubelet and its CNI plugin would, so the unit's pod IP bindings have
// something to record.
type SimulatedPod struct {
	Name, Node, IP string
}

// DefaultPods run in namespace default on the factory-a nodes.
var DefaultPods = []SimulatedPod{
	{Name: "sensor-gateway-0", Node: "factory-a-1", IP: "10.244.1.10"},
	{Name: "sensor-gateway-1", Node: "factory-a-2", IP: "10.244.2.10"},
	{Name: "plc-bridge", Node: "factory-a-3", IP: "10.244.3.10"},
}

// bindingsUnit is the sample EdgeUnit with network autonomy on.
const bindingsUnit = "factory"

// bindingsJSONPath lists a unit's bindings, one node a line.
const bindingsJSONPath = `{range .status.bindings[*]}{.node}{"  vtepMAC="}{.vtepMAC}{"  vtepIP="}{.vtepIP}{"  pods="}{.pods}{"\n"}{end}`

// registerPods creates the pods bound to their nodes and sets their IPs
// through the status subresource. No kubelet runs them: they stay Pending
// with an IP, which is all the bindings controller reads.
func registerPods(ctx context.Context, c client.Client, pods []SimulatedPod) error {
	for _, p := range pods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: p.Name, Labels: map[string]string{"app": p.Name}},
			Spec: corev1.PodSpec{
				NodeName:                     p.Node,
				AutomountServiceAccountToken: new(false),
				Containers:                   []corev1.Container{{Name: "app", Image: "registry.example/" + p.Name + ":1"}},
			},
		}
		if err := c.Create(ctx, pod); client.IgnoreAlreadyExists(err) != nil {
			return fmt.Errorf("creating pod %s: %w", p.Name, err)
		}
		patch := fmt.Sprintf(`{"status":{"podIP":%q,"podIPs":[{"ip":%q}]}}`, p.IP, p.IP)
		if err := c.Status().Patch(ctx, pod, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
			return fmt.Errorf("setting the IP of pod %s: %w", p.Name, err)
		}
	}
	return nil
}

// waitBindings waits until the unit records every simulated pod's IP.
func waitBindings(ctx context.Context, c client.Reader, unit string, pods []SimulatedPod, timeout time.Duration) error {
	var missing []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		u := &edgev1.EdgeUnit{}
		if err := c.Get(ctx, client.ObjectKey{Name: unit}, u); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		bound := map[string]string{}
		for _, b := range u.Status.Bindings {
			for _, p := range b.Pods {
				bound[p.Pod] = p.IP
			}
		}
		missing = missing[:0]
		for _, p := range pods {
			if bound[metav1.NamespaceDefault+"/"+p.Name] != p.IP {
				missing = append(missing, p.Name)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("EdgeUnit %s does not record the IPs of %s: %w", unit, strings.Join(missing, ", "), err)
	}
	return nil
}

// printBindingsWithClient prints what bindingsJSONPath shows, without kubectl.
func (d *Demo) printBindingsWithClient(unit string) func(ctx context.Context, w io.Writer) error {
	return func(ctx context.Context, w io.Writer) error {
		u := &edgev1.EdgeUnit{}
		if err := d.Client.Get(ctx, client.ObjectKey{Name: unit}, u); err != nil {
			return err
		}
		for _, b := range u.Status.Bindings {
			var pods []string
			for _, p := range b.Pods {
				pods = append(pods, p.Pod+"="+p.IP)
			}
			fmt.Fprintf(w, "%s  vtepMAC=%s  vtepIP=%s  pods=[%s]\n", b.Node, b.VTEPMAC, b.VTEPIP, strings.Join(pods, " "))
		}
		return nil
	}
}
