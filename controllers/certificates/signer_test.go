package certificates

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// TestSignerReconcile checks what the signer does with approved requests:
// it signs node identities and fails anything else, even when a human
// approved it.
func TestSignerReconcile(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, _, err := certs.NewCA("test-ca", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	key := mustECDSA(t, elliptic.P256())
	approved := []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "ByHand"}}
	clientUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	serving := append(clientUsages, certificatesv1.UsageServerAuth)

	tests := map[string]struct {
		signer     string
		request    x509.CertificateRequest
		usages     []certificatesv1.KeyUsage
		wantFailed string // reason; empty: signed
		wantServer bool
	}{
		"agent identity": {
			signer: certs.SignerTunnelAgent, usages: clientUsages,
			request: x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:tunnel-agent:n1", Organization: []string{certs.TunnelAgentOrganization}}},
		},
		"hub serving loopback": {
			signer: certs.SignerEdgeHub, usages: serving, wantServer: true,
			request: x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:edge-hub:n1", Organization: []string{certs.EdgeHubOrganization}}, DNSNames: []string{"localhost"}, IPAddresses: certs.LoopbackIPs()},
		},
		"approved by hand with system:masters": {
			signer: certs.SignerTunnelAgent, usages: clientUsages, wantFailed: ReasonInvalidIdentity,
			request: x509.CertificateRequest{Subject: pkix.Name{CommonName: "edgeunit:tunnel-agent:n1", Organization: []string{"system:masters"}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{Name: "req"},
				Spec:       certificatesv1.CertificateSigningRequestSpec{SignerName: tc.signer, Request: makeCSR(t, key, tc.request), Usages: tc.usages},
				Status:     certificatesv1.CertificateSigningRequestStatus{Conditions: approved},
			}
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(csr).WithStatusSubresource(csr).Build()
			s := &Signer{
				Client: c, Clock: testingclock.NewFakePassiveClock(now), DefaultLifetime: DefaultLifetime, MaxLifetime: DefaultMaxLifetime,
				CA: func(context.Context) (*certs.CA, error) { return ca, nil },
			}
			if _, err := s.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(csr)}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			got := &certificatesv1.CertificateSigningRequest{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(csr), got); err != nil {
				t.Fatal(err)
			}
			if tc.wantFailed != "" {
				if len(got.Status.Certificate) != 0 || !hasCondition(got, certificatesv1.CertificateFailed) || got.Status.Conditions[1].Reason != tc.wantFailed {
					t.Fatalf("want Failed %s and no certificate, got %+v", tc.wantFailed, got.Status)
				}
				return
			}
			cert, err := certs.ParseCert(got.Status.Certificate)
			if err != nil {
				t.Fatalf("no certificate: %v", err)
			}
			usages := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			if tc.wantServer {
				usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: usages}); err != nil {
				t.Errorf("certificate does not verify for %v: %v", usages, err)
			}
			if cert.Subject.CommonName != tc.request.Subject.CommonName || !cert.NotAfter.Equal(now.Add(DefaultLifetime)) {
				t.Errorf("certificate %q until %s, want %q until %s", cert.Subject.CommonName, cert.NotAfter, tc.request.Subject.CommonName, now.Add(DefaultLifetime))
			}
			if tc.wantServer != (len(cert.DNSNames) == 1 && len(cert.IPAddresses) == 2) {
				t.Errorf("SANs %v %v", cert.DNSNames, cert.IPAddresses)
			}
		})
	}
}

// TestSignerLeavesKubeletServing: an approved hub in-cluster request is
// kube-controller-manager's to sign, with the cluster CA; edgeunit's signer
// neither signs nor fails it.
func TestSignerLeavesKubeletServing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "req"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			SignerName: certs.SignerKubeletServing,
			Request: makeCSR(t, mustECDSA(t, elliptic.P256()), x509.CertificateRequest{
				Subject:     pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}},
				IPAddresses: []net.IP{net.ParseIP(certs.DefaultHubInClusterIP)},
			}),
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
		Status: certificatesv1.CertificateSigningRequestStatus{Conditions: []certificatesv1.CertificateSigningRequestCondition{
			{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: ReasonAutoApproved},
		}},
	}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(csr).WithStatusSubresource(csr).Build()
	s := &Signer{
		Client: c, Clock: testingclock.NewFakePassiveClock(now), DefaultLifetime: DefaultLifetime, MaxLifetime: DefaultMaxLifetime,
		CA: func(context.Context) (*certs.CA, error) { t.Fatal("the signer fetched the CA"); return nil, nil },
	}
	if _, err := s.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(csr)}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	got := &certificatesv1.CertificateSigningRequest{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(csr), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Certificate) != 0 || len(got.Status.Conditions) != 1 {
		t.Errorf("the signer touched the request: %+v", got.Status)
	}
}
