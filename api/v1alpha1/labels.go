package v1alpha1

// Keys this project writes on objects it does not own. Users may not set keys
// under Prefix through a NodePool: they belong to the controllers.
const (
	// Prefix is the prefix of every label and annotation the project owns.
	Prefix = "edge.edgeunit.io/"

	// LabelNodePool on a Node names the NodePool it belongs to. Users (or
	// their provisioning) set it; the controllers only read it.
	LabelNodePool = Prefix + "nodepool"
	// LabelUnit on a Node names the EdgeUnit whose pools contain it. Set by
	// the EdgeUnit controller.
	LabelUnit = Prefix + "unit"
	// LabelPoolType on a Node is the type of its pool, lower case ("edge" or
	// "cloud").
	LabelPoolType = Prefix + "pool-type"
	// LabelAutonomy on a Node is "true" while its pool has autonomy enabled.
	LabelAutonomy = Prefix + "autonomy"

	// AnnotationAutonomyDuration on a Node is how long its pods survive a lost
	// cloud link ("unbounded" or a Go duration).
	AnnotationAutonomyDuration = Prefix + "autonomy-duration"
	// AnnotationManaged on a Node records which labels, annotations and
	// taints the NodePool controller set, so it removes exactly those and
	// nothing another writer owns.
	AnnotationManaged = Prefix + "managed"

	// AnnotationConversion on a Node is the node conversion phase its hub
	// installer reports (a ConversionPhase); AnnotationConversionMessage
	// says why, for a rollback.
	AnnotationConversion        = Prefix + "conversion"
	AnnotationConversionMessage = Prefix + "conversion-message"

	// AnnotationTopology on a Service selects service topology: "unit" or
	// "node".
	AnnotationTopology = Prefix + "topology"

	// LabelUnitDeployment on an instance Deployment, its pods and the
	// Service of a UnitDeployment names the UnitDeployment. Together with
	// LabelUnit it is the instance's selector.
	LabelUnitDeployment = Prefix + "unitdeployment"
	// AnnotationRevision on an instance Deployment is the UnitDeployment
	// revision it was rendered from.
	AnnotationRevision = Prefix + "revision"

	// FinalizerNodePool holds a NodePool until its keys are off its nodes.
	FinalizerNodePool = Prefix + "nodepool-cleanup"
	// FinalizerEdgeUnit holds an EdgeUnit until its children are deleted.
	FinalizerEdgeUnit = Prefix + "edgeunit-cleanup"
	// FinalizerTunnelEndpoint holds a TunnelEndpoint until its children are
	// deleted.
	FinalizerTunnelEndpoint = Prefix + "tunnelendpoint-cleanup"

	// AutonomyUnbounded is the autonomy duration annotation's value when pods
	// are never evicted for a lost link.
	AutonomyUnbounded = "unbounded"
)

// ConversionPhase is the value of AnnotationConversion.
type ConversionPhase string

const (
	// ConversionConverting: the kubelet was pointed at the hub and is being
	// checked.
	ConversionConverting ConversionPhase = "Converting"
	// ConversionConverted: the kubelet talks to the hub.
	ConversionConverted ConversionPhase = "Converted"
	// ConversionRolledBack: the switch failed (the node was not Ready
	// through the hub in time) and the original kubeconfig is back.
	ConversionRolledBack ConversionPhase = "RolledBack"
	// ConversionReverted: the node left its unit and talks to the
	// apiserver again.
	ConversionReverted ConversionPhase = "Reverted"
)
