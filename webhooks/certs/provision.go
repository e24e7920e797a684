// Package certs provisions the webhook server's serving certificate when no
// one else does (plain kubectl apply or Argo CD installs; OLM and
// cert-manager users turn it off): a CA and serving certificate kept in a
// Secret, written to the server's cert directory, and the CA injected into
// the webhook configurations. Two replicas starting together agree on one
// Secret: creation is a Create that only one wins; the loser reads the
// winner's.
package certs

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations;mutatingwebhookconfigurations,verbs=get;list;watch;patch

const (
	caLifetime      = 10 * 365 * 24 * time.Hour
	servingLifetime = 365 * 24 * time.Hour
	keyCACert       = "ca.crt"
	keyCAKey        = "ca.key"
	keyCert         = corev1.TLSCertKey
	keyKey          = corev1.TLSPrivateKeyKey
)

// Provisioner keeps the webhook serving certificate.
type Provisioner struct {
	// Client must read through to the apiserver (not a cache): it runs
	// before the manager's caches start.
	Client    client.Client
	Namespace string
	// Secret holds the CA and serving key pairs.
	Secret string
	// Service is the webhook Service; the certificate is for its DNS names.
	Service string
	// CertDir is the webhook server's certificate directory.
	CertDir string
	// Validating and Mutating name the webhook configurations whose
	// caBundle is set; empty names are skipped.
	Validating []string
	Mutating   []string
	Clock      clock.PassiveClock
	// Interval between renewal checks.
	Interval time.Duration
}

func (p *Provisioner) now() time.Time {
	if p.Clock == nil {
		return time.Now()
	}
	return p.Clock.Now()
}

// Ensure makes sure the Secret holds a valid CA and serving certificate,
// writes them to CertDir and injects the CA. Call it before the webhook
// server starts.
func (p *Provisioner) Ensure(ctx context.Context) error {
	sec, err := p.ensureSecret(ctx)
	if err != nil {
		return err
	}
	if err := p.writeFiles(sec); err != nil {
		return err
	}
	return p.inject(ctx, sec.Data[keyCACert])
}

// Start re-checks the certificate every Interval, as a manager runnable.
func (p *Provisioner) Start(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.Ensure(ctx); err != nil {
				ctrl.LoggerFrom(ctx).Error(err, "Renewing the webhook certificate")
			}
		}
	}
}

// NeedLeaderElection: every replica serves webhooks and needs the files.
func (p *Provisioner) NeedLeaderElection() bool { return false }

func (p *Provisioner) dnsNames() []string {
	return []string{
		p.Service,
		fmt.Sprintf("%s.%s", p.Service, p.Namespace),
		fmt.Sprintf("%s.%s.svc", p.Service, p.Namespace),
		fmt.Sprintf("%s.%s.svc.cluster.local", p.Service, p.Namespace),
	}
}

func (p *Provisioner) ensureSecret(ctx context.Context) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Secret}
	sec := &corev1.Secret{}
	err := p.Client.Get(ctx, key, sec)
	switch {
	case apierrors.IsNotFound(err):
		sec, err = p.newSecret()
		if err != nil {
			return nil, err
		}
		if err := p.Client.Create(ctx, sec); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("creating Secret %s: %w", key, err)
			}
			// Another replica won; use its Secret.
			sec = &corev1.Secret{}
			if err := p.Client.Get(ctx, key, sec); err != nil {
				return nil, fmt.Errorf("reading Secret %s: %w", key, err)
			}
		}
		return sec, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	if !p.needsRenewal(sec) {
		return sec, nil
	}
	renewed, err := p.renew(sec)
	if err != nil {
		return nil, err
	}
	// The resourceVersion makes a concurrent renewal lose cleanly.
	if err := p.Client.Update(ctx, renewed); err != nil {
		if apierrors.IsConflict(err) {
			fresh := &corev1.Secret{}
			if err := p.Client.Get(ctx, key, fresh); err != nil {
				return nil, fmt.Errorf("reading Secret %s: %w", key, err)
			}
			return fresh, nil
		}
		return nil, fmt.Errorf("updating Secret %s: %w", key, err)
	}
	return renewed, nil
}

func (p *Provisioner) needsRenewal(sec *corev1.Secret) bool {
	for _, k := range []string{keyCACert, keyCAKey, keyCert, keyKey} {
		if len(sec.Data[k]) == 0 {
			return true
		}
	}
	if certs.NeedsRenewal(sec.Data[keyCACert], p.now()) || certs.NeedsRenewal(sec.Data[keyCert], p.now()) {
		return true
	}
	cert, err := certs.ParseCert(sec.Data[keyCert])
	if err != nil {
		return true
	}
	// A Service renamed or moved needs a new certificate.
	for _, n := range p.dnsNames() {
		if cert.VerifyHostname(n) != nil {
			return true
		}
	}
	return false
}

func (p *Provisioner) newSecret() (*corev1.Secret, error) {
	_, caPair, err := certs.NewCA("edgeunit-webhook-ca", caLifetime, p.now())
	if err != nil {
		return nil, err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Secret},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{keyCACert: caPair.CertPEM, keyCAKey: caPair.KeyPEM},
	}
	return p.renew(sec)
}

// renew issues a new serving certificate, and a new CA if the old one is
// due.
func (p *Provisioner) renew(sec *corev1.Secret) (*corev1.Secret, error) {
	sec = sec.DeepCopy()
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	ca, err := certs.LoadCA(certs.KeyPair{CertPEM: sec.Data[keyCACert], KeyPEM: sec.Data[keyCAKey]})
	if err != nil || certs.NeedsRenewal(sec.Data[keyCACert], p.now()) {
		var pair certs.KeyPair
		ca, pair, err = certs.NewCA("edgeunit-webhook-ca", caLifetime, p.now())
		if err != nil {
			return nil, err
		}
		sec.Data[keyCACert], sec.Data[keyCAKey] = pair.CertPEM, pair.KeyPEM
	}
	pair, err := ca.Issue(certs.Request{CommonName: p.dnsNames()[2], DNSNames: p.dnsNames(), Lifetime: servingLifetime, Server: true}, p.now())
	if err != nil {
		return nil, err
	}
	sec.Data[keyCert], sec.Data[keyKey] = pair.CertPEM, pair.KeyPEM
	return sec, nil
}

// writeFiles writes the key pair atomically (temp file + rename) so the
// server's certificate watcher never reads half a file.
func (p *Provisioner) writeFiles(sec *corev1.Secret) error {
	if err := os.MkdirAll(p.CertDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", p.CertDir, err)
	}
	for _, k := range []string{keyKey, keyCert} {
		path := filepath.Join(p.CertDir, k)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, sec.Data[k]) {
			continue
		}
		tmp, err := os.CreateTemp(p.CertDir, "."+k+"-*")
		if err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		_, werr := tmp.Write(sec.Data[k])
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}

// inject sets caBundle on every webhook of the named configurations with a
// JSON patch per configuration, touching nothing else.
func (p *Provisioner) inject(ctx context.Context, ca []byte) error {
	for _, name := range p.Validating {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := p.patchCABundle(ctx, name, cfg, func() []admissionregistrationv1.WebhookClientConfig {
			var out []admissionregistrationv1.WebhookClientConfig
			for _, w := range cfg.Webhooks {
				out = append(out, w.ClientConfig)
			}
			return out
		}, ca); err != nil {
			return err
		}
	}
	for _, name := range p.Mutating {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := p.patchCABundle(ctx, name, cfg, func() []admissionregistrationv1.WebhookClientConfig {
			var out []admissionregistrationv1.WebhookClientConfig
			for _, w := range cfg.Webhooks {
				out = append(out, w.ClientConfig)
			}
			return out
		}, ca); err != nil {
			return err
		}
	}
	return nil
}

func (p *Provisioner) patchCABundle(ctx context.Context, name string, obj client.Object, clientConfigs func() []admissionregistrationv1.WebhookClientConfig, ca []byte) error {
	if err := p.Client.Get(ctx, types.NamespacedName{Name: name}, obj); err != nil {
		return fmt.Errorf("reading webhook configuration %s: %w", name, err)
	}
	var ops []string
	for i, cc := range clientConfigs() {
		if !bytes.Equal(cc.CABundle, ca) {
			ops = append(ops, fmt.Sprintf(`{"op":"add","path":"/webhooks/%d/clientConfig/caBundle","value":%q}`, i, base64.StdEncoding.EncodeToString(ca)))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	patch := []byte("[" + strings.Join(ops, ",") + "]")
	if err := p.Client.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, patch)); err != nil {
		return fmt.Errorf("injecting the CA into webhook configuration %s: %w", name, err)
	}
	return nil
}
