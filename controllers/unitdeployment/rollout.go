package unitdeployment

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// unitState is what one pass saw of a selected unit.
type unitState struct {
	Unit
	// found is false for a unit named in spec.units that does not exist.
	found bool
	// nodes in the unit; unreachable when there are some and every one is
	// cut off from the cloud.
	nodes       int
	unreachable bool
	// instance is the unit's Deployment as last seen, nil when absent.
	instance *appsv1.Deployment
	// conflict: the instance's name is taken by an object ud does not
	// control; it is left alone.
	conflict bool
	// renderErr: the unit's instance cannot be rendered (an override's
	// patch breaks it).
	renderErr error
}

// revisionOf is the UnitDeployment revision an instance was rendered from.
func revisionOf(d *appsv1.Deployment) string {
	if d == nil {
		return ""
	}
	return d.Annotations[edgev1.AnnotationRevision]
}

// complete reports whether d's own rollout is done: its controller has seen
// its latest spec and every replica is updated and available, with no old
// pod left.
func complete(d *appsv1.Deployment) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// counts reports whether the unit counts against maxUnavailableUnits: an
// instance that should be serving and is not. Units without nodes, or whose
// nodes are all unreachable, cannot become available and never block the
// others.
func (u *unitState) counts() bool {
	return u.found && !u.conflict && u.instance != nil && u.nodes > 0 && !u.unreachable && !complete(u.instance)
}

// plan picks the units whose instance is applied in this pass, in unit
// order. A unit without an instance gets one at once. An instance at the
// update revision is always re-applied (the apply skips it if nothing
// changed): a unit's own changes, such as its pools' taints, are not a
// rollout. An outdated instance is updated when the rollout is not paused
// and:
//   - its unit has no nodes (nothing runs there to disturb), or
//   - it is unavailable already (updating it costs no availability), or
//   - fewer than maxUnavailable units are unavailable.
//
// An outdated instance in an unreachable unit waits: it is updated when the
// unit returns, and meanwhile it does not hold the others back.
func plan(rollout edgev1.UnitRolloutSpec, rev string, units []unitState) []string {
	budget := int(max(rollout.MaxUnavailableUnits, 1))
	for i := range units {
		if units[i].counts() {
			budget--
		}
	}
	var apply []string
	for i := range units {
		u := &units[i]
		switch {
		case !u.found || u.conflict || u.renderErr != nil:
		case u.instance == nil, revisionOf(u.instance) == rev:
			apply = append(apply, u.Name)
		case rollout.Paused, u.unreachable:
		case u.nodes == 0, u.counts():
			apply = append(apply, u.Name)
		case budget > 0:
			budget--
			apply = append(apply, u.Name)
		}
	}
	return apply
}
