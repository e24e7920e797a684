package tunnelendpoint

import (
	"context"
	"fmt"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=servicecidrs,verbs=get;list

// maxDirectCIDRs bounds status.directCIDRs, from the CRD.
const maxDirectCIDRs = 64

// observeEgress derives the CIDRs the servers dial themselves for
// kube-apiserver's cluster egress: spec.egress.direct and, unless turned
// off, the cluster's Service ranges, read live from its ServiceCIDR
// objects (networking.k8s.io/v1). A cluster without that API has no ranges
// to add; the servers still dial cloud nodes and their pods directly.
func (r *Reconciler) observeEgress(ctx context.Context, te *edgev1.TunnelEndpoint, obs *observed) error {
	var service []string
	if sc := te.Spec.Egress.ServiceCIDRs; sc == nil || *sc {
		var list networkingv1.ServiceCIDRList
		err := r.APIReader.List(ctx, &list)
		switch {
		case meta.IsNoMatchError(err):
		case err != nil:
			return fmt.Errorf("listing ServiceCIDRs: %w", err)
		}
		for _, sc := range list.Items {
			service = append(service, sc.Spec.CIDRs...)
		}
	}
	obs.direct = directCIDRs(te.Spec.Egress.Direct, service)
	return nil
}

// directCIDRs is spec's CIDRs, then the Service ranges, without repeats,
// bounded by the status list.
func directCIDRs(spec, service []string) []string {
	var out []string
	for _, c := range append(slices.Clone(spec), service...) {
		if !slices.Contains(out, c) && len(out) < maxDirectCIDRs {
			out = append(out, c)
		}
	}
	return out
}
