// Package certificates keeps the operator's CA (EnsureCA, which the
// tunnelendpoint and edgeunit controllers use for the servers' short-lived
// serving certificates) and issues per-node identities from it through the
// Kubernetes CSR API: the csr-approver controller approves a request for one
// of edgeunit's signers (certs.SignerTunnelAgent, certs.SignerEdgeHub) only
// when the node it names asked for exactly that node's identity, and denies
// everything else; the csr-signer controller signs approved requests. Under
// the kubelet-serving signer the approver decides only the hub's in-cluster
// serving certificates (certs.HubInClusterIdentity), which
// kube-controller-manager signs, and leaves every other request alone. Nodes
// request and rotate their identities with internal/certs/csr.
package certificates

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgeunit/edgeunit/internal/certs"
)

// EnsureCA only reads and creates the CA Secret; it never updates it.
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;create

// CASecret is the Secret, in the manager's namespace, holding the operator CA.
const CASecret = "edgeunit-ca"

// CALifetime is how long the operator CA is valid. It is not rotated
// automatically: agents and servers trust it by its certificate.
const CALifetime = 10 * 365 * 24 * time.Hour

// EnsureCA returns the operator CA, creating its Secret if there is none.
// The Secret is created exactly once: with several managers starting
// together, one Create wins and the others read the winner's Secret; an
// existing Secret is never overwritten. c must read through to the
// apiserver (an uncached reader), or a replica might not see the winner yet.
func EnsureCA(ctx context.Context, c client.Client, namespace string, now time.Time) (*certs.CA, error) {
	key := types.NamespacedName{Namespace: namespace, Name: CASecret}
	sec := &corev1.Secret{}
	err := c.Get(ctx, key, sec)
	if apierrors.IsNotFound(err) {
		_, pair, genErr := certs.NewCA("edgeunit-ca", CALifetime, now)
		if genErr != nil {
			return nil, genErr
		}
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: CASecret, Labels: map[string]string{"app.kubernetes.io/part-of": "edgeunit"}},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: pair.CertPEM, corev1.TLSPrivateKeyKey: pair.KeyPEM},
		}
		err = c.Create(ctx, sec)
		if apierrors.IsAlreadyExists(err) {
			sec = &corev1.Secret{}
			err = c.Get(ctx, key, sec)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensuring CA Secret %s: %w", key, err)
	}
	ca, err := certs.LoadCA(certs.KeyPair{CertPEM: sec.Data[corev1.TLSCertKey], KeyPEM: sec.Data[corev1.TLSPrivateKeyKey]})
	if err != nil {
		// Never overwrite: a broken CA Secret needs a human.
		return nil, fmt.Errorf("CA Secret %s is unusable (delete it to have a new CA made): %w", key, err)
	}
	return ca, nil
}
