package tunnelendpoint_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/certificates"
	"github.com/edgeunit/edgeunit/controllers/tunnelendpoint"
	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/testenv/suite"
	"github.com/edgeunit/edgeunit/internal/tunnel"
)

var uniq = suite.Uniq

func newEndpoint(name string, mutate ...func(*edgev1.TunnelEndpoint)) *edgev1.TunnelEndpoint {
	te := &edgev1.TunnelEndpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: edgev1.TunnelEndpointSpec{
			Replicas: ptrTo(int32(2)),
			Service:  edgev1.TunnelExposure{Type: "ClusterIP", Addresses: []string{"203.0.113.5", "tunnel.example.com"}},
		},
	}
	for _, m := range mutate {
		m(te)
	}
	return te
}

func createEndpoint(ctx context.Context, te *edgev1.TunnelEndpoint) *edgev1.TunnelEndpoint {
	GinkgoHelper()
	Expect(k8s.Create(ctx, te)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, te))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(te), &edgev1.TunnelEndpoint{}))
		}).Should(BeTrue(), "TunnelEndpoint %s never went away", te.Name)
	})
	return te
}

// getEndpoint reads an endpoint; polled by Eventually, a failed read is
// retried. Outside one, call it with Default.
func getEndpoint(ctx context.Context, name string) func(Gomega) *edgev1.TunnelEndpoint {
	return func(g Gomega) *edgev1.TunnelEndpoint {
		te := &edgev1.TunnelEndpoint{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, te)).To(Succeed())
		return te
	}
}

func updateEndpoint(ctx context.Context, name string, change func(*edgev1.TunnelEndpoint)) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		te := &edgev1.TunnelEndpoint{}
		if err := k8s.Get(ctx, types.NamespacedName{Name: name}, te); err != nil {
			return err
		}
		change(te)
		return k8s.Update(ctx, te)
	})).To(Succeed())
}

// settled waits until the controller is done with the endpoint's current
// generation and returns the endpoint: the finalizer is on; the status
// (observedGeneration, addresses and each condition the controller writes,
// Ready included) is computed for that generation, with the serving
// certificate issued; the manager's cache, which the controller and probe
// read, holds the version the API serves; and no pass is running. A pass
// that starts after this sees what the API shows, so neither a probe call
// nor a "no writes" check races a pass still working from an older state.
func settled(ctx context.Context, name string) *edgev1.TunnelEndpoint {
	GinkgoHelper()
	var te *edgev1.TunnelEndpoint
	Eventually(func(g Gomega) {
		te = getEndpoint(ctx, name)(g)
		g.Expect(te.Finalizers).To(ContainElement(tunnelendpoint.Finalizer))
		g.Expect(te.Status.ObservedGeneration).To(Equal(te.Generation), "status.observedGeneration")
		for _, t := range []string{edgev1.ConditionServersReady, edgev1.ConditionCertificateReady, edgev1.ConditionReady} {
			g.Expect(condition(te, t).ObservedGeneration).To(Equal(te.Generation), "observedGeneration of condition %s", t)
		}
		g.Expect(condition(te, edgev1.ConditionCertificateReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(te.Status.Addresses).NotTo(BeEmpty())
		inCache := &edgev1.TunnelEndpoint{}
		g.Expect(cached.Get(ctx, client.ObjectKeyFromObject(te), inCache)).To(Succeed())
		g.Expect(inCache.ResourceVersion).To(Equal(te.ResourceVersion), "the cache lags behind the API")
		// The controller keeps no memory of its writes: a pass that read
		// the endpoint before the cache had its last status write computes
		// that status again, and writes it with new transition times.
		suite.Idle(g)
	}).Should(Succeed())
	return te
}

// reconcileWithProbe runs a pass of the probe reconciler, retrying a pass
// that fails (a write racing the running controller's, a cache that has
// not caught up), and returns the result of the one that succeeded.
func reconcileWithProbe(ctx context.Context, name string) reconcile.Result {
	GinkgoHelper()
	var res reconcile.Result
	Eventually(func(g Gomega) {
		var err error
		res, err = probe.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
		g.Expect(err).NotTo(HaveOccurred())
	}).Should(Succeed())
	return res
}

func get[T client.Object](ctx context.Context, obj T, name string) func() (T, error) {
	return func() (T, error) {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj)
		return obj, err
	}
}

// servingCert returns the certificate in the endpoint's Secret.
func servingCert(ctx context.Context, name string) func() (*x509.Certificate, error) {
	return func() (*x509.Certificate, error) {
		sec := &corev1.Secret{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: tunnelendpoint.SecretName(name)}, sec); err != nil {
			return nil, err
		}
		return certs.ParseCert(sec.Data[corev1.TLSCertKey])
	}
}

// caPool reads the operator CA; g fails (and, polled, retries) when it
// cannot. Outside Eventually, pass Default.
func caPool(ctx context.Context, g Gomega) *x509.CertPool {
	GinkgoHelper()
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: certificates.CASecret}, sec)).To(Succeed())
	ca, err := certs.ParseCert(sec.Data[corev1.TLSCertKey])
	g.Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// verifiesFor checks the certificate against the operator CA for a name.
// Failing to read the CA fails g, never the verification: a check that the
// certificate does not verify cannot pass for want of the CA.
func verifiesFor(ctx context.Context, g Gomega, cert *x509.Certificate, name string) error {
	_, err := cert.Verify(x509.VerifyOptions{
		DNSName:     name,
		Roots:       caPool(ctx, g),
		CurrentTime: clk.Now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// setDeploymentStatus plays the Deployment controller, which envtest lacks.
func setDeploymentStatus(ctx context.Context, name string, available int32) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := &appsv1.Deployment{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: tunnelendpoint.DeploymentName(name)}, d); err != nil {
			return err
		}
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: *d.Spec.Replicas, UpdatedReplicas: *d.Spec.Replicas,
			ReadyReplicas: available, AvailableReplicas: available, UnavailableReplicas: *d.Spec.Replicas - available,
		}
		return k8s.Status().Update(ctx, d)
	})).To(Succeed())
}

func condition(te *edgev1.TunnelEndpoint, t string) metav1.Condition {
	if c := meta.FindStatusCondition(te.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

var _ = Describe("TunnelEndpoint controller", func() {
	It("has the servers dial the cluster's Service ranges and spec.egress.direct themselves, and reports them", func(ctx SpecContext) {
		// The apiserver's own ServiceCIDR (envtest's --service-cluster-ip-range).
		var cidrs networkingv1.ServiceCIDRList
		Expect(k8s.List(ctx, &cidrs)).To(Succeed())
		var service []string
		for _, c := range cidrs.Items {
			service = append(service, c.Spec.CIDRs...)
		}
		Expect(service).NotTo(BeEmpty())
		te := createEndpoint(ctx, newEndpoint(uniq("egress"), func(te *edgev1.TunnelEndpoint) {
			te.Spec.Egress.Direct = []string{"172.31.0.0/16"}
		}))
		want := append([]string{"172.31.0.0/16"}, service...)
		Eventually(func(g Gomega) {
			d, err := get(ctx, &appsv1.Deployment{}, tunnelendpoint.DeploymentName(te.Name))()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--direct-cidrs=" + strings.Join(want, ",")))
			cur := &edgev1.TunnelEndpoint{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(te), cur)).To(Succeed())
			g.Expect(cur.Status.DirectCIDRs).To(Equal(want))
		}).Should(Succeed())

		By("without the Service ranges, only the listed CIDRs")
		Eventually(func() error {
			cur := &edgev1.TunnelEndpoint{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(te), cur); err != nil {
				return err
			}
			cur.Spec.Egress.ServiceCIDRs = new(false)
			return k8s.Update(ctx, cur)
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			d, err := get(ctx, &appsv1.Deployment{}, tunnelendpoint.DeploymentName(te.Name))()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--direct-cidrs=172.31.0.0/16"))
		}).Should(Succeed())

		By("a CIDR that does not parse is refused with the field named")
		bad := newEndpoint(uniq("bad-egress"), func(te *edgev1.TunnelEndpoint) { te.Spec.Egress.Direct = []string{"10.0.0.1"} })
		err := k8s.Create(ctx, bad)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.egress.direct[0]"))
	})

	It("creates the Deployment, both Services and the serving Secret, owned by the endpoint", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("children"), func(te *edgev1.TunnelEndpoint) {
			te.Spec.Ports = edgev1.TunnelPorts{Agent: 9100, Connect: 9101, Passthrough: 9102}
		}))
		owned := func(obj client.Object) {
			GinkgoHelper()
			refs := obj.GetOwnerReferences()
			Expect(refs).To(HaveLen(1))
			Expect(refs[0].Kind).To(Equal("TunnelEndpoint"))
			Expect(refs[0].Name).To(Equal(te.Name))
			Expect(*refs[0].Controller).To(BeTrue())
			Expect(obj.GetLabels()).To(HaveKeyWithValue(tunnelendpoint.LabelTunnelEndpoint, te.Name))
		}

		d := &appsv1.Deployment{}
		Eventually(func() error {
			_, err := get(ctx, d, tunnelendpoint.DeploymentName(te.Name))()
			return err
		}).Should(Succeed())
		owned(d)
		Expect(*d.Spec.Replicas).To(Equal(int32(2)))
		c := d.Spec.Template.Spec.Containers[0]
		Expect(c.Image).To(Equal("example.com/edgeunit:test"))
		Expect(c.Args).To(ContainElements("--agent-address=:9100", "--connect-address=:9101", "--passthrough-address=:9102", "--tunnel-endpoint="+te.Name))
		Expect(d.Spec.Template.Spec.Volumes[0].Secret.SecretName).To(Equal(tunnelendpoint.SecretName(te.Name)))

		svc, err := get(ctx, &corev1.Service{}, tunnelendpoint.ServiceName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		owned(svc)
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
		Expect(svc.Spec.Ports).To(ConsistOf(
			HaveField("Name", "agent"), HaveField("Name", "connect"), HaveField("Name", "passthrough")))

		hl, err := get(ctx, &corev1.Service{}, tunnelendpoint.HeadlessServiceName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		owned(hl)
		Expect(hl.Spec.ClusterIP).To(Equal(corev1.ClusterIPNone))
		Expect(hl.Spec.PublishNotReadyAddresses).To(BeTrue())

		sec, err := get(ctx, &corev1.Secret{}, tunnelendpoint.SecretName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		owned(sec)
		Expect(sec.Type).To(Equal(corev1.SecretTypeTLS))
		Expect(sec.Data).To(HaveKey(corev1.TLSCertKey))
		Expect(sec.Data).To(HaveKey(corev1.TLSPrivateKeyKey))
		Expect(sec.Data).To(HaveKey(corev1.ServiceAccountRootCAKey))

		Eventually(func(g Gomega) {
			got := getEndpoint(ctx, te.Name)(g)
			g.Expect(got.Finalizers).To(ContainElement(tunnelendpoint.Finalizer))
			g.Expect(got.Status.Addresses).To(ConsistOf("203.0.113.5:9100", "tunnel.example.com:9100"))
			g.Expect(condition(got, edgev1.ConditionCertificateReady).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(condition(got, edgev1.ConditionServersReady).Status).To(Equal(metav1.ConditionFalse))
			g.Expect(condition(got, edgev1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		}).Should(Succeed())
	})

	It("issues a serving certificate that verifies against the CA for every name", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("sans")))
		svc := &corev1.Service{}
		Eventually(func() error {
			_, err := get(ctx, svc, tunnelendpoint.ServiceName(te.Name))()
			return err
		}).Should(Succeed())
		Expect(svc.Spec.ClusterIP).NotTo(BeEmpty())

		base, headless := tunnelendpoint.ServiceName(te.Name), tunnelendpoint.HeadlessServiceName(te.Name)
		names := []string{
			base, base + "." + namespace, base + "." + namespace + ".svc", base + "." + namespace + ".svc.cluster.local",
			headless + "." + namespace + ".svc", "10-0-0-7." + headless + "." + namespace + ".svc",
			svc.Spec.ClusterIP, "203.0.113.5", "tunnel.example.com",
		}
		Eventually(func(g Gomega) {
			cert, err := servingCert(ctx, te.Name)()
			g.Expect(err).NotTo(HaveOccurred())
			for _, n := range names {
				g.Expect(verifiesFor(ctx, g, cert, n)).To(Succeed(), "name %s", n)
			}
			g.Expect(verifiesFor(ctx, g, cert, "other.example.com")).NotTo(Succeed())
		}).Should(Succeed())
	})

	It("follows spec.service.type", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("type")))
		svcType := func() (corev1.ServiceType, error) {
			svc, err := get(ctx, &corev1.Service{}, tunnelendpoint.ServiceName(te.Name))()
			return svc.Spec.Type, err
		}
		Eventually(svcType).Should(Equal(corev1.ServiceTypeClusterIP))

		updateEndpoint(ctx, te.Name, func(te *edgev1.TunnelEndpoint) { te.Spec.Service.Type = "NodePort" })
		Eventually(svcType).Should(Equal(corev1.ServiceTypeNodePort))
		svc, err := get(ctx, &corev1.Service{}, tunnelendpoint.ServiceName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		var nodePort int32
		for _, p := range svc.Spec.Ports {
			if p.Name == tunnelendpoint.PortAgent {
				nodePort = p.NodePort
			}
		}
		Expect(nodePort).NotTo(BeZero())
		Eventually(func(g Gomega) []string { return getEndpoint(ctx, te.Name)(g).Status.Addresses }).Should(
			ConsistOf(fmt.Sprintf("203.0.113.5:%d", nodePort), fmt.Sprintf("tunnel.example.com:%d", nodePort)))

		updateEndpoint(ctx, te.Name, func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service.Type = "LoadBalancer"
			te.Spec.Service.Annotations = map[string]string{"lb.example.com/scheme": "internet-facing"}
		})
		Eventually(svcType).Should(Equal(corev1.ServiceTypeLoadBalancer))
		svc, err = get(ctx, &corev1.Service{}, tunnelendpoint.ServiceName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		Expect(svc.Annotations).To(HaveKeyWithValue("lb.example.com/scheme", "internet-facing"))

		// A load balancer comes up (no cloud controller here: the test
		// writes its status): its IP joins the addresses and the
		// certificate.
		// A pass still applying the Service may bump its resourceVersion.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			lb := &corev1.Service{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(svc), lb); err != nil {
				return err
			}
			lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.77"}}
			return k8s.Status().Update(ctx, lb)
		})).To(Succeed())
		Eventually(func(g Gomega) []string { return getEndpoint(ctx, te.Name)(g).Status.Addresses }).Should(ContainElement("198.51.100.77:10262"))
		Eventually(func(g Gomega) {
			cert, err := servingCert(ctx, te.Name)()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(verifiesFor(ctx, g, cert, "198.51.100.77")).To(Succeed())
		}).Should(Succeed())

		updateEndpoint(ctx, te.Name, func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service.Type = "ClusterIP"
			te.Spec.Service.Annotations = nil
		})
		Eventually(svcType).Should(Equal(corev1.ServiceTypeClusterIP))
		svc, err = get(ctx, &corev1.Service{}, tunnelendpoint.ServiceName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		Expect(svc.Annotations).NotTo(HaveKey("lb.example.com/scheme"))
	})

	It("re-issues the certificate and updates the addresses when spec.service.addresses change", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("addresses")))
		var first *x509.Certificate
		Eventually(func() error {
			var err error
			first, err = servingCert(ctx, te.Name)()
			return err
		}).Should(Succeed())

		updateEndpoint(ctx, te.Name, func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service.Addresses = []string{"2001:db8::42", "edge.example.org"}
		})
		Eventually(func(g Gomega) {
			cert, err := servingCert(ctx, te.Name)()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cert.SerialNumber).NotTo(Equal(first.SerialNumber))
			g.Expect(verifiesFor(ctx, g, cert, "2001:db8::42")).To(Succeed())
			g.Expect(verifiesFor(ctx, g, cert, "edge.example.org")).To(Succeed())
			g.Expect(verifiesFor(ctx, g, cert, "tunnel.example.com")).NotTo(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) []string { return getEndpoint(ctx, te.Name)(g).Status.Addresses }).Should(
			ConsistOf("[2001:db8::42]:10262", "edge.example.org:10262"))
	})

	It("renews the certificate at two thirds of its lifetime, and requeues for that time", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("rotate"), func(te *edgev1.TunnelEndpoint) {
			te.Spec.CertificateLifetime = &metav1.Duration{Duration: 3 * time.Hour}
		}))
		// The running controller is done with the endpoint (its certificate
		// issued) before the probe runs a pass of its own.
		settled(ctx, te.Name)
		var first *x509.Certificate
		Eventually(func() error {
			var err error
			first, err = servingCert(ctx, te.Name)()
			return err
		}).Should(Succeed())
		Expect(first.NotAfter.Sub(first.NotBefore)).To(BeNumerically("<=", 3*time.Hour+10*time.Minute))
		renewAt := first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) * 2 / 3)

		// The reconciler asks to come back exactly at the renewal time.
		res := reconcileWithProbe(ctx, te.Name)
		Expect(res.RequeueAfter).To(BeNumerically("~", renewAt.Sub(clk.Now()), time.Second))
		cert, err := servingCert(ctx, te.Name)()
		Expect(err).NotTo(HaveOccurred())
		Expect(cert.SerialNumber).To(Equal(first.SerialNumber), "a pass before the renewal time must keep the certificate")

		// Time passes the renewal point; the requeue (played here by the
		// direct call, not to wait hours) renews.
		clk.SetTime(renewAt.Add(time.Minute))
		res = reconcileWithProbe(ctx, te.Name)
		renewed, err := servingCert(ctx, te.Name)()
		Expect(err).NotTo(HaveOccurred())
		Expect(renewed.SerialNumber).NotTo(Equal(first.SerialNumber))
		Expect(renewed.NotAfter).To(BeTemporally(">", first.NotAfter))
		Expect(verifiesFor(ctx, Default, renewed, tunnelendpoint.ServiceName(te.Name))).To(Succeed())
		newRenewAt := renewed.NotBefore.Add(renewed.NotAfter.Sub(renewed.NotBefore) * 2 / 3)
		Expect(res.RequeueAfter).To(BeNumerically("~", newRenewAt.Sub(clk.Now()), time.Second))
		Expect(newRenewAt.Sub(clk.Now())).To(BeNumerically("~", 2*time.Hour, 5*time.Minute))

		// The running controller, prodded by any event, renews on its own
		// too once its clock passes the new renewal time.
		clk.SetTime(newRenewAt.Add(time.Minute))
		updateEndpoint(ctx, te.Name, func(te *edgev1.TunnelEndpoint) { te.Spec.Replicas = ptrTo(int32(3)) })
		Eventually(func(g Gomega) {
			cert, err := servingCert(ctx, te.Name)()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cert.SerialNumber).NotTo(Equal(renewed.SerialNumber))
		}).Should(Succeed())
		Eventually(func(g Gomega) string {
			return condition(getEndpoint(ctx, te.Name)(g), edgev1.ConditionCertificateReady).Reason
		}).Should(Equal(edgev1.ReasonIssued))
	})

	It("keeps kube-apiserver's egress client certificate, the only client the CONNECT listener admits", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("egress")))
		var egress *corev1.Secret
		Eventually(func() error {
			var err error
			egress, err = get(ctx, &corev1.Secret{}, tunnelendpoint.EgressSecretName(te.Name))()
			return err
		}).Should(Succeed())
		Expect(egress.Name).To(Equal("edgeunit-tunnel-" + te.Name + "-egress"))
		Expect(egress.Type).To(Equal(corev1.SecretTypeTLS))
		Expect(egress.OwnerReferences).To(ConsistOf(SatisfyAll(HaveField("Kind", "TunnelEndpoint"), HaveField("Name", te.Name))))
		ca := &corev1.Secret{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: certificates.CASecret}, ca)).To(Succeed())
		Expect(egress.Data[corev1.ServiceAccountRootCAKey]).To(Equal(ca.Data[corev1.TLSCertKey]), "ca.crt verifies the servers")
		Expect(egress.Data).NotTo(HaveKey("ca.key"))

		cert, err := certs.ParseCert(egress.Data[corev1.TLSCertKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(cert.Subject.CommonName).To(Equal("edgeunit:kube-apiserver-egress"))
		Expect(cert.Subject.Organization).To(Equal([]string{certs.EgressOrganization}))
		Expect(cert.ExtKeyUsage).To(Equal([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}))
		Expect(cert.DNSNames).To(BeEmpty())
		Expect(cert.NotAfter.Sub(cert.NotBefore)).To(Equal(tunnelendpoint.DefaultEgressCertificateLifetime+5*time.Minute),
			"kube-apiserver reads it only at start: it lives a year")
		_, err = cert.Verify(x509.VerifyOptions{Roots: caPool(ctx, Default), CurrentTime: clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		Expect(err).NotTo(HaveOccurred())

		By("a CONNECT listener built from the serving Secret admits the egress certificate and refuses an agent's")
		serving, err := get(ctx, &corev1.Secret{}, tunnelendpoint.SecretName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		addr := connectListener(serving)
		egressPair, err := tls.X509KeyPair(egress.Data[corev1.TLSCertKey], egress.Data[corev1.TLSPrivateKeyKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(connectStatus(addr, egress.Data[corev1.ServiceAccountRootCAKey], egressPair)).To(Equal(http.StatusForbidden),
			"admitted: the CONNECT reaches the router, which finds the destination off the egress policy")
		caObj, err := certs.LoadCA(certs.KeyPair{CertPEM: ca.Data[corev1.TLSCertKey], KeyPEM: ca.Data[corev1.TLSPrivateKeyKey]})
		Expect(err).NotTo(HaveOccurred())
		agentKP, err := caObj.Issue(certs.TunnelAgentRequest("edge-1", time.Hour), clk.Now())
		Expect(err).NotTo(HaveOccurred())
		agentPair, err := tls.X509KeyPair(agentKP.CertPEM, agentKP.KeyPEM)
		Expect(err).NotTo(HaveOccurred())
		_, err = connectStatus(addr, egress.Data[corev1.ServiceAccountRootCAKey], agentPair)
		Expect(err).To(HaveOccurred(), "an agent certificate must not open CONNECT tunnels")

		By("keeping it across passes, and re-issuing it when its Secret is deleted")
		settled(ctx, te.Name)
		reconcileWithProbe(ctx, te.Name)
		again, err := get(ctx, &corev1.Secret{}, tunnelendpoint.EgressSecretName(te.Name))()
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Data[corev1.TLSCertKey]).To(Equal(egress.Data[corev1.TLSCertKey]))
		Expect(k8s.Delete(ctx, again)).To(Succeed())
		Eventually(func(g Gomega) {
			s, err := get(ctx, &corev1.Secret{}, tunnelendpoint.EgressSecretName(te.Name))()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.Data[corev1.TLSCertKey]).NotTo(BeEmpty())
			g.Expect(s.Data[corev1.TLSCertKey]).NotTo(Equal(egress.Data[corev1.TLSCertKey]))
		}).Should(Succeed())
	})

	It("reports ready servers from the Deployment's status", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("ready")))
		Eventually(func() error {
			_, err := get(ctx, &appsv1.Deployment{}, tunnelendpoint.DeploymentName(te.Name))()
			return err
		}).Should(Succeed())

		setDeploymentStatus(ctx, te.Name, 1)
		Eventually(func(g Gomega) {
			got := getEndpoint(ctx, te.Name)(g)
			g.Expect(got.Status.ReadyServers).To(Equal(int32(1)))
			g.Expect(condition(got, edgev1.ConditionServersReady)).To(And(
				HaveField("Status", metav1.ConditionFalse), HaveField("Reason", edgev1.ReasonProgressing)))
			g.Expect(condition(got, edgev1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		}).Should(Succeed())

		setDeploymentStatus(ctx, te.Name, 2)
		Eventually(func(g Gomega) {
			got := getEndpoint(ctx, te.Name)(g)
			g.Expect(got.Status.ReadyServers).To(Equal(int32(2)))
			g.Expect(condition(got, edgev1.ConditionServersReady)).To(And(
				HaveField("Status", metav1.ConditionTrue), HaveField("Reason", edgev1.ReasonAvailable),
				HaveField("ObservedGeneration", got.Generation)))
			g.Expect(condition(got, edgev1.ConditionReady)).To(And(
				HaveField("Status", metav1.ConditionTrue), HaveField("Reason", edgev1.ReasonComponentsReady)))
		}).Should(Succeed())
	})

	It("leaves the agent fields the servers write alone", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("agents")))
		// Not only observedGeneration: the whole status, so that no pass of
		// the controller is still due to write when the report comes in.
		Expect(settled(ctx, te.Name).Status.ObservedGeneration).To(Equal(int64(1)))

		// A server reports its agents the way internal/tunnel's Reporter
		// does: a merge patch of the status subresource.
		seen := metav1.NewTime(time.Now().Truncate(time.Second))
		report := fmt.Sprintf(`{"status":{"connectedAgents":5,"agents":[{"node":"edge-1","servers":2,"lastSeen":%q}]}}`, seen.UTC().Format(time.RFC3339))
		Expect(k8s.Status().Patch(ctx, &edgev1.TunnelEndpoint{ObjectMeta: metav1.ObjectMeta{Name: te.Name}}, client.RawPatch(types.MergePatchType, []byte(report)))).To(Succeed())

		// The report alone does not make the controller write.
		rv := getEndpoint(ctx, te.Name)(Default).ResourceVersion
		Consistently(func(g Gomega) string { return getEndpoint(ctx, te.Name)(g).ResourceVersion }, 2*time.Second).Should(Equal(rv))

		// Passes that do write status (a spec change, servers becoming
		// available) keep the report.
		updateEndpoint(ctx, te.Name, func(te *edgev1.TunnelEndpoint) { te.Spec.Service.Addresses = []string{"203.0.113.6"} })
		Eventually(func(g Gomega) int64 { return getEndpoint(ctx, te.Name)(g).Status.ObservedGeneration }).Should(Equal(int64(2)))
		setDeploymentStatus(ctx, te.Name, 2)
		Eventually(func(g Gomega) {
			got := getEndpoint(ctx, te.Name)(g)
			g.Expect(got.Status.ReadyServers).To(Equal(int32(2)))
			g.Expect(got.Status.Addresses).To(ConsistOf("203.0.113.6:10262"))
			g.Expect(got.Status.ConnectedAgents).To(Equal(int32(5)))
			g.Expect(got.Status.Agents).To(ConsistOf(And(HaveField("Node", "edge-1"), HaveField("Servers", int32(2)))))
		}).Should(Succeed())
		got := getEndpoint(ctx, te.Name)(Default)
		Expect(got.Status.ConnectedAgents).To(Equal(int32(5)))
		Expect(got.Status.Agents).To(HaveLen(1))
	})

	It("deletes its children before letting the endpoint go", func(ctx SpecContext) {
		te := createEndpoint(ctx, newEndpoint(uniq("delete")))
		kids := []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tunnelendpoint.DeploymentName(te.Name)}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tunnelendpoint.ServiceName(te.Name)}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tunnelendpoint.HeadlessServiceName(te.Name)}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tunnelendpoint.SecretName(te.Name)}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tunnelendpoint.EgressSecretName(te.Name)}},
		}
		for _, k := range kids {
			Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(k), k) }).Should(Succeed())
		}
		Eventually(func(g Gomega) []string { return getEndpoint(ctx, te.Name)(g).Finalizers }).Should(ContainElement(tunnelendpoint.Finalizer))

		Expect(k8s.Delete(ctx, te)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(te), &edgev1.TunnelEndpoint{}))
		}).Should(BeTrue())
		for _, k := range kids {
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(k), k))).To(BeTrue(), "%T %s still there", k, k.GetName())
		}
		// The operator CA stays: other endpoints and agents use it.
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: certificates.CASecret}, &corev1.Secret{})).To(Succeed())
	})

	DescribeTable("rejects bad manifests, naming the field",
		func(ctx SpecContext, mutate func(*edgev1.TunnelEndpoint), field, message string) {
			te := newEndpoint(uniq("invalid"), mutate)
			err := k8s.Create(ctx, te)
			if err == nil {
				_ = k8s.Delete(ctx, te)
			}
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("ClusterIP without addresses", func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service = edgev1.TunnelExposure{Type: "ClusterIP", Addresses: []string{}}
		}, "spec.service", "addresses are required when type is ClusterIP"),
		Entry("duplicate ports", func(te *edgev1.TunnelEndpoint) {
			te.Spec.Ports = edgev1.TunnelPorts{Agent: 9000, Connect: 9000, Passthrough: 9001}
		}, "spec.ports", "ports must differ"),
		Entry("certificateLifetime of 10m", func(te *edgev1.TunnelEndpoint) {
			te.Spec.CertificateLifetime = &metav1.Duration{Duration: 10 * time.Minute}
		}, "spec.certificateLifetime", "between 1h and 8760h"),
		Entry("an unknown service type", func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service.Type = "ExternalName"
		}, "spec.service.type", "Unsupported value"),
		Entry("an address that is not a host name or IP", func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service.Addresses = []string{"tunnel.example.com", "not a host!"}
		}, "spec.service.addresses[1]", "should match"),
		Entry("an address with a port", func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service.Addresses = []string{"tunnel.example.com:443"}
		}, "spec.service.addresses[0]", "should match"),
	)

	It("accepts DNS names and IPv4 and IPv6 addresses", func(ctx SpecContext) {
		te := newEndpoint(uniq("addresses"), func(te *edgev1.TunnelEndpoint) {
			te.Spec.Service.Addresses = []string{"tunnel.example.com", "192.0.2.10", "fd00::10", "::ffff:192.0.2.11", "2001:db8:0:0:0:0:0:1"}
		})
		Expect(k8s.Create(ctx, te)).To(Succeed())
		Expect(k8s.Delete(ctx, te)).To(Succeed())
	})
})

// connectListener serves CONNECT on loopback as a tunnel-server replica
// would with the serving Secret mounted and its default flags, and returns
// its address.
func connectListener(serving *corev1.Secret) string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	file := func(key string) string {
		path := filepath.Join(dir, key)
		Expect(os.WriteFile(path, serving.Data[key], 0o600)).To(Succeed())
		return path
	}
	var o tunnel.ServerOptions
	o.BindFlags(flag.NewFlagSet("tunnel-server", flag.ContinueOnError))
	cfg, err := tunnel.ConnectServerTLS(file(corev1.TLSCertKey), file(corev1.TLSPrivateKeyKey), file(corev1.ServiceAccountRootCAKey), strings.Split(o.ConnectClientNames, ","))
	Expect(err).NotTo(HaveOccurred())
	cfg.Time = clk.Now // the suite's clock dates the certificates
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		TLSConfig: &tls.Config{ClientCAs: x509.NewCertPool()},
		Resolver:  tunnel.StaticResolver{},
		Log:       GinkgoLogr,
	})
	Expect(err).NotTo(HaveOccurred())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeConnect(ctx, ln) }()
	DeferCleanup(func() { cancel(); Eventually(done, 10*time.Second).Should(BeClosed()) })
	return ln.Addr().String()
}

// connectStatus asks the CONNECT listener at addr for a tunnel as cert and
// returns the HTTP status, or the error that cut the exchange short.
func connectStatus(addr string, caPEM []byte, cert tls.Certificate) (int, error) {
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(caPEM)).To(BeTrue())
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		RootCAs: pool, ServerName: "tunnel.example.com", MinVersion: tls.VersionTLS13, Time: clk.Now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "CONNECT 192.0.2.1:10250 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	_ = res.Body.Close()
	return res.StatusCode, nil
}
