//go:build linux

package testbed

import (
	"errors"
	"fmt"
	"net"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// What callers outside the e2e suite need (the demo's real edge node,
// `edgeunit-demo real-node`): a check before Start, and the names of a
// node's namespaces and link for commands a person runs on this machine.

// Preflight says why Start would fail on this machine before it makes
// anything, or nil: not root, binaries missing, no cgroup v1 hierarchy,
// another testbed holding the machine-wide lock. The lock is only tried:
// Start takes it for itself.
func Preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the real-node testbed needs root (network, mount and cgroup namespaces)")
	}
	if _, err := findAssets(); err != nil {
		return err
	}
	if _, err := v1Hierarchies(); err != nil {
		return err
	}
	unlock, err := lockTestbed()
	if err != nil {
		return err
	}
	unlock()
	return nil
}

// NetNS is the name of the node's network namespace, for `ip netns exec`.
func (n *Node) NetNS() string { return n.net.ns }

// LinkDevice is the cloud end of the node's link, on this machine: `ip
// link set <dev> down` cuts the link as CutLink does, `up` mends it.
func (n *Node) LinkDevice() string { return n.net.hostDev }

// LinkUp says whether the node's link to the cloud is up (not cut).
func (n *Node) LinkUp() (bool, error) {
	ifc, err := net.InterfaceByName(n.net.hostDev)
	if err != nil {
		return false, fmt.Errorf("the link of node %s: %w", n.Name, err)
	}
	return ifc.Flags&net.FlagUp != 0, nil
}

// TestAppBinary is the test app's binary on this machine; `testapp get
// <url>` is an HTTP GET that prints the body.
func (tb *Testbed) TestAppBinary() string { return tb.assets.e2e("testapp") }

// TestAppPod is a pod of the test app serving HTTP on port: pinned to
// node, tolerating tolerations, with no service account token (one cannot
// be requested while the cloud is unreachable, and the app needs none).
func TestAppPod(name string, labels map[string]string, node string, port int32, tolerations []corev1.Toleration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault, Labels: labels},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: node},
			Tolerations:                   tolerations,
			AutomountServiceAccountToken:  new(false),
			TerminationGracePeriodSeconds: new(int64(2)),
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           TestAppImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"serve", fmt.Sprintf("--listen=:%d", port)},
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Ports: []corev1.ContainerPort{{ContainerPort: port}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/", Port: intstr.FromInt32(port)}}, PeriodSeconds: 1},
			}},
		},
	}
}
