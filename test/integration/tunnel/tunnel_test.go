package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/tunnel"
)

const (
	nodeName = "edge-1"
	teName   = "tunnel-it"
	// reconnectTarget is DESIGN.md's target. The test only reports the
	// figure against it (the machine is shared and loaded, and the time
	// includes starting the process); test/bench/tunnel's BenchmarkReconnect
	// owns the target.
	reconnectTarget = 2 * time.Second
)

type agentInfo struct {
	Node  string    `json:"Node"`
	Since time.Time `json:"Since"`
}

var _ = Describe("Reverse tunnel", Ordered, func() {
	var (
		dir                  string
		edge                 *edgeNet
		kubelet              *kubeletStandIn
		kubeletPort, offPort int
		offAccepted          atomic.Int32
		targetPort           int // the pod's port for port-forward
		targetPayload        string
		targetHits           atomic.Int32
		serverArgs           []string
		server, agent        *proc
		healthURL            string
		agentBin             string
		caFile               string
		connectAddr          string
		egressCert           tls.Certificate
		ca                   *certs.CA
		agentArgs            func(certFile, keyFile, node string) []string
		issueAgent           func(ca *certs.CA, name, node string) (string, string)
		egress               = &egressSuite{}
	)

	agentsOnServer := func() []agentInfo {
		resp, err := http.Get(healthURL + "/agents")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var out []agentInfo
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	connected := func() bool {
		for _, a := range agentsOnServer() {
			if a.Node == nodeName {
				return true
			}
		}
		return false
	}
	startServer := func() { server = start(serverArgs[0], serverArgs[1:]...) }
	startAgent := func() {
		agent = start("ip", append([]string{"netns", "exec", edge.ns, agentBin}, agentArgs("agent.crt", "agent.key", nodeName)...)...)
	}

	BeforeAll(func() {
		if os.Geteuid() != 0 {
			Skip("the tunnel integration test needs root to create a network namespace")
		}
		if _, err := exec.LookPath("ip"); err != nil {
			Skip("the tunnel integration test needs iproute2's ip")
		}
		var cleanup func()
		var err error
		edge, cleanup, err = newEdgeNet()
		DeferCleanup(cleanup)
		if err != nil && strings.Contains(err.Error(), "netns add") {
			Skip("the kernel refused a network namespace: " + err.Error())
		}
		Expect(err).NotTo(HaveOccurred())
		dir = GinkgoT().TempDir()

		// PKI: the tunnel CA signs the servers, the agents and kube-apiserver's
		// egress client; the kubelet has a CA of its own.
		now := time.Now()
		var caKP certs.KeyPair
		ca, caKP, err = certs.NewCA("edgeunit-tunnel-test", time.Hour, now)
		Expect(err).NotTo(HaveOccurred())
		caFile = writeFile(dir, "ca.crt", caKP.CertPEM)
		issue := func(name string, req certs.Request) (string, string) {
			kp, err := ca.Issue(req, now)
			Expect(err).NotTo(HaveOccurred())
			return writeFile(dir, name+".crt", kp.CertPEM), writeFile(dir, name+".key", kp.KeyPEM)
		}
		srvCrt, srvKey := issue("server", certs.Request{CommonName: "tunnel-server", IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(edge.uplinkRoot)}, Lifetime: time.Hour, Server: true})
		egCrt, egKey := issue("egress", certs.EgressClientRequest(time.Hour))
		egressCert, err = tls.LoadX509KeyPair(egCrt, egKey)
		Expect(err).NotTo(HaveOccurred())
		issueAgent = func(c *certs.CA, name, node string) (string, string) {
			kp, err := c.Issue(certs.TunnelAgentRequest(node, time.Hour), now)
			Expect(err).NotTo(HaveOccurred())
			return writeFile(dir, name+".crt", kp.CertPEM), writeFile(dir, name+".key", kp.KeyPEM)
		}
		issueAgent(ca, "agent", nodeName)
		kubeletCA, _, err := certs.NewCA("kubelet-ca", time.Hour, now)
		Expect(err).NotTo(HaveOccurred())
		kkp, err := kubeletCA.Issue(certs.Request{CommonName: nodeName, IPs: []net.IP{net.ParseIP(edge.kubeletIP)}, Lifetime: time.Hour, Server: true}, now)
		Expect(err).NotTo(HaveOccurred())
		kcert, err := tls.X509KeyPair(kkp.CertPEM, kkp.KeyPEM)
		Expect(err).NotTo(HaveOccurred())

		// The pod's port for port-forward: an HTTP server on the edge
		// namespace's own 127.0.0.1, which the stand-in dials there as a
		// runtime dials inside a pod; nothing outside the namespace reaches it.
		tln, err := edge.listenIn("127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		targetPort = tln.Addr().(*net.TCPAddr).Port
		targetPayload = "port-forward payload " + rand.Text()
		target := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			targetHits.Add(1)
			_, _ = io.WriteString(w, targetPayload)
		})}
		go func() { _ = target.Serve(tln) }()
		DeferCleanup(target.Close)

		// The kubelet stand-in and an off-allowlist service, inside the
		// edge namespace only.
		kln, err := edge.listenIn(net.JoinHostPort(edge.kubeletIP, "0"))
		Expect(err).NotTo(HaveOccurred())
		kubeletPort = kln.Addr().(*net.TCPAddr).Port
		kubelet = startKubelet(kln, kcert, "hello from the edge", func(port int) (net.Conn, error) {
			return edge.dialIn(net.JoinHostPort("127.0.0.1", itoa(port)))
		})
		DeferCleanup(kubelet.close)
		oln, err := edge.listenIn(net.JoinHostPort(edge.kubeletIP, "0"))
		Expect(err).NotTo(HaveOccurred())
		offPort = oln.Addr().(*net.TCPAddr).Port
		DeferCleanup(oln.Close)
		go func() {
			for {
				c, err := oln.Accept()
				if err != nil {
					return
				}
				offAccepted.Add(1)
				_ = c.Close()
			}
		}()

		connectAddr = net.JoinHostPort("127.0.0.1", itoa(freePort("127.0.0.1")))
		startControlPlane(dir, connectAddr, caFile, egCrt, egKey)
		// Cleanups run last-registered first: our processes stop before
		// kube-apiserver, which stops before the namespace goes.
		DeferCleanup(stopAll)

		agentAddr := net.JoinHostPort(edge.uplinkRoot, itoa(freePort(edge.uplinkRoot)))
		healthAddr := net.JoinHostPort("127.0.0.1", itoa(freePort("127.0.0.1")))
		healthURL = "http://" + healthAddr
		// The cloud network's backends, and the edge node's own address: a
		// node's address routes by its node (through the agent) before any
		// direct CIDR.
		directCIDRs := edge.cloudBackendIP + "/32," + edge.kubeletIP + "/32"
		serverArgs = []string{binDir + "/tunnel-server", "--id", "replica-0",
			"--agent-address", agentAddr, "--agent-cert-file", srvCrt, "--agent-key-file", srvKey, "--agent-client-ca-file", caFile,
			"--connect-address", connectAddr, "--connect-cert-file", srvCrt, "--connect-key-file", srvKey, "--connect-client-ca-file", caFile,
			"--passthrough-address", "127.0.0.1:0", "--health-address", healthAddr, "--kubeconfig", kubecfg,
			"--direct-cidrs", directCIDRs,
			"--tunnel-endpoint", teName, "--status-interval", "500ms", "--status-refresh", "5s", "--heartbeat-interval", "1s", "--zap-log-level", "2"}
		agentBin = binDir + "/tunnel-agent"
		agentArgs = func(certFile, keyFile, node string) []string {
			return []string{"--node-name", node, "--servers", agentAddr,
				"--cert-file", dir + "/" + certFile, "--key-file", dir + "/" + keyFile, "--ca-file", caFile,
				"--allowed-ports", itoa(kubeletPort), "--backoff-initial", "100ms", "--backoff-max", "1s", "--keepalive", "2s"}
		}

		ctx := context.Background()
		Expect(k8s.Create(ctx, &edgev1.TunnelEndpoint{ObjectMeta: metav1.ObjectMeta{Name: teName}})).To(Succeed())
		// In an Edge pool, as the NodePool controller labels it: the server
		// routes it through its agent, or not at all while none is connected.
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName,
			Labels: map[string]string{edgev1.LabelPoolType: strings.ToLower(string(edgev1.NodePoolEdge))}}}
		Expect(k8s.Create(ctx, node)).To(Succeed())
		node.Status = corev1.NodeStatus{
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: edge.kubeletIP}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
		}
		Expect(k8s.Status().Update(ctx, node)).To(Succeed())
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: nodeName, AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
		}
		Expect(k8s.Create(ctx, pod)).To(Succeed())
		// As its kubelet would report it: kubectl port-forward wants a
		// running pod.
		pod.Status.Phase = corev1.PodRunning
		Expect(k8s.Status().Update(ctx, pod)).To(Succeed())

		startServer()
		startAgent()
		*egress = egressSuite{edge: edge, kubelet: kubelet, healthURL: healthURL, connectAddr: connectAddr,
			egressCert: egressCert, tunnelCA: ca, server: func() *proc { return server }}
	})

	It("connects the agent and reports it in the TunnelEndpoint status", func(ctx SpecContext) {
		Eventually(connected).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(BeTrue())
		Eventually(func(g Gomega) {
			var te edgev1.TunnelEndpoint
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: teName}, &te)).To(Succeed())
			g.Expect(te.Status.ConnectedAgents).To(Equal(int32(1)))
			g.Expect(te.Status.Agents).To(HaveLen(1))
			g.Expect(te.Status.Agents[0].Node).To(Equal(nodeName))
			g.Expect(te.Status.Agents[0].Servers).To(Equal(int32(1)))
		}).WithContext(ctx).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	})

	It("serves kubectl logs from the kubelet in the edge namespace through the tunnel", func(ctx SpecContext) {
		before := kubelet.logs.Load()
		var out string
		Eventually(func() error {
			var err error
			out, err = kubectl(ctx, "logs", "web", "-n", "default")
			return err
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		Expect(out).To(ContainSubstring("hello from the edge default/web/app line 2"))
		Expect(kubelet.logs.Load()).To(BeNumerically(">", before))
	})

	It("runs kubectl exec -- echo on the kubelet through the tunnel", func(ctx SpecContext) {
		before := kubelet.execs.Load()
		out, err := kubectl(ctx, "exec", "web", "-n", "default", "--", "echo", "hello", "edge")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(strings.TrimSpace(out)).To(Equal("hello edge"))
		Expect(kubelet.execs.Load()).To(BeNumerically(">", before))
	})

	It("attaches kubectl attach to a container on the kubelet through the tunnel", func(ctx SpecContext) {
		before := kubelet.attaches.Load()
		line := kubelet.attachLine("default", "web", "app")
		attach := func(stdin string, args ...string) (string, string, error) {
			cmd := kubectlCommand(ctx, append([]string{"--request-timeout", "20s", "attach", "web", "-n", "default", "-c", "app", "-q"}, args...)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
			err := cmd.Run()
			return stdout.String(), stderr.String(), err
		}
		out, errOut, err := attach("")
		Expect(err).NotTo(HaveOccurred(), errOut)
		Expect(out).To(Equal(line + "\n"))
		// With -i, kubectl's standard input reaches the container, which
		// echoes it until EOF.
		out, errOut, err = attach("ping from the cloud\n", "-i")
		Expect(err).NotTo(HaveOccurred(), errOut)
		Expect(out).To(Equal(line + "\nping from the cloud\n"))
		Expect(kubelet.attaches.Load()).To(BeNumerically(">=", before+2))
	}, SpecTimeout(2*time.Minute))

	It("forwards a port of the pod with kubectl port-forward through the tunnel", func(ctx SpecContext) {
		before, hitsBefore := kubelet.portForwards.Load(), targetHits.Load()
		pf := startKubectl(ctx, "port-forward", "pod/web", "-n", "default", "--address", "127.0.0.1", ":"+itoa(targetPort))
		forwarding := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> ` + itoa(targetPort) + `\b`)
		var localPort string
		Eventually(func() error {
			out := pf.output()
			if m := forwarding.FindStringSubmatch(out); m != nil {
				localPort = m[1]
				return nil
			}
			select {
			case <-pf.done:
				return StopTrying("kubectl port-forward exited: " + out)
			default:
				return fmt.Errorf("kubectl port-forward is not forwarding yet: %q", out)
			}
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		// Each request is a new connection, so a new pair of streams.
		httpc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for range 2 {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", localPort)+"/", nil)
			Expect(err).NotTo(HaveOccurred())
			resp, err := httpc.Do(req)
			Expect(err).NotTo(HaveOccurred(), pf.output())
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.StatusCode).To(Equal(http.StatusOK))
			Expect(string(body)).To(Equal(targetPayload))
		}
		Expect(targetHits.Load()).To(Equal(hitsBefore + 2))
		Expect(kubelet.portForwards.Load()).To(BeNumerically(">", before))
		Expect(pf.done).NotTo(BeClosed(), "kubectl port-forward ended early: %s", pf.output())
		pf.stop()
	}, SpecTimeout(2*time.Minute))

	It("refuses a port outside the agent's allowlist", func() {
		conn, err := tls.Dial("tcp", connectAddr, &tls.Config{Certificates: []tls.Certificate{egressCert}, RootCAs: ca.Pool()})
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		target := net.JoinHostPort(edge.kubeletIP, itoa(offPort))
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		Expect(offAccepted.Load()).To(BeZero(), "the off-allowlist service was reached")
		Eventually(agent.output).WithTimeout(10*time.Second).Should(ContainSubstring("is not in the allowlist"), "the agent itself refuses it")
	})

	It("refuses an agent whose certificate names another node, and one from an unknown CA", func() {
		issueAgent(ca, "impostor", "edge-2")
		rogueCA, _, err := certs.NewCA("rogue", time.Hour, time.Now())
		Expect(err).NotTo(HaveOccurred())
		issueAgent(rogueCA, "rogue", nodeName)
		sinceBefore := agentsOnServer()
		Expect(sinceBefore).To(HaveLen(1))
		serverMark, agentMark := len(server.output()), len(agent.output())

		impostor := start("ip", append([]string{"netns", "exec", edge.ns, agentBin}, agentArgs("impostor.crt", "impostor.key", nodeName)...)...)
		rogue := start("ip", append([]string{"netns", "exec", edge.ns, agentBin}, agentArgs("rogue.crt", "rogue.key", nodeName)...)...)
		Eventually(impostor.output).WithTimeout(20 * time.Second).Should(ContainSubstring(`its certificate is for node \"edge-2\"`))
		Eventually(rogue.output).WithTimeout(20 * time.Second).Should(Or(ContainSubstring("unknown certificate authority"), ContainSubstring("bad certificate")))
		Eventually(server.output).WithTimeout(10 * time.Second).Should(ContainSubstring("Rejected agent"))
		impostor.stop()
		rogue.stop()
		// Neither was ever let in.
		Expect(impostor.output()).NotTo(ContainSubstring("Connected to tunnel server"))
		Expect(rogue.output()).NotTo(ContainSubstring("Connected to tunnel server"))
		// The genuine agent's session was never displaced. The one thing
		// that may renew it meanwhile is a keepalive ping unanswered for
		// 15 s (a stalled machine); a session displaced by another agent
		// ends without one.
		if now := agentsOnServer(); !reflect.DeepEqual(now, sinceBefore) {
			Expect(server.output()[serverMark:]+agent.output()[agentMark:]).To(Or(
				ContainSubstring("Agent missed a heartbeat"), ContainSubstring("keepalive: mux: ping timed out")),
				"the genuine agent's session was replaced (%v, was %v)", now, sinceBefore)
			AddReportEntry("genuine agent reconnected after a keepalive timeout", fmt.Sprintf("%v, was %v", now, sinceBefore))
		}
	})

	It("gets the agent back after a server restart, reporting how long it took", func(ctx SpecContext) {
		server.stop()
		restarted := time.Now()
		startServer()
		Eventually(connected).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(BeTrue())
		took := time.Since(restarted)
		AddReportEntry("agent reconnect after server restart", took.String())
		fmt.Fprintf(GinkgoWriter, "agent back %s after the server restart (target %s)\n", took, reconnectTarget)
		Eventually(func() error {
			_, err := kubectl(ctx, "logs", "web", "-n", "default")
			return err
		}).WithContext(ctx).WithTimeout(20 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	})

	egressSpecs(egress)

	It("fails kubectl logs, exec, attach and port-forward once the agent is stopped: there is no other path", func(ctx SpecContext) {
		noAgentBefore, err := connectRequests(healthURL, "agent", "no_agent")
		Expect(err).NotTo(HaveOccurred())
		agent.stop()
		Eventually(func() ([]agentInfo, error) {
			resp, err := http.Get(healthURL + "/agents")
			if err != nil {
				return nil, err // the server must stay up: only the agent is gone
			}
			defer resp.Body.Close()
			var out []agentInfo
			return out, json.NewDecoder(resp.Body).Decode(&out)
		}).WithTimeout(15 * time.Second).WithPolling(100 * time.Millisecond).Should(BeEmpty())
		logsBefore, execsBefore := kubelet.logs.Load(), kubelet.execs.Load()
		attachesBefore, forwardsBefore, hitsBefore := kubelet.attaches.Load(), kubelet.portForwards.Load(), targetHits.Load()
		out, err := kubectl(ctx, "logs", "web", "-n", "default")
		Expect(err).To(HaveOccurred(), out)
		out, err = kubectl(ctx, "exec", "web", "-n", "default", "--", "echo", "hi")
		Expect(err).To(HaveOccurred(), out)
		out, err = kubectl(ctx, "attach", "web", "-n", "default", "-c", "app", "-q")
		Expect(err).To(HaveOccurred(), out)
		// kubectl port-forward opens the stream to the kubelet before it
		// listens: with no path it gives up on its own, never forwarding.
		pf := startKubectl(ctx, "port-forward", "pod/web", "-n", "default", "--address", "127.0.0.1", ":"+itoa(targetPort))
		Eventually(pf.done).WithTimeout(60*time.Second).Should(BeClosed(), "kubectl port-forward did not give up: %s", pf.output())
		Expect(pf.cmd.ProcessState.ExitCode()).To(BeNumerically(">", 0), "exited by itself, with an error: %s", pf.output())
		Expect(pf.output()).NotTo(ContainSubstring("Forwarding from"))
		// The server's output reaches us through os/exec's copying goroutine.
		Eventually(server.output).WithTimeout(5 * time.Second).Should(ContainSubstring("no agent connected for the node"))
		// Its address is in a direct CIDR, yet it is never dialled directly.
		Expect(connectRequests(healthURL, "agent", "no_agent")).To(BeNumerically(">=", noAgentBefore+4))
		ip := regexp.QuoteMeta(edge.kubeletIP)
		Expect(server.output()).NotTo(MatchRegexp(`"target":"%s:\d+"[^\n]*"route":"direct"|"route":"direct"[^\n]*"target":"%s:`, ip, ip))
		Expect(kubelet.logs.Load()).To(Equal(logsBefore))
		Expect(kubelet.execs.Load()).To(Equal(execsBefore))
		Expect(kubelet.attaches.Load()).To(Equal(attachesBefore))
		Expect(kubelet.portForwards.Load()).To(Equal(forwardsBefore))
		Expect(targetHits.Load()).To(Equal(hitsBefore))
		Eventually(func(g Gomega) {
			var te edgev1.TunnelEndpoint
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: teName}, &te)).To(Succeed())
			g.Expect(te.Status.ConnectedAgents).To(BeZero())
			g.Expect(te.Status.Agents).To(BeEmpty())
		}).WithContext(ctx).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	}, SpecTimeout(3*time.Minute))

	It("merges the reports of several replicas without clobbering", func(ctx SpecContext) {
		name := "tunnel-merge"
		Expect(k8s.Create(ctx, &edgev1.TunnelEndpoint{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		a := &tunnel.Reporter{Client: k8s, Name: name, Agents: fixedAgents{"n1", "n2"}, Interval: time.Hour}
		b := &tunnel.Reporter{Client: k8s, Name: name, Agents: fixedAgents{"n2", "n3"}, Interval: time.Hour}
		for _, r := range []*tunnel.Reporter{a, b, a, b} {
			r.Now = time.Now
			r.Refresh, r.TTL = time.Minute, 3*time.Minute
			Expect(r.ReportOnce(ctx)).To(Succeed())
		}
		var te edgev1.TunnelEndpoint
		Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &te)).To(Succeed())
		var nodes []string
		for _, e := range te.Status.Agents {
			nodes = append(nodes, e.Node)
		}
		Expect(nodes).To(ConsistOf("n1", "n2", "n3"))
		Expect(te.Status.ConnectedAgents).To(Equal(int32(3)))
		// Batched: the second round changed nothing, so it wrote nothing.
		Expect(a.Writes + b.Writes).To(Equal(2))
	})
})

type fixedAgents []string

func (f fixedAgents) Agents() []tunnel.AgentInfo {
	out := make([]tunnel.AgentInfo, 0, len(f))
	for _, n := range f {
		out = append(out, tunnel.AgentInfo{Node: n, Servers: 2, LastSeen: time.Now()})
	}
	return out
}
