package tunnelendpoint

import (
	"flag"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/tunnel"
)

func TestEgressReissueReason(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ca, _, err := certs.NewCA("test-ca", 10*365*24*time.Hour, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, err := certs.NewCA("other-ca", 10*365*24*time.Hour, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	lifetime := DefaultEgressCertificateLifetime
	issue := func(ca *certs.CA, req certs.Request) map[string][]byte {
		kp, err := ca.Issue(req, now)
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{corev1.TLSCertKey: kp.CertPEM, corev1.TLSPrivateKeyKey: kp.KeyPEM, corev1.ServiceAccountRootCAKey: ca.CertPEM()}
	}
	good := issue(ca, certs.EgressClientRequest(lifetime))
	tests := map[string]struct {
		data map[string][]byte
		at   time.Time
		want string
	}{
		"current":                   {data: good, want: ""},
		"missing":                   {data: map[string][]byte{}, want: issueMissing},
		"another CA":                {data: issue(otherCA, certs.EgressClientRequest(lifetime)), want: issueCAChanged},
		"an agent's identity":       {data: issue(ca, certs.TunnelAgentRequest("n1", lifetime)), want: issueIdentity},
		"a serving certificate":     {data: issue(ca, certs.Request{CommonName: certs.EgressCommonName, Organization: []string{certs.EgressOrganization}, Lifetime: lifetime, Server: true}), want: issueIdentity},
		"just before two thirds":    {data: good, at: now.Add(lifetime*2/3 - time.Hour), want: ""},
		"two thirds of a year past": {data: good, at: now.Add(lifetime * 2 / 3), want: issueRenewal},
		"lifetime shortened":        {data: issue(ca, certs.EgressClientRequest(2*lifetime)), want: issueLifetime},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = now
			}
			if got := egressReissueReason(tc.data, ca, lifetime, at); got != tc.want {
				t.Errorf("egressReissueReason = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEgressSecretName(t *testing.T) {
	tests := map[string]string{
		"tunnel":                             "edgeunit-tunnel-tunnel-egress",
		strings.Repeat("a", 60) + ".example": baseName(strings.Repeat("a", 60)+".example") + "-egress",
	}
	for te, want := range tests {
		got := EgressSecretName(te)
		if got != want || got == SecretName(te) || len(got) > 63 {
			t.Errorf("EgressSecretName(%q) = %q, want %q, distinct from the serving Secret, at most 63 characters", te, got, want)
		}
	}
}

func TestEarliest(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	serving := &certInfo{RenewAt: now.Add(16 * time.Hour)}
	egress := &certInfo{RenewAt: now.Add(240 * 24 * time.Hour)}
	if got := earliest(serving, egress); got != serving {
		t.Errorf("earliest = %+v, want the serving certificate's renewal", got)
	}
	if got := earliest(nil, egress); got != egress {
		t.Errorf("earliest = %+v, want the egress certificate's", got)
	}
	if got := earliest(nil, nil); got != nil {
		t.Errorf("earliest = %+v, want none", got)
	}
}

// The server accepts the flags the Deployment passes, and its CONNECT
// listener admits exactly the name the egress certificate carries.
func TestServerArgsParse(t *testing.T) {
	var o tunnel.ServerOptions
	fs := flag.NewFlagSet("tunnel-server", flag.ContinueOnError)
	o.BindFlags(fs)
	args := strings.ReplaceAll(strings.Join(serverArgs(endpoint("tunnel"), nil), "\n"), "$(POD_NAME)", "tunnel-0")
	if err := fs.Parse(strings.Split(args, "\n")); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("the server refuses the Deployment's flags: %v", err)
	}
	if o.ConnectClientNames != certs.EgressClientRequest(time.Hour).CommonName {
		t.Errorf("CONNECT listener admits %q, want the egress certificate's name", o.ConnectClientNames)
	}
}
