package unitdeployment

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
)

// maxListed bounds how many unit names a condition message lists.
const maxListed = 5

// maxInstances bounds status.instances (the CRD's MaxItems).
const maxInstances = 1000

// observed is what one pass saw and did; computeStatus turns it into
// status.
type observed struct {
	// revision is the update revision.
	revision string
	// units are the selected units, sorted by name; units named in
	// spec.units that do not exist are there with found false.
	units []unitState
	// serviceConflict: the Service's name is taken by a Service the
	// UnitDeployment does not control.
	serviceConflict bool
}

// computeStatus derives the status from what the pass observed. A failed
// pass keeps the last status and only turns Ready to SyncFailed;
// observedGeneration moves only with a pass that succeeded. Pure: the same
// inputs give the same status, so an unchanged UnitDeployment is never
// written.
func computeStatus(ud *edgev1.UnitDeployment, obs *observed, syncErr error) edgev1.UnitDeploymentStatus {
	st := *ud.Status.DeepCopy()
	if syncErr != nil {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: edgev1.ConditionReady, Status: metav1.ConditionFalse, Reason: edgev1.ReasonSyncFailed,
			Message: conditions.Truncate(syncErr.Error()), ObservedGeneration: ud.Generation,
		})
		return st
	}
	st = edgev1.UnitDeploymentStatus{
		ObservedGeneration: ud.Generation,
		UpdateRevision:     obs.revision,
		Conditions:         st.Conditions,
	}
	for i := range obs.units {
		u := &obs.units[i]
		if !u.found {
			continue
		}
		is := instanceStatus(u, obs.revision)
		st.Units++
		if is.Revision == obs.revision {
			st.UpdatedUnits++
			if complete(u.instance) {
				st.ReadyUnits++
			}
		}
		st.Replicas += is.Replicas
		st.ReadyReplicas += is.ReadyReplicas
		st.UpdatedReplicas += is.UpdatedReplicas
		if len(st.Instances) < maxInstances {
			st.Instances = append(st.Instances, is)
		}
	}
	progressing := progressingCondition(ud, obs)
	available := availableCondition(obs)
	for _, c := range []metav1.Condition{progressing, available, readyCondition(obs, progressing, available)} {
		c.ObservedGeneration = ud.Generation
		c.Message = conditions.Truncate(c.Message)
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st
}

// instanceStatus reports a unit's instance. updatedReplicas counts only
// pods of the update revision: an outdated instance has none.
func instanceStatus(u *unitState, rev string) edgev1.UnitInstanceStatus {
	is := edgev1.UnitInstanceStatus{Unit: u.Name, Nodes: int32(u.nodes), Unreachable: u.unreachable}
	d := u.instance
	if d == nil || u.conflict {
		return is
	}
	is.Replicas = ptr.Deref(d.Spec.Replicas, 1)
	is.ReadyReplicas = d.Status.ReadyReplicas
	is.Revision = revisionOf(d)
	if is.Revision == rev && d.Status.ObservedGeneration >= d.Generation {
		is.UpdatedReplicas = d.Status.UpdatedReplicas
	}
	return is
}

// pending are the units whose instance is not yet at the update revision
// with its rollout complete, split by why.
type pending struct {
	rolling, unreachable, held []string
}

func pendingUnits(ud *edgev1.UnitDeployment, obs *observed) pending {
	var p pending
	for i := range obs.units {
		u := &obs.units[i]
		if !u.found || u.conflict || u.renderErr != nil {
			continue
		}
		outdated := u.instance == nil || revisionOf(u.instance) != obs.revision
		switch {
		case !outdated && (complete(u.instance) || u.nodes == 0 || u.unreachable):
		case outdated && u.unreachable:
			p.unreachable = append(p.unreachable, u.Name)
		case outdated && ud.Spec.Rollout.Paused && u.instance != nil:
			p.held = append(p.held, u.Name)
		default:
			p.rolling = append(p.rolling, u.Name)
		}
	}
	return p
}

func progressingCondition(ud *edgev1.UnitDeployment, obs *observed) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionProgressing, Status: metav1.ConditionFalse}
	p := pendingUnits(ud, obs)
	switch {
	case len(p.rolling) > 0:
		c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonRollingOut
		c.Message = fmt.Sprintf("Revision %s is rolling out (maxUnavailableUnits %d); not done in %s",
			obs.revision, max(ud.Spec.Rollout.MaxUnavailableUnits, 1), list(p.rolling))
	case len(p.held) > 0:
		c.Reason = edgev1.ReasonPaused
		c.Message = fmt.Sprintf("spec.rollout.paused holds %s at an older revision", list(p.held))
	case len(p.unreachable) > 0:
		c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonWaitingOnUnreachable
		c.Message = fmt.Sprintf("Every other unit runs revision %s; waiting for the nodes of %s to be reachable again", obs.revision, list(p.unreachable))
	default:
		c.Reason = edgev1.ReasonRolledOut
		c.Message = fmt.Sprintf("Every unit runs revision %s", obs.revision)
	}
	return c
}

// availableCondition says whether every reachable unit with nodes has all
// its replicas available.
func availableCondition(obs *observed) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionAvailable, Status: metav1.ConditionTrue, Reason: edgev1.ReasonAvailable}
	var unavailable, empty []string
	serving := 0
	for i := range obs.units {
		u := &obs.units[i]
		switch {
		case !u.found || u.unreachable:
		case u.nodes == 0:
			empty = append(empty, u.Name)
		case u.instance == nil || u.conflict || u.instance.Status.AvailableReplicas < ptr.Deref(u.instance.Spec.Replicas, 1):
			unavailable = append(unavailable, u.Name)
		default:
			serving++
		}
	}
	if len(unavailable) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, edgev1.ReasonUnavailable
		c.Message = fmt.Sprintf("Not every replica is available in %s", list(unavailable))
		return c
	}
	c.Message = fmt.Sprintf("Every replica is available (reachable units with nodes: %d)", serving)
	if len(empty) > 0 {
		c.Message += "; units with no nodes: " + list(empty)
	}
	return c
}

func readyCondition(obs *observed, progressing, available metav1.Condition) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionReady, Status: metav1.ConditionFalse}
	var missing, conflicts, invalid []string
	found := 0
	for i := range obs.units {
		u := &obs.units[i]
		switch {
		case !u.found:
			missing = append(missing, u.Name)
		case u.conflict:
			conflicts = append(conflicts, u.Name)
		case u.renderErr != nil:
			invalid = append(invalid, fmt.Sprintf("%s (%v)", u.Name, u.renderErr))
		}
		if u.found {
			found++
		}
	}
	switch {
	case len(invalid) > 0:
		c.Reason = edgev1.ReasonInvalid
		c.Message = "The instance cannot be rendered for " + strings.Join(conditions.FirstN(invalid, maxListed), "; ")
	case len(conflicts) > 0 || obs.serviceConflict:
		c.Reason = edgev1.ReasonInstanceConflict
		c.Message = "Deployments the UnitDeployment does not control hold the instance names of units " + list(conflicts)
		if obs.serviceConflict {
			c.Message = "A Service the UnitDeployment does not control holds its name"
		}
	case len(missing) > 0:
		c.Reason = edgev1.ReasonUnitNotFound
		c.Message = "spec.units names EdgeUnits that do not exist: " + list(missing)
	case found == 0:
		c.Reason = edgev1.ReasonUnitNotFound
		c.Message = "spec.units selects no EdgeUnit"
	case available.Status != metav1.ConditionTrue:
		c.Reason, c.Message = available.Reason, available.Message
	case progressing.Reason != edgev1.ReasonRolledOut:
		c.Reason, c.Message = progressing.Reason, progressing.Message
	default:
		c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonRolledOut
		c.Message = fmt.Sprintf("%d units run revision %s with every replica available", found, obs.revision)
	}
	return c
}

func list(names []string) string {
	return strings.Join(conditions.FirstN(names, maxListed), ", ")
}
