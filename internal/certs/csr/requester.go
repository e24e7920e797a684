// Package csr keeps a node component's edgeunit identity (certs.Identity)
// through the Kubernetes CSR API: it requests the certificate with the
// node's own credential, stores key and certificate on disk, serves the
// current pair to TLS, and rotates it before it expires.
//
// Use:
//
//	r, err := csr.New(csr.Config{Client: kubeletClient, Identity: certs.TunnelAgentIdentity, Node: node, Dir: dir})
//	if err := r.Ensure(ctx); err != nil { ... }      // blocks until a valid certificate is held
//	go r.Run(ctx)                                    // rotates until ctx ends
//	tlsConfig.GetClientCertificate = r.GetClientCertificate
//
// The hub's in-cluster serving identity (certs.HubInClusterIdentity) is kept
// the same way, with Config.IPs naming its link-local addresses and
// tlsConfig.GetCertificate = r.GetCertificate; kube-controller-manager signs
// it with the cluster CA.
package csr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	mathrand "math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// Defaults for Config.
const (
	DefaultIssueTimeout = 5 * time.Minute
	// Retries after a failed rotation back off from minRetry to maxRetry.
	minRetry = 2 * time.Second
	maxRetry = 5 * time.Minute
)

// ErrDenied is wrapped by the error of a request the approver denied or the
// signer failed. It will not succeed by retrying as is: the node's
// credential or the requested identity is wrong.
var ErrDenied = errors.New("certificate signing request denied")

// Config says which identity to keep, for which node and where.
type Config struct {
	// Client is authenticated as the node: the kubelet's kubeconfig
	// (system:node:<Node>), or a bootstrap token bound to the node (see
	// certs.BootstrapNodeGroup; not for certs.HubInClusterIdentity, which
	// only the kubelet's credential may request). It needs create, get, list
	// and watch on certificatesigningrequests, which nodes have.
	Client kubernetes.Interface
	// Identity is certs.TunnelAgentIdentity, certs.EdgeHubIdentity or
	// certs.HubInClusterIdentity.
	Identity certs.Identity
	// Node is this node's name.
	Node string
	// Dir holds the key and certificate, in one file <component>.pem
	// (mode 0600) so that the pair is replaced atomically.
	Dir string
	// ServeLoopback also asks for server auth on the loopback names; only
	// for identities that MayServeLoopback (the edge-hub).
	ServeLoopback bool
	// IPs are the addresses to serve for an identity that ServesLinkLocal:
	// required for it, each link-local (certs.CheckLinkLocalIPs), and not
	// allowed for any other identity.
	IPs []net.IP
	// Lifetime to ask for (spec.expirationSeconds, at least 10 minutes); 0
	// leaves it to the signer (24 hours by default for edgeunit's; for
	// certs.HubInClusterIdentity kube-controller-manager's
	// --cluster-signing-duration, a year by default).
	Lifetime time.Duration
	// IssueTimeout bounds the wait for one request to be issued
	// (DefaultIssueTimeout when zero). It runs on the real clock.
	IssueTimeout time.Duration
	// Clock decides when to rotate (the real clock when nil).
	Clock clock.WithTicker
}

// Requester keeps one identity current. Its methods are safe for concurrent
// use.
type Requester struct {
	cfg     Config
	current atomic.Pointer[held]
}

// held is a key pair and when to rotate it.
type held struct {
	cert   *tls.Certificate
	rotate time.Time
}

// New checks cfg and returns a Requester holding no certificate yet.
func New(cfg Config) (*Requester, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("csr: a client is required")
	case cfg.Identity.SignerName == "":
		return nil, errors.New("csr: an identity is required")
	case cfg.Node == "":
		return nil, errors.New("csr: the node name is required")
	case cfg.Dir == "":
		return nil, errors.New("csr: a directory is required")
	case cfg.ServeLoopback && !cfg.Identity.MayServeLoopback:
		return nil, fmt.Errorf("csr: a %s identity may not serve", cfg.Identity.Component)
	case len(cfg.IPs) > 0 && !cfg.Identity.ServesLinkLocal:
		return nil, fmt.Errorf("csr: a %s identity serves no IP addresses", cfg.Identity.Component)
	case cfg.Lifetime != 0 && cfg.Lifetime < 10*time.Minute:
		return nil, errors.New("csr: the lifetime must be at least 10 minutes")
	}
	if cfg.Identity.ServesLinkLocal {
		if err := certs.CheckLinkLocalIPs(cfg.IPs); err != nil {
			return nil, fmt.Errorf("csr: a %s identity: %w", cfg.Identity.Component, err)
		}
		cfg.IPs = slices.Clone(cfg.IPs)
	}
	if cfg.IssueTimeout == 0 {
		cfg.IssueTimeout = DefaultIssueTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Requester{cfg: cfg}, nil
}

// Current returns the certificate held now, or nil before Ensure succeeded.
func (r *Requester) Current() *tls.Certificate {
	if h := r.current.Load(); h != nil {
		return h.cert
	}
	return nil
}

// GetClientCertificate serves the current certificate to a tls.Config of a
// client.
func (r *Requester) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.get()
}

// GetCertificate serves the current certificate to a tls.Config of a
// server (the edge-hub's loopback and in-cluster listeners).
func (r *Requester) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.get()
}

func (r *Requester) get() (*tls.Certificate, error) {
	if c := r.Current(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no %s certificate for node %q yet", r.cfg.Identity.Component, r.cfg.Node)
}

// Ensure loads the certificate from disk and, when there is none that is
// valid now and of this node's identity, requests one and waits for it. A
// valid certificate on disk is used at once even when it is due for renewal
// (past its rotation point, two thirds into its lifetime or a little more):
// Run renews it first thing, and a node cut off from the cloud starts with
// what it has instead of waiting for the request to time out.
func (r *Requester) Ensure(ctx context.Context) error {
	if r.current.Load() != nil {
		return nil
	}
	h, err := r.load()
	if err == nil {
		r.current.Store(h)
		return nil
	}
	klog.FromContext(ctx).V(2).Info("No usable certificate on disk, requesting one", "path", r.Path(), "reason", err.Error())
	return r.Rotate(ctx)
}

// Run rotates the certificate until ctx ends: at a jittered point between
// two thirds and four fifths of its lifetime, and after a failure again with
// backoff, keeping the old certificate while it is valid. It returns
// ctx.Err().
func (r *Requester) Run(ctx context.Context) error {
	log := klog.FromContext(ctx)
	failures := 0
	var retry time.Duration
	for {
		var wait time.Duration
		switch h := r.current.Load(); {
		case failures > 0:
			wait = retry
		case h != nil:
			wait = h.rotate.Sub(r.cfg.Clock.Now())
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-r.cfg.Clock.After(wait):
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.Rotate(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			retry = backoff(failures)
			h := r.current.Load()
			if h == nil || !r.cfg.Clock.Now().Before(h.cert.Leaf.NotAfter) {
				log.Error(err, "Requesting certificate failed and no valid certificate is held", "identity", r.cfg.Identity.Component, "retryIn", retry)
			} else {
				log.Error(err, "Rotating certificate failed, keeping the current one", "identity", r.cfg.Identity.Component, "notAfter", h.cert.Leaf.NotAfter, "retryIn", retry)
			}
			continue
		}
		failures = 0
	}
}

// backoff is the wait after the n-th consecutive failure: doubling from
// minRetry up to maxRetry, with ±20% jitter so nodes cut off together do not
// return in step.
func backoff(n int) time.Duration {
	d := float64(minRetry) * math.Pow(2, float64(min(n-1, 30)))
	d = min(d, float64(maxRetry))
	return time.Duration(d * (0.8 + 0.4*mathrand.Float64()))
}

// Rotate requests a new certificate with a new key, waits for it and
// installs it, on disk and in memory.
func (r *Requester) Rotate(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating key: %w", err)
	}
	req, err := r.request()
	if err != nil {
		return err
	}
	csrPEM, err := certutil.MakeCSR(key, &pkix.Name{CommonName: req.CommonName, Organization: req.Organization}, req.DNSNames, req.IPs)
	if err != nil {
		return fmt.Errorf("creating certificate request: %w", err)
	}
	// No key encipherment: an ECDSA key does not use it, and for such a key
	// kube-controller-manager's kubelet-serving signer accepts exactly
	// {digital signature, server auth}.
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
	if req.Client {
		usages = append(usages, certificatesv1.UsageClientAuth)
	}
	if req.Server {
		usages = append(usages, certificatesv1.UsageServerAuth)
	}
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: r.requestName()},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    csrPEM,
			SignerName: r.cfg.Identity.SignerName,
			Usages:     usages,
		},
	}
	if r.cfg.Lifetime > 0 {
		secs := int32(min(r.cfg.Lifetime/time.Second, math.MaxInt32))
		obj.Spec.ExpirationSeconds = &secs
	}
	created, err := r.cfg.Client.CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating CSR for %s: %w", req.CommonName, err)
	}
	klog.FromContext(ctx).V(2).Info("Requested certificate", "csr", created.Name, "commonName", req.CommonName)
	certPEM, err := r.waitIssued(ctx, created.Name, created.UID)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	data := append(append([]byte{}, certPEM...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	h, err := r.parse(data)
	if err != nil {
		return fmt.Errorf("certificate issued for CSR %s: %w", created.Name, err)
	}
	if now := r.cfg.Clock.Now(); !h.rotate.After(now) {
		// This clock runs ahead of the signer's: rotating at once would only
		// repeat. Rotate within what is left instead.
		h.rotate = now.Add(h.cert.Leaf.NotAfter.Sub(now) * 2 / 3)
	}
	if err := writeAtomic(r.Path(), data); err != nil {
		return err
	}
	r.current.Store(h)
	klog.FromContext(ctx).V(2).Info("Installed certificate", "csr", created.Name, "path", r.Path(), "notAfter", h.cert.Leaf.NotAfter, "rotateAt", h.rotate)
	return nil
}

// request is the certificate to ask for.
func (r *Requester) request() (certs.Request, error) {
	if r.cfg.Identity.ServesLinkLocal {
		return r.cfg.Identity.LinkLocalRequest(r.cfg.Node, r.cfg.Lifetime, r.cfg.IPs)
	}
	return r.cfg.Identity.Request(r.cfg.Node, r.cfg.Lifetime, r.cfg.ServeLoopback), nil
}

// requestName is unique per request: edgeunit-<component>-<node>-<random>,
// the node part shortened to stay within the 253 characters of a name.
func (r *Requester) requestName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "edgeunit-" + r.cfg.Identity.Component + "-"
	node := r.cfg.Node
	if maxNode := 253 - len(prefix) - 1 - 2*len(b); len(node) > maxNode {
		node = node[:maxNode]
	}
	return prefix + node + "-" + hex.EncodeToString(b[:])
}

// waitIssued watches the CSR until it carries a certificate, is denied or
// failed, or IssueTimeout passes.
func (r *Requester) waitIssued(ctx context.Context, name string, uid types.UID) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.IssueTimeout)
	defer cancel()
	csrs := r.cfg.Client.CertificatesV1().CertificateSigningRequests()
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return csrs.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return csrs.Watch(ctx, o)
		},
	}
	var issued []byte
	_, err := watchtools.UntilWithSync(ctx, lw, &certificatesv1.CertificateSigningRequest{}, nil, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("CSR %s was deleted before it was issued", name)
		}
		csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
		if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
			return false, nil
		}
		if csr.UID != uid {
			return false, fmt.Errorf("CSR %s was replaced before it was issued", name)
		}
		for _, c := range csr.Status.Conditions {
			if c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
				return false, fmt.Errorf("%w: CSR %s is %s: %s: %s", ErrDenied, name, c.Type, c.Reason, c.Message)
			}
		}
		if len(csr.Status.Certificate) == 0 {
			return false, nil
		}
		issued = csr.Status.Certificate
		return true, nil
	})
	if err != nil {
		if errors.Is(err, ErrDenied) {
			return nil, err
		}
		return nil, fmt.Errorf("waiting for CSR %s to be issued: %w", name, err)
	}
	return issued, nil
}

// Path is the file holding the certificate and its key.
func (r *Requester) Path() string { return pathIn(r.cfg.Dir, r.cfg.Identity.Component) }

func (r *Requester) load() (*held, error) {
	data, err := readFile(r.Path())
	if err != nil {
		return nil, err
	}
	return r.parse(data)
}

// parse checks that data is a matching key pair for this node's identity
// that is valid now, and picks its rotation time.
func (r *Requester) parse(data []byte) (*held, error) {
	pair, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, fmt.Errorf("parsing key pair: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		pair.Leaf = leaf
	}
	if want := r.cfg.Identity.CommonName(r.cfg.Node); leaf.Subject.CommonName != want {
		return nil, fmt.Errorf("certificate is for %q, not %q", leaf.Subject.CommonName, want)
	}
	// A serving certificate for addresses the hub no longer serves (its
	// configuration changed) would fail every client: request a new one.
	if r.cfg.Identity.ServesLinkLocal && !sameIPs(leaf.IPAddresses, r.cfg.IPs) {
		return nil, fmt.Errorf("certificate serves %v, not %v", leaf.IPAddresses, r.cfg.IPs)
	}
	now := r.cfg.Clock.Now()
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	jitter := time.Duration(float64(life) * (2.0/3 + mathrand.Float64()*(0.8-2.0/3)))
	return &held{cert: &pair, rotate: leaf.NotBefore.Add(jitter)}, nil
}

// sameIPs says whether a and b hold the same addresses, in any order.
func sameIPs(a, b []net.IP) bool {
	within := func(x, y []net.IP) bool {
		for _, ip := range x {
			if !slices.ContainsFunc(y, ip.Equal) {
				return false
			}
		}
		return true
	}
	return within(a, b) && within(b, a)
}
