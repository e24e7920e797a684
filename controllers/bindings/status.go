package bindings

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
)

// maxListed bounds how many names a condition message lists.
const maxListed = 5

// networkCondition says whether the unit's bindings are all recorded.
func networkCondition(u *edgev1.EdgeUnit, sum summary) metav1.Condition {
	na := u.Spec.NetworkAutonomy
	c := metav1.Condition{Type: edgev1.ConditionNetworkBound, Status: metav1.ConditionFalse, ObservedGeneration: u.Generation}
	switch {
	case !na.StablePodIPs && !na.StableVTEPMAC:
		c.Reason = edgev1.ReasonDisabled
		c.Message = "spec.networkAutonomy enables neither stablePodIPs nor stableVTEPMAC"
	case sum.nodes == 0:
		c.Reason = edgev1.ReasonNoNodes
		c.Message = "No node carries the label " + edgev1.LabelUnit + "=" + u.Name
	case len(sum.overflow) > 0:
		c.Reason = edgev1.ReasonLimitExceeded
		c.Message = fmt.Sprintf("Bindings beyond %d nodes per unit or %d pods per node are not recorded; over the limit: %s",
			maxNodes, maxPodsPerNode, strings.Join(conditions.FirstN(sum.overflow, maxListed), ", "))
	case len(sum.noVTEPIP) > 0:
		c.Status, c.Reason = metav1.ConditionUnknown, edgev1.ReasonBindingsPending
		c.Message = fmt.Sprintf("%d of %d nodes report no InternalIP (nor %s) for their VTEP: %s",
			len(sum.noVTEPIP), sum.nodes, AnnotationFlannelPublicIP, strings.Join(conditions.FirstN(sum.noVTEPIP, maxListed), ", "))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonSynced
		c.Message = bound(na, sum)
	}
	return c
}

func bound(na edgev1.NetworkAutonomySpec, sum summary) string {
	var parts []string
	if na.StableVTEPMAC {
		parts = append(parts, fmt.Sprintf("VTEP MACs of %d nodes", sum.nodes))
	}
	if na.StablePodIPs {
		parts = append(parts, fmt.Sprintf("IPs of %d pods", sum.pods))
	}
	return "Recorded the " + strings.Join(parts, " and the ")
}

// nextCondition is c with the transition time of the unit's current
// NetworkBound condition when its status did not change.
func nextCondition(cur []metav1.Condition, c metav1.Condition, now metav1.Time) metav1.Condition {
	c.LastTransitionTime = now
	if old := meta.FindStatusCondition(cur, c.Type); old != nil && old.Status == c.Status {
		c.LastTransitionTime = old.LastTransitionTime
	}
	return c
}

// unchanged reports whether the current bindings and conditions already
// hold these bindings and this condition (transition time aside).
func unchanged(curBindings []edgev1.NodeBinding, curConds []metav1.Condition, bindings []edgev1.NodeBinding, c metav1.Condition) bool {
	old := meta.FindStatusCondition(curConds, c.Type)
	return old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message &&
		old.ObservedGeneration == c.ObservedGeneration &&
		bindingsEqual(curBindings, bindings)
}

func bindingsEqual(a, b []edgev1.NodeBinding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Node != y.Node || x.VTEPMAC != y.VTEPMAC || x.VTEPIP != y.VTEPIP || len(x.Pods) != len(y.Pods) {
			return false
		}
		if len(x.Pods) > 0 && !equality.Semantic.DeepEqual(x.Pods, y.Pods) {
			return false
		}
	}
	return true
}

// statusApply is the server-side apply configuration of the fields this
// controller owns on an EdgeUnit's status: the bindings and the
// NetworkBound condition. Bindings it leaves out are removed, since it is
// their only writer; the other conditions and fields keep their owners.
type statusApply struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   applyMeta      `json:"metadata"`
	Status     bindingsStatus `json:"status"`
}

type applyMeta struct {
	Name string `json:"name"`
	// ResourceVersion is filled from the apply's response; it stays empty
	// in requests, which are unconditional.
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

type bindingsStatus struct {
	Bindings   []edgev1.NodeBinding `json:"bindings,omitempty"`
	Conditions []metav1.Condition   `json:"conditions"`
}

func newStatusApply(name string, bindings []edgev1.NodeBinding, c metav1.Condition) *statusApply {
	return &statusApply{
		APIVersion: edgev1.GroupVersion.String(),
		Kind:       "EdgeUnit",
		Metadata:   applyMeta{Name: name},
		Status:     bindingsStatus{Bindings: bindings, Conditions: []metav1.Condition{c}},
	}
}

// IsApplyConfiguration marks statusApply as an apply configuration.
func (*statusApply) IsApplyConfiguration() {}

// GetName, GetNamespace, GetKind and GetAPIVersion let controller-runtime
// route the apply.
func (a *statusApply) GetName() *string       { return &a.Metadata.Name }
func (a *statusApply) GetNamespace() *string  { return nil }
func (a *statusApply) GetKind() *string       { return &a.Kind }
func (a *statusApply) GetAPIVersion() *string { return &a.APIVersion }
