package tunnelendpoint

import (
	"net"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

func TestDesiredSANs(t *testing.T) {
	base := "edgeunit-tunnel-tunnel"
	svcNames := []string{
		base, base + ".edgeunit-system", base + ".edgeunit-system.svc", base + ".edgeunit-system.svc.cluster.local",
		base + "-headless", base + "-headless.edgeunit-system", base + "-headless.edgeunit-system.svc", base + "-headless.edgeunit-system.svc.cluster.local",
		"*." + base + "-headless.edgeunit-system.svc", "*." + base + "-headless.edgeunit-system.svc.cluster.local",
	}
	tests := map[string]struct {
		addresses []string
		svc       *corev1.Service
		wantDNS   []string
		wantIPs   []string
	}{
		"service names only": {wantDNS: svcNames},
		"spec addresses: IPs and names told apart": {
			addresses: []string{"203.0.113.7", "Tunnel.Example.COM", "2001:db8::1", "[2001:db8::2]", "edge.example.net."},
			wantDNS:   append([]string{"edge.example.net", "tunnel.example.com"}, svcNames...),
			wantIPs:   []string{"2001:db8::1", "2001:db8::2", "203.0.113.7"},
		},
		"cluster IPs and load balancer ingress": {
			addresses: []string{"198.51.100.1"},
			svc: &corev1.Service{
				Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"}},
				Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
					{IP: "198.51.100.1"}, {Hostname: "lb-123.elb.example.com"},
				}}},
			},
			wantDNS: append([]string{"lb-123.elb.example.com"}, svcNames...),
			wantIPs: []string{"10.96.0.10", "198.51.100.1", "fd00::10"},
		},
		"headless None is no address": {
			svc:     &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone}}},
			wantDNS: svcNames,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			te := endpoint("tunnel", func(te *edgev1.TunnelEndpoint) { te.Spec.Service.Addresses = tc.addresses })
			got := desiredSANs(te, testCfg, tc.svc)
			want := slices.Sorted(slices.Values(tc.wantDNS))
			if !slices.Equal(got.DNS, want) {
				t.Errorf("DNS =\n%v\nwant\n%v", got.DNS, want)
			}
			var ips []string
			for _, ip := range got.IPs {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantIPs) {
				t.Errorf("IPs = %v, want %v", ips, tc.wantIPs)
			}
		})
	}
}

func TestReissueReason(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ca, _, err := certs.NewCA("test-ca", 24*365*time.Hour, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, err := certs.NewCA("other-ca", 24*365*time.Hour, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := sans{DNS: []string{"a.example.com", "b.example.com"}, IPs: []net.IP{net.ParseIP("10.0.0.1").To4()}}
	issue := func(ca *certs.CA, s sans, lifetime time.Duration) map[string][]byte {
		kp, err := ca.Issue(certs.Request{CommonName: "x", DNSNames: s.DNS, IPs: s.IPs, Lifetime: lifetime, Server: true}, now)
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{corev1.TLSCertKey: kp.CertPEM, corev1.TLSPrivateKeyKey: kp.KeyPEM, corev1.ServiceAccountRootCAKey: ca.CertPEM()}
	}
	good := issue(ca, want, 24*time.Hour)
	cert, err := certs.ParseCert(good[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	renewAt := renewalTime(cert)
	if d := renewAt.Sub(cert.NotBefore); d != cert.NotAfter.Sub(cert.NotBefore)*2/3 {
		t.Fatalf("renewal at %s after NotBefore, want two thirds of the lifetime", d)
	}
	mismatchedKey := issue(ca, want, 24*time.Hour)
	mismatchedKey[corev1.TLSPrivateKeyKey] = issue(ca, want, 24*time.Hour)[corev1.TLSPrivateKeyKey]
	staleBundle := issue(ca, want, 24*time.Hour)
	staleBundle[corev1.ServiceAccountRootCAKey] = otherCA.CertPEM()

	tests := map[string]struct {
		data     map[string][]byte
		sans     sans
		lifetime time.Duration
		now      time.Time
		want     string
	}{
		"no Secret":                 {data: nil, want: issueMissing},
		"key does not match":        {data: mismatchedKey, want: issueUnreadable},
		"garbage":                   {data: map[string][]byte{corev1.TLSCertKey: []byte("x"), corev1.TLSPrivateKeyKey: []byte("y")}, want: issueUnreadable},
		"signed by another CA":      {data: issue(otherCA, want, 24*time.Hour), want: issueCAChanged},
		"ca.crt not the current CA": {data: staleBundle, want: issueCAChanged},
		"a name was added":          {data: good, sans: sans{DNS: append(slices.Clone(want.DNS), "c.example.com"), IPs: want.IPs}, want: issueSANs},
		"an IP changed":             {data: good, sans: sans{DNS: want.DNS, IPs: []net.IP{net.ParseIP("10.0.0.2")}}, want: issueSANs},
		"lifetime shortened":        {data: good, lifetime: 2 * time.Hour, want: issueLifetime},
		"fresh":                     {data: good, want: ""},
		"just before two thirds":    {data: good, now: renewAt.Add(-time.Second), want: ""},
		"at two thirds":             {data: good, now: renewAt, want: issueRenewal},
		"expired":                   {data: good, now: cert.NotAfter.Add(time.Hour), want: issueRenewal},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, lifetime, at := tc.sans, tc.lifetime, tc.now
			if s.DNS == nil {
				s = want
			}
			if lifetime == 0 {
				lifetime = 24 * time.Hour
			}
			if at.IsZero() {
				at = now
			}
			if got := reissueReason(tc.data, ca, s, lifetime, at); got != tc.want {
				t.Errorf("reissueReason = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRequeueAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		ci   *certInfo
		want time.Duration
	}{
		"no certificate":  {ci: nil, want: 0},
		"renewal ahead":   {ci: &certInfo{RenewAt: now.Add(16 * time.Hour)}, want: 16 * time.Hour},
		"renewal due now": {ci: &certInfo{RenewAt: now}, want: time.Second},
		"renewal overdue": {ci: &certInfo{RenewAt: now.Add(-time.Hour)}, want: time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := requeueAfter(tc.ci, now); got != tc.want {
				t.Errorf("requeueAfter = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestIssueRequestLifetime(t *testing.T) {
	te := endpoint("tunnel", func(te *edgev1.TunnelEndpoint) {
		te.Spec.CertificateLifetime = &metav1.Duration{Duration: 3 * time.Hour}
	})
	r := issueRequest(te, testCfg, sans{DNS: []string{"a"}})
	if r.Lifetime != 3*time.Hour || !r.Server || r.Client {
		t.Errorf("request = %+v", r)
	}
}
