package testbed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// webhookServiceHost is the name kube-apiserver verifies the manager's
// webhook certificate against once the webhooks are called by Service.
const webhookServiceHost = controllers.WebhookService + "." + ManagerNamespace + ".svc"

// webhookServicePort is the Service's port, as a chart would set it.
const webhookServicePort = 443

// routeWebhooksThroughTunnel turns the webhook configurations envtest
// installed (by URL, which kube-apiserver calls over its control-plane
// egress) into what an install has: a Service reference, which
// kube-apiserver calls over its cluster egress, the tunnel. The Service
// has no selector; its endpoint is the manager on the cloud's link
// address, which the tunnel-server dials directly (--direct-cidrs), and
// kube-apiserver resolves it to that endpoint (--enable-aggregator-routing),
// since no kube-proxy runs beside it. So every admission the suite makes
// through edgeunit's webhooks crosses the tunnel-server's routing.
func (c *Cloud) routeWebhooksThroughTunnel(ctx context.Context, port int) error {
	// A serving certificate for the Service's name, from a CA of its own
	// that the configurations carry.
	now := time.Now()
	ca, caKP, err := certs.NewCA("edgeunit-e2e-webhook-ca", 24*time.Hour, now)
	if err != nil {
		return err
	}
	serving, err := ca.Issue(certs.Request{CommonName: webhookServiceHost, DNSNames: []string{webhookServiceHost}, Lifetime: 24 * time.Hour, Server: true}, now)
	if err != nil {
		return err
	}
	c.webhookCertDir = filepath.Join(c.dir, "webhook-certs")
	if err := os.MkdirAll(c.webhookCertDir, 0o700); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"tls.crt": serving.CertPEM, "tls.key": serving.KeyPEM} {
		if err := os.WriteFile(filepath.Join(c.webhookCertDir, name), b, 0o600); err != nil {
			return err
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: controllers.WebhookService, Namespace: ManagerNamespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "https", Port: webhookServicePort, TargetPort: intstr.FromInt(port), Protocol: corev1.ProtocolTCP,
		}}},
	}
	if err := c.Client.Create(ctx, svc); err != nil {
		return fmt.Errorf("creating the webhook Service: %w", err)
	}
	// kube-controller-manager mirrors these Endpoints into an
	// EndpointSlice.
	eps := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: controllers.WebhookService, Namespace: ManagerNamespace},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: CloudIP}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}},
		}},
	}
	if err := c.Client.Create(ctx, eps); err != nil {
		return fmt.Errorf("creating the webhook Endpoints: %w", err)
	}
	ref := func(cc *admissionregistrationv1.WebhookClientConfig) error {
		if cc.URL == nil {
			return nil
		}
		u, err := url.Parse(*cc.URL)
		if err != nil {
			return fmt.Errorf("webhook URL %q: %w", *cc.URL, err)
		}
		// envtest joins its URL with a doubled slash.
		path := "/" + strings.TrimLeft(u.Path, "/")
		cc.URL = nil
		cc.Service = &admissionregistrationv1.ServiceReference{
			Namespace: ManagerNamespace, Name: controllers.WebhookService, Path: &path, Port: new(int32(webhookServicePort)),
		}
		cc.CABundle = caKP.CertPEM
		return nil
	}
	var vs admissionregistrationv1.ValidatingWebhookConfigurationList
	if err := c.Client.List(ctx, &vs); err != nil {
		return err
	}
	for i := range vs.Items {
		for j := range vs.Items[i].Webhooks {
			if err := ref(&vs.Items[i].Webhooks[j].ClientConfig); err != nil {
				return err
			}
		}
		if err := c.Client.Update(ctx, &vs.Items[i]); err != nil {
			return fmt.Errorf("pointing %s at the webhook Service: %w", vs.Items[i].Name, err)
		}
	}
	var ms admissionregistrationv1.MutatingWebhookConfigurationList
	if err := c.Client.List(ctx, &ms); err != nil {
		return err
	}
	for i := range ms.Items {
		for j := range ms.Items[i].Webhooks {
			if err := ref(&ms.Items[i].Webhooks[j].ClientConfig); err != nil {
				return err
			}
		}
		if err := c.Client.Update(ctx, &ms.Items[i]); err != nil {
			return fmt.Errorf("pointing %s at the webhook Service: %w", ms.Items[i].Name, err)
		}
	}
	return nil
}

// directCIDR is what the tunnel-server dials itself: the cloud's link
// address, where the manager serves its webhooks.
func directCIDR() string { return CloudIP + "/32" }

// TunnelConnects is the tunnel-server's count of CONNECTs by route and
// outcome (edgeunit_tunnel_connect_requests_total), from its /metrics.
func (c *Cloud) TunnelConnects(ctx context.Context, route, outcome string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.tunnelHealthURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	series := fmt.Sprintf(`edgeunit_tunnel_connect_requests_total{outcome=%q,route=%q} `, outcome, route)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, nil
}
