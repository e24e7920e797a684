//go:build e2e && linux

// Package e2e runs edgeunit on real edge nodes: a real kubelet with
// containerd and runc on each node, the real kube-controller-manager and
// kube-scheduler, the manager and a tunnel-server as processes (package
// testbed). `make e2e` runs it; it needs root and the binaries `make
// e2e-deps` builds.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/internal/testenv"
	"github.com/edgeunit/edgeunit/test/e2e/testbed"
)

// The testbed: two edge nodes of one EdgeUnit, one in the samples'
// autonomous pool and one in a pool without autonomy.
const (
	unitName       = "factory"
	autonomousPool = "factory-a"
	plainPool      = "kiosk"
	autonomousNode = "edge-1"
	plainNode      = "edge-2"
	endpointName   = "tunnel"
	// Shortened for the autonomy spec: a node is unknown 20 s after its
	// last heartbeat and its pods without autonomy go 30 s later.
	nodeMonitorGrace = 20 * time.Second // four Lease renewals of the testbed's kubelets
	toleratedSeconds = 30
)

var (
	tb        *testbed.Testbed
	k8s       client.Client
	suiteCtx  context.Context
	repoRoot  string
	appPods   = map[string]string{} // node -> pod name
	appLabels = map[string]string{"app": "e2e-testapp"}
	// suiteFailed keeps the testbed's files for a look after the run.
	suiteFailed bool
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "real edge nodes")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	SetDefaultEventuallyTimeout(3 * time.Minute)
	SetDefaultEventuallyPollingInterval(500 * time.Millisecond)
	var err error
	repoRoot, err = testenv.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	dir, err := os.MkdirTemp("", "edgeunit-e2e-")
	Expect(err).NotTo(HaveOccurred())
	suiteCtx = context.Background()
	start := time.Now()
	tb, err = testbed.Start(ctx, testbed.Options{
		Dir: dir,
		Nodes: []testbed.NodeSpec{
			// A zone each: kube-controller-manager evicts from a zone
			// that is wholly down only while another zone is healthy.
			{Name: autonomousNode, Pool: autonomousPool, Zone: "zone-a"},
			{Name: plainNode, Pool: plainPool, Zone: "zone-b"},
		},
		NodeMonitorGracePeriod: nodeMonitorGrace,
		ToleratedSeconds:       toleratedSeconds,
	})
	DeferCleanup(func() {
		var stopErr error
		if tb != nil {
			stopErr = tb.Stop()
		}
		if suiteFailed || stopErr != nil || os.Getenv("EDGEUNIT_E2E_KEEP") != "" {
			GinkgoWriter.Printf("testbed files and logs kept in %s\n", dir)
		} else {
			Expect(os.RemoveAll(dir)).To(Succeed())
		}
		Expect(stopErr).NotTo(HaveOccurred())
	})
	if err != nil {
		suiteFailed = true
	}
	Expect(err).NotTo(HaveOccurred())
	// The healthy zone: a stand-in for the cloud's own nodes.
	Expect(tb.Cloud.StartStandInNode(ctx, "cloud-1", map[string]string{
		edgev1.LabelNodePool: "cloud", "topology.kubernetes.io/zone": "cloud"})).To(Succeed())
	GinkgoWriter.Printf("testbed up in %s (logs in %s)\n", time.Since(start).Round(time.Millisecond), tb.LogDir)
	k8s = tb.Cloud.Client
}, NodeTimeout(10*time.Minute))

// ReportAfterEach prints the end of the testbed's logs when a spec fails,
// so CI shows why.
var _ = ReportAfterEach(func(r SpecReport) {
	if !r.Failed() || tb == nil {
		return
	}
	suiteFailed = true
	logs, _ := filepath.Glob(filepath.Join(tb.LogDir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(tb.LogDir, "*", "*.log"))
	for _, l := range append(logs, more...) {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		AddReportEntry("log "+strings.TrimPrefix(l, tb.LogDir+"/"), strings.Join(lines, "\n"))
	}
})

// samples are config/samples as a user applies them, adapted to the
// testbed: the TunnelEndpoint's address is the cloud's link address, and a
// second edge pool without autonomy joins the unit.
func samples() []client.Object {
	decoder := serializer.NewCodecFactory(controllers.Scheme()).UniversalDeserializer()
	var objs []client.Object
	files, err := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "edge_v1alpha1_*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(files).NotTo(BeEmpty())
	for _, f := range files {
		raw, err := os.ReadFile(f)
		Expect(err).NotTo(HaveOccurred())
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := docs.Read()
			if err != nil {
				break
			}
			if strings.TrimSpace(string(doc)) == "" {
				continue
			}
			obj, _, err := decoder.Decode(doc, nil, nil)
			Expect(err).NotTo(HaveOccurred(), "decoding %s", f)
			switch o := obj.(type) {
			case *edgev1.TunnelEndpoint:
				o.Spec.Service.Addresses = []string{testbed.CloudIP}
				Expect(o.Spec.Ports.Agent).To(BeEquivalentTo(testbed.TunnelAgentPort))
			case *edgev1.EdgeUnit:
				o.Spec.NodePools = append(o.Spec.NodePools, plainPool)
			case *edgev1.UnitDeployment:
				// Its image is not on the testbed's nodes; the processing
				// unit specs run one with the test app instead.
				continue
			}
			objs = append(objs, obj.(client.Object))
		}
	}
	objs = append(objs, &edgev1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: plainPool},
		Spec:       edgev1.NodePoolSpec{Type: edgev1.NodePoolEdge, Labels: map[string]string{"example.com/site": plainPool}},
	})
	return objs
}

// kubectl runs kubectl as the admin and returns what it printed on
// stdout; its stderr (client-side warnings and logs, such as the websocket
// executor's) goes into the error when it fails, never into the output.
func kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", tb.Cloud.Kubeconfig, "--request-timeout", "30s"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// condition is the status of a condition type, or "" when absent.
func condition(conds []metav1.Condition, t string) string {
	if c := meta.FindStatusCondition(conds, t); c != nil {
		return string(c.Status)
	}
	return ""
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describe is what a user would look at when a wait fails.
func describe(ctx context.Context, what ...string) string {
	var b strings.Builder
	for _, w := range what {
		out, _ := kubectl(ctx, append([]string{"get", "-o", "wide"}, strings.Fields(w)...)...)
		fmt.Fprintf(&b, "\n$ kubectl get %s -o wide\n%s", w, out)
	}
	return b.String()
}
