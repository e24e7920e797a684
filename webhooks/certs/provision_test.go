package certs_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/testenv"
	webhookcerts "github.com/edgeunit/edgeunit/webhooks/certs"
)

func TestProvisionerAgainstAPIServer(t *testing.T) {
	cluster, err := testenv.StartCluster(testenv.ClusterOptions{Namespaces: []string{"edgeunit-system"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	c := cluster.Client
	ctx := context.Background()
	none := admissionregistrationv1.SideEffectClassNone
	path := "/validate"
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "edgeunit-validating"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "v.edge.edgeunit.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "edgeunit-system", Name: "edgeunit-webhook-service", Path: &path}},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if err := c.Create(ctx, vwc); err != nil {
		t.Fatal(err)
	}

	clk := clocktesting.NewFakePassiveClock(time.Now())
	newProvisioner := func(dir string) *webhookcerts.Provisioner {
		return &webhookcerts.Provisioner{
			Client: c, Namespace: "edgeunit-system", Secret: "edgeunit-webhook-cert", Service: "edgeunit-webhook-service",
			CertDir: dir, Validating: []string{vwc.Name}, Clock: clk,
		}
	}

	// Two replicas starting at once must end up with one CA and one cert.
	dirs := []string{t.TempDir(), t.TempDir()}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range dirs {
		wg.Go(func() { errs[i] = newProvisioner(dirs[i]).Ensure(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dirs[0], "tls.crt"))
	b, _ := os.ReadFile(filepath.Join(dirs[1], "tls.crt"))
	if len(a) == 0 || string(a) != string(b) {
		t.Fatalf("replicas disagree on the serving certificate")
	}

	sec := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "edgeunit-system", Name: "edgeunit-webhook-cert"}, sec); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(vwc), vwc); err != nil {
		t.Fatal(err)
	}
	if string(vwc.Webhooks[0].ClientConfig.CABundle) != string(sec.Data["ca.crt"]) {
		t.Fatalf("caBundle not injected")
	}
	cert, err := certs.ParseCert(a)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sec.Data["ca.crt"])
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "edgeunit-webhook-service.edgeunit-system.svc", Roots: pool}); err != nil {
		t.Fatalf("serving certificate does not verify for the Service name: %v", err)
	}

	// A second Ensure with nothing due changes nothing.
	rv := sec.ResourceVersion
	if err := newProvisioner(dirs[0]).Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(sec), sec); err != nil {
		t.Fatal(err)
	}
	if sec.ResourceVersion != rv {
		t.Fatalf("Secret rewritten although nothing was due")
	}

	// Past two thirds of its life the serving certificate is renewed, under
	// the same CA.
	clk.SetTime(time.Now().Add(250 * 24 * time.Hour))
	if err := newProvisioner(dirs[0]).Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	renewed, _ := os.ReadFile(filepath.Join(dirs[0], "tls.crt"))
	if string(renewed) == string(a) {
		t.Fatalf("certificate not renewed")
	}
	fresh := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(sec), fresh); err != nil {
		t.Fatal(err)
	}
	if string(fresh.Data["ca.crt"]) != string(sec.Data["ca.crt"]) {
		t.Fatalf("CA replaced although it was not due")
	}
}
