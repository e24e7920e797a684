package nodepool

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
	"github.com/edgeunit/edgeunit/controllers/internal/statusapply"
)

// maxListedNodes bounds status.nodes; nodeCount has the full number.
const maxListedNodes = 100

// maxListedConflicts bounds how many conflicting keys a message names.
const maxListedConflicts = 5

// computeStatus derives a pool's status from its member nodes. Pure: the
// same pool and nodes always give the same status, so an unchanged pool is
// never written.
func computeStatus(pool *edgev1.NodePool, unit string, members []corev1.Node) edgev1.NodePoolStatus {
	st := edgev1.NodePoolStatus{
		ObservedGeneration: pool.Generation,
		NodeCount:          int32(len(members)),
		Unit:               unit,
		Conditions:         slices.Clone(pool.Status.Conditions),
	}
	want := desiredForPool(pool, unit)
	var (
		names     []string
		pending   bool
		conflicts []string
	)
	for i := range members {
		n := &members[i]
		names = append(names, n.Name)
		if nodeReady(n) {
			st.ReadyNodes++
		} else {
			st.NotReadyNodes++
		}
		prev, _ := readRecord(n)
		plan := planNode(n, want, prev)
		if !plan.empty() {
			pending = true
		}
		for _, c := range plan.conflicts {
			conflicts = append(conflicts, n.Name+": "+c)
		}
	}
	slices.Sort(names)
	if len(names) > maxListedNodes {
		names = names[:maxListedNodes]
	}
	st.Nodes = names

	synced := metav1.Condition{Type: edgev1.ConditionNodesSynced, ObservedGeneration: pool.Generation}
	switch {
	case len(conflicts) > 0:
		slices.Sort(conflicts)
		synced.Status, synced.Reason = metav1.ConditionFalse, edgev1.ReasonKeyConflict
		synced.Message = fmt.Sprintf("%d keys are held by another writer with a different value and were left alone: %s",
			len(conflicts), strings.Join(conditions.FirstN(conflicts, maxListedConflicts), "; "))
	case pending:
		synced.Status, synced.Reason = metav1.ConditionFalse, edgev1.ReasonSyncing
		// No running count here: it would rewrite the status for every
		// node that catches up.
		synced.Message = "Some nodes do not carry the pool's keys yet"
	case len(members) == 0:
		synced.Status, synced.Reason = metav1.ConditionTrue, edgev1.ReasonNoNodes
		synced.Message = "No node carries the label " + edgev1.LabelNodePool + "=" + pool.Name
	default:
		synced.Status, synced.Reason = metav1.ConditionTrue, edgev1.ReasonSynced
		synced.Message = fmt.Sprintf("All %d nodes carry the pool's keys", len(members))
	}
	ready := synced
	ready.Type = edgev1.ConditionReady
	meta.SetStatusCondition(&st.Conditions, synced)
	meta.SetStatusCondition(&st.Conditions, ready)
	return st
}

// statusEqual compares statuses ignoring condition transition times, which
// meta.SetStatusCondition keeps when nothing else changed.
func statusEqual(a, b edgev1.NodePoolStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// ownedStatus is the status as the pool controller server-side applies
// it. It owns the whole status, and every field is explicit (zeros, an
// empty list, an empty unit): a field left out would be left to whatever
// the server held, and the fields an older version wrote by merge patch
// belong to that Update entry, which an apply does not clear.
type ownedStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	NodeCount          int32              `json:"nodeCount"`
	ReadyNodes         int32              `json:"readyNodes"`
	NotReadyNodes      int32              `json:"notReadyNodes"`
	Nodes              []string           `json:"nodes"`
	Unit               string             `json:"unit"`
	Conditions         []metav1.Condition `json:"conditions"`
}

// newStatusApply is the server-side apply configuration of a pool's status.
func newStatusApply(name string, st edgev1.NodePoolStatus) *statusapply.Apply[ownedStatus] {
	// Empty, not nil: nil would be sent as null, which an apply drops.
	nodes := append([]string{}, st.Nodes...)
	conds := append([]metav1.Condition{}, st.Conditions...)
	return statusapply.New("NodePool", name, ownedStatus{
		ObservedGeneration: st.ObservedGeneration,
		NodeCount:          st.NodeCount,
		ReadyNodes:         st.ReadyNodes,
		NotReadyNodes:      st.NotReadyNodes,
		Nodes:              nodes,
		Unit:               st.Unit,
		Conditions:         conds,
	})
}
