package topology

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// Values of the edge.edgeunit.io/topology annotation.
const (
	// TopologyUnit keeps traffic in the unit: unit nodes carry
	// topology.kubernetes.io/zone=<unit>, so PreferSameZone means the unit.
	TopologyUnit = "unit"
	// TopologyNode keeps traffic on the node when it has an endpoint.
	TopologyNode = "node"
)

// desiredDistribution is the trafficDistribution a Service's annotation
// asks for: nil without the annotation, an error for an unknown value.
func desiredDistribution(svc *corev1.Service) (*string, error) {
	v, ok := svc.Annotations[edgev1.AnnotationTopology]
	if !ok {
		return nil, nil
	}
	var d string
	switch v {
	case TopologyUnit:
		d = corev1.ServiceTrafficDistributionPreferSameZone
	case TopologyNode:
		d = corev1.ServiceTrafficDistributionPreferSameNode
	default:
		return nil, fmt.Errorf("annotation %s=%q: want %q or %q", edgev1.AnnotationTopology, v, TopologyUnit, TopologyNode)
	}
	return &d, nil
}

// ownsDistribution says whether manager applied spec.trafficDistribution,
// from the Service's managed fields.
func ownsDistribution(managed []metav1.ManagedFieldsEntry, manager string) (bool, error) {
	for _, e := range managed {
		if e.Manager != manager || e.Operation != metav1.ManagedFieldsOperationApply || e.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Spec map[string]json.RawMessage `json:"f:spec"`
		}
		if err := json.Unmarshal(e.FieldsV1.Raw, &fields); err != nil {
			return false, fmt.Errorf("decoding managed fields of %s: %w", manager, err)
		}
		if _, ok := fields.Spec["f:trafficDistribution"]; ok {
			return true, nil
		}
	}
	return false, nil
}
