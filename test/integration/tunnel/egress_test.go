package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// egressSuite is what the egress specs use of the reverse-tunnel suite; its
// BeforeAll fills it in.
type egressSuite struct {
	edge        *edgeNet
	kubelet     *kubeletStandIn // the edge node's
	healthURL   string
	connectAddr string
	egressCert  tls.Certificate
	tunnelCA    *certs.CA
	// server is the running tunnel-server (specs before restart it).
	server func() *proc
}

const (
	cloudNamespace = "cloud-egress"
	// The tunnel-server's CONNECT counter.
	connectRequestsMetric = "edgeunit_tunnel_connect_requests_total"
)

// egressSpecs are the specs of issue 14's egress policy: kube-apiserver's
// cluster egress reaches cloud-side webhooks, aggregated APIs and cloud
// kubelets dialled directly by the tunnel-server, edge kubelets through
// their agents, and nothing else. Called inside the suite's Ordered
// container, with the edge agent connected.
func egressSpecs(s *egressSuite) {
	Context("egress to the cloud side", Ordered, func() {
		var cloudCA *certs.CA
		connects := func(route, outcome string) float64 {
			GinkgoHelper()
			v, err := connectRequests(s.healthURL, route, outcome)
			Expect(err).NotTo(HaveOccurred())
			return v
		}
		// cloudCert is a serving certificate of the cloud CA.
		cloudCert := func(ip string, dnsNames ...string) tls.Certificate {
			GinkgoHelper()
			kp, err := cloudCA.Issue(certs.Request{CommonName: ip, DNSNames: dnsNames, IPs: []net.IP{net.ParseIP(ip)}, Lifetime: time.Hour, Server: true}, time.Now())
			Expect(err).NotTo(HaveOccurred())
			cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
			Expect(err).NotTo(HaveOccurred())
			return cert
		}

		BeforeAll(func(ctx SpecContext) {
			var err error
			cloudCA, _, err = certs.NewCA("cloud-backends", time.Hour, time.Now())
			Expect(err).NotTo(HaveOccurred())
			// For the cloud-side Services and the webhook's ConfigMaps. Without
			// kube-controller-manager it stays Terminating once deleted; nothing
			// else uses it.
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cloudNamespace}}
			Expect(k8s.Create(ctx, ns)).To(Succeed())
			deleteLater(ns)
		})

		It("calls a validating webhook on the cloud side through the tunnel-server, which can deny", func(ctx SpecContext) {
			const svcName, denial = "deny-webhook", "denied by the cloud-side webhook: deny=yes"
			hook := &denyWebhook{message: denial}
			port := serveTLS(s.edge.cloudBackendIP, cloudCert(s.edge.cloudBackendIP, svcName+"."+cloudNamespace+".svc"), hook)
			createCloudService(ctx, cloudNamespace, svcName, s.edge.cloudBackendIP, port)
			vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "cloud-egress-deny"},
				Webhooks: []admissionregistrationv1.ValidatingWebhook{{
					Name: "deny.cloud-egress.edgeunit.test",
					ClientConfig: admissionregistrationv1.WebhookClientConfig{
						Service:  &admissionregistrationv1.ServiceReference{Namespace: cloudNamespace, Name: svcName, Path: ptr.To("/validate"), Port: ptr.To[int32](443)},
						CABundle: cloudCA.CertPEM(),
					},
					Rules: []admissionregistrationv1.RuleWithOperations{{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
							Resources: []string{"configmaps"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
					}},
					// Only this spec's namespace: the rest of the suite never
					// meets the webhook.
					NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: cloudNamespace}},
					FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
					SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
					AdmissionReviewVersions: []string{"v1"},
					TimeoutSeconds:          ptr.To[int32](10),
				}},
			}
			directBefore := connects("direct", "ok")
			Expect(k8s.Create(ctx, vwc)).To(Succeed())
			deleteLater(vwc)

			configMap := func(name, deny string) *corev1.ConfigMap {
				return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cloudNamespace, Labels: map[string]string{"deny": deny}}}
			}
			// kube-apiserver learns of the webhook, the Service and its
			// EndpointSlice through informers: dry runs (the webhook has no side
			// effects, so it sees them) until it answers.
			Eventually(func() error {
				return k8s.Create(ctx, configMap("probe", "yes"), client.DryRunAll)
			}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(MatchError(ContainSubstring(denial)))

			err := k8s.Create(ctx, configMap("denied", "yes"))
			Expect(err).To(MatchError(ContainSubstring(`admission webhook "deny.cloud-egress.edgeunit.test" denied the request: ` + denial)))
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
			allowed := configMap("allowed", "no")
			Expect(k8s.Create(ctx, allowed)).To(Succeed())
			deleteLater(allowed)
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(configMap("denied", "")), &corev1.ConfigMap{})).To(Satisfy(apierrors.IsNotFound))
			// The webhook itself decided both, and kube-apiserver reached it
			// through the tunnel-server's direct route: the egress selector
			// sends it nowhere else.
			Expect(hook.decided()).To(Equal([]string{"denied=deny", "allowed=allow"}))
			Expect(connects("direct", "ok")).To(BeNumerically(">", directBefore))
		})

		It("proxies an aggregated API served on the cloud side through the tunnel-server", func(ctx SpecContext) {
			const svcName, group, version = "cloud-metrics", "metrics.edgeunit.test", "v1"
			path := "/apis/" + group + "/" + version
			discovery, err := json.Marshal(metav1.APIResourceList{
				TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
				GroupVersion: group + "/" + version,
				APIResources: []metav1.APIResource{{Name: "edgeloads", SingularName: "edgeload", Namespaced: true, Kind: "EdgeLoad", Verbs: metav1.Verbs{"get", "list"}}},
			})
			Expect(err).NotTo(HaveOccurred())
			var hits sync.Map // X-Remote-User -> true: the aggregator's own checks, and kubectl's request
			mux := http.NewServeMux()
			mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
				hits.Store(r.Header.Get("X-Remote-User"), true)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(discovery)
			})
			port := serveTLS(s.edge.cloudBackendIP, cloudCert(s.edge.cloudBackendIP, svcName+"."+cloudNamespace+".svc"), mux)
			createCloudService(ctx, cloudNamespace, svcName, s.edge.cloudBackendIP, port)

			directBefore := connects("direct", "ok")
			apiService := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "apiregistration.k8s.io/v1",
				"kind":       "APIService",
				"metadata":   map[string]any{"name": version + "." + group},
				"spec": map[string]any{
					"group": group, "version": version,
					"service":  map[string]any{"namespace": cloudNamespace, "name": svcName, "port": int64(443)},
					"caBundle": base64.StdEncoding.EncodeToString(cloudCA.CertPEM()),
					// Low priorities: it sorts after the built-in groups.
					"groupPriorityMinimum": int64(100), "versionPriority": int64(1),
				},
			}}
			Expect(k8s.Create(ctx, apiService)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, apiService))).To(Succeed())
				// Gone from the aggregator before the next spec, so no discovery
				// call meets a vanished backend.
				Eventually(func() error {
					_, err := kubectlStdout(ctx, "get", "--raw", path)
					return err
				}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(MatchError(ContainSubstring("NotFound")))
			}, NodeTimeout(time.Minute))

			// The aggregator's availability check is itself a call through the
			// egress selector.
			Eventually(func(g Gomega) {
				got := apiService.DeepCopy()
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(apiService), got)).To(Succeed())
				conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
				g.Expect(conditions).To(ContainElement(And(HaveKeyWithValue("type", "Available"), HaveKeyWithValue("status", "True"))))
			}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
			var out []byte
			Eventually(func() error {
				out, err = kubectlStdout(ctx, "get", "--raw", path)
				return err
			}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
			Expect(out).To(MatchJSON(discovery))
			// kubectl's own request reached the backend, as its user.
			_, proxied := hits.Load("tunnel-test-admin")
			Expect(proxied).To(BeTrue(), "kubectl's request did not reach the aggregated API server")
			Expect(connects("direct", "ok")).To(BeNumerically(">", directBefore))
		})

		It("serves kubectl logs of a pod on a cloud node by dialling its kubelet directly", func(ctx SpecContext) {
			const node, pod = "cloud-1", "cloud-web"
			kln, err := net.Listen("tcp", net.JoinHostPort(s.edge.cloudNodeIP, "0"))
			Expect(err).NotTo(HaveOccurred())
			cloudKubelet := startKubelet(kln, cloudCert(s.edge.cloudNodeIP), "hello from the cloud", func(int) (net.Conn, error) {
				return nil, fmt.Errorf("the cloud kubelet forwards no ports")
			})
			DeferCleanup(cloudKubelet.close)
			// Its address is in none of the direct CIDRs: the server dials it
			// because it is a node outside the Edge pools.
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{edgev1.LabelPoolType: strings.ToLower(string(edgev1.NodePoolCloud))}}}
			Expect(k8s.Create(ctx, n)).To(Succeed())
			deleteLater(n)
			n.Status = corev1.NodeStatus{
				Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: s.edge.cloudNodeIP}},
				DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kln.Addr().(*net.TCPAddr).Port)}},
			}
			Expect(k8s.Status().Update(ctx, n)).To(Succeed())
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: "default"},
				Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: ptr.To(false),
					Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
			}
			Expect(k8s.Create(ctx, p)).To(Succeed())
			deleteLater(p)

			directBefore, edgeLogsBefore := connects("direct", "ok"), s.kubelet.logs.Load()
			var out string
			// Until the server's Node informer has the node: refused before.
			Eventually(func() error {
				out, err = kubectl(ctx, "logs", pod, "-n", "default")
				return err
			}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
			Expect(out).To(ContainSubstring("hello from the cloud default/cloud-web/app line 2"))
			Expect(cloudKubelet.logs.Load()).To(BeNumerically(">", 0))
			Expect(s.kubelet.logs.Load()).To(Equal(edgeLogsBefore))
			Expect(connects("direct", "ok")).To(BeNumerically(">", directBefore))
		})

		It("still reaches the edge node's kubelet through its agent, its address in a direct CIDR notwithstanding", func(ctx SpecContext) {
			agentBefore, logsBefore, execsBefore := connects("agent", "ok"), s.kubelet.logs.Load(), s.kubelet.execs.Load()
			// Only the agent reaches this kubelet.
			out, err := kubectl(ctx, "logs", "web", "-n", "default")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("hello from the edge default/web/app line 2"))
			Expect(s.kubelet.logs.Load()).To(BeNumerically(">", logsBefore))
			// kube-apiserver keeps its connection to a kubelet for plain
			// requests, so those logs may have ridden a tunnel opened by an
			// earlier spec; an exec upgrades its connection, which is never
			// reused: a CONNECT of its own.
			out, err = kubectl(ctx, "exec", "web", "-n", "default", "--", "echo", "still", "edge")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(strings.TrimSpace(out)).To(Equal("still edge"))
			Expect(s.kubelet.execs.Load()).To(BeNumerically(">", execsBefore))
			Expect(connects("agent", "ok")).To(BeNumerically(">", agentBefore))
		})

		It("refuses a destination off the egress policy without dialling it", func() {
			// An address that is no node's, no pod's and in no direct CIDR (the
			// agent's uplink: were it dialled after all, the packets would stay
			// on the test's veth; not TEST-NET-1, which some sandboxes use for
			// their own network), a loopback address outside the direct CIDRs,
			// a name that is no node's.
			targets := []string{net.JoinHostPort(s.edge.uplinkEdge, "443"), "127.0.78.1:80", "not-a-node.invalid:443"}
			refusedBefore := connects("refused", "forbidden")
			unreachableBefore := connects("direct", "unreachable")
			for _, target := range targets {
				status, body, took := rawConnect(s, target)
				Expect(status).To(Equal(http.StatusForbidden), "CONNECT %s: %s", target, body)
				Expect(body).To(ContainSubstring("off the egress policy"))
				// No dial: one would fail with 502 Bad Gateway (and be counted
				// unreachable below), or hang until the server's dial timeout.
				Expect(took).To(BeNumerically("<", 5*time.Second), "CONNECT %s", target)
				Eventually(s.server().output).WithTimeout(5 * time.Second).Should(MatchRegexp(
					`"msg":"Refused CONNECT: destination off the egress policy".*"target":"%s"`, regexp.QuoteMeta(target)))
			}
			Expect(connects("refused", "forbidden")).To(Equal(refusedBefore + float64(len(targets))))
			Expect(connects("direct", "unreachable")).To(Equal(unreachableBefore))
		})
	})
}

// denyWebhook is a validating admission webhook that denies objects
// labelled deny=yes and records its decisions on real (not dry-run)
// requests.
type denyWebhook struct {
	message string
	mu      sync.Mutex
	real    []string // name=allow|deny
}

func (d *denyWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "want an AdmissionReview request", http.StatusBadRequest)
		return
	}
	var obj metav1.PartialObjectMetadata
	if err := json.Unmarshal(review.Request.Object.Raw, &obj); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: obj.Labels["deny"] != "yes"}
	decision := "allow"
	if !resp.Allowed {
		decision = "deny"
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: d.message}
	}
	if !ptr.Deref(review.Request.DryRun, false) {
		d.mu.Lock()
		d.real = append(d.real, obj.Name+"="+decision)
		d.mu.Unlock()
	}
	review.Request, review.Response = nil, resp
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

func (d *denyWebhook) decided() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.real...)
}

// serveTLS serves h over TLS on a free port of ip until the spec ends, and
// returns the port.
func serveTLS(ip string, cert tls.Certificate, h http.Handler) int {
	GinkgoHelper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	DeferCleanup(srv.Close)
	return ln.Addr().(*net.TCPAddr).Port
}

// createCloudService creates a Service without a selector, port 443, and
// the EndpointSlice a controller would write for it, at ip:port; both go
// when the spec ends.
func createCloudService(ctx context.Context, namespace, name, ip string, port int) {
	GinkgoHelper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(int32(port))}}},
	}
	Expect(k8s.Create(ctx, svc)).To(Succeed())
	deleteLater(svc)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	Expect(k8s.Create(ctx, slice)).To(Succeed())
	deleteLater(slice)
}

// deleteLater deletes obj when the spec ends, at once (no kubelet finishes
// a pod here).
func deleteLater(obj client.Object) {
	DeferCleanup(func(ctx SpecContext) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj, client.GracePeriodSeconds(0)))).To(Succeed())
	}, NodeTimeout(30*time.Second))
}

// rawConnect sends one CONNECT for target to the tunnel-server's CONNECT
// listener, as kube-apiserver's egress selector does, and returns the
// status, body and how long the answer took.
func rawConnect(s *egressSuite, target string) (int, string, time.Duration) {
	GinkgoHelper()
	conn, err := tls.Dial("tcp", s.connectAddr, &tls.Config{Certificates: []tls.Certificate{s.egressCert}, RootCAs: s.tunnelCA.Pool()})
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	_, err = fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(body), time.Since(start)
}

// kubectlStdout runs kubectl to completion and returns its standard output;
// an error carries its standard error.
func kubectlStdout(ctx context.Context, args ...string) ([]byte, error) {
	cmd := kubectlCommand(ctx, append([]string{"--request-timeout", "20s"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// connectRequests scrapes the tunnel-server's /metrics at healthURL for its
// CONNECT counter with route and outcome; 0 when never counted.
func connectRequests(healthURL, route, outcome string) (float64, error) {
	resp, err := http.Get(healthURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %s", healthURL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("parsing %s/metrics: %w", healthURL, err)
	}
	for _, m := range families[connectRequestsMetric].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["route"] == route && labels["outcome"] == outcome {
			return m.GetCounter().GetValue(), nil
		}
	}
	return 0, nil
}
