package v1alpha1

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UnitSelector picks EdgeUnits by name or by label, never both.
// +kubebuilder:validation:XValidation:rule="has(self.names) != has(self.selector)",message="set exactly one of names and selector"
type UnitSelector struct {
	// names of the EdgeUnits.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Names []string `json:"names,omitempty"`
	// selector over the EdgeUnits' labels; an empty selector selects every
	// unit.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// InstanceMetadata is put on every instance Deployment.
type InstanceMetadata struct {
	// labels of each instance Deployment.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`
	// annotations of each instance Deployment.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`
}

// InstanceSpec is a Deployment's spec without the fields the controller
// owns: the selector (it is derived, so no override or patch can break it)
// and paused (the unit rollout decides when an instance changes).
type InstanceSpec struct {
	// replicas of each instance, unless an override sets them.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`
	// template of the instances' pods. The controller adds its selector
	// labels, a node selector for the unit and tolerations for its pools'
	// taints.
	// +required
	Template corev1.PodTemplateSpec `json:"template"`
	// strategy of each instance's own rollout across its pods.
	// +optional
	Strategy appsv1.DeploymentStrategy `json:"strategy,omitempty"`
	// minReadySeconds of each instance.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinReadySeconds int32 `json:"minReadySeconds,omitempty"`
	// revisionHistoryLimit of each instance.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
	// progressDeadlineSeconds of each instance.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
}

// InstanceTemplate is the Deployment stamped once per selected unit.
type InstanceTemplate struct {
	// metadata of each instance Deployment.
	// +optional
	Metadata InstanceMetadata `json:"metadata,omitempty"`
	// spec of each instance Deployment.
	// +required
	Spec InstanceSpec `json:"spec"`
}

// ContainerOverride changes one container of the pod template, by name.
type ContainerOverride struct {
	// name of the container (or init container) to change.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// image replaces the container's image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// env is merged into the container's env by variable name.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Env []corev1.EnvVar `json:"env,omitempty"`
	// resources replace the container's resources.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// PatchOp is an RFC 6902 JSON patch operation.
// +kubebuilder:validation:Enum=add;remove;replace;move;copy;test
type PatchOp string

// JSONPatch is one RFC 6902 operation on the instance Deployment, as JSON
// (apiVersion, kind, metadata, spec). The webhook applies every override's
// patches at admission, so an operation missing its value, or one that
// breaks the instance, is refused there.
// +kubebuilder:validation:XValidation:rule="self.op in ['move', 'copy'] ? has(self.from) : true",message="from is required for move and copy"
type JSONPatch struct {
	// op is the operation.
	// +required
	Op PatchOp `json:"op"`
	// path is a JSON pointer into the instance.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path"`
	// from is the source pointer of move and copy.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	From string `json:"from,omitempty"`
	// value of add, replace and test.
	// +optional
	Value *apiextensionsv1.JSON `json:"value,omitempty"`
}

// UnitOverride changes the instances of some units. Overrides apply in
// order; a later one wins where two touch the same field.
type UnitOverride struct {
	// units the override applies to.
	// +required
	Units UnitSelector `json:"units"`
	// replicas of these units' instances.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`
	// containers changed in these units' instances.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Containers []ContainerOverride `json:"containers,omitempty"`
	// patches applied last, to the instance Deployment as JSON. A patch
	// may not change the instance's name, namespace or selector.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Patches []JSONPatch `json:"patches,omitempty"`
}

// UnitServiceSpec is one Service in front of every instance, with its
// traffic kept inside the client's unit.
type UnitServiceSpec struct {
	// ports of the Service.
	// +required
	// +listType=map
	// +listMapKey=port
	// +listMapKey=protocol
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Ports []corev1.ServicePort `json:"ports"`
}

// UnitRolloutSpec says how a change moves across units.
type UnitRolloutSpec struct {
	// maxUnavailableUnits is how many units may be updating (or otherwise
	// unavailable) at once. Units whose nodes are all unreachable are
	// neither counted nor updated: they catch up when they return.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxUnavailableUnits int32 `json:"maxUnavailableUnits,omitempty"`
	// paused stops changes to existing instances; units that gain an
	// instance still get the current revision.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// UnitDeploymentSpec is the desired state of a UnitDeployment.
type UnitDeploymentSpec struct {
	// units that get an instance.
	// +required
	Units UnitSelector `json:"units"`
	// template of the instance each unit gets.
	// +required
	Template InstanceTemplate `json:"template"`
	// overrides for some units' instances, applied in order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Overrides []UnitOverride `json:"overrides,omitempty"`
	// service, when set, is a Service named like the UnitDeployment that
	// selects every instance's pods and keeps each client's traffic in its
	// own unit (edge.edgeunit.io/topology: unit).
	// +optional
	Service *UnitServiceSpec `json:"service,omitempty"`
	// rollout moves a change unit by unit.
	// +optional
	Rollout UnitRolloutSpec `json:"rollout,omitempty"`
}

// UnitInstanceStatus is one unit's instance.
type UnitInstanceStatus struct {
	// unit is the EdgeUnit's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Unit string `json:"unit"`
	// nodes is the number of nodes in the unit.
	// +optional
	Nodes int32 `json:"nodes,omitempty"`
	// replicas the instance asks for.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// readyReplicas of the instance.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// updatedReplicas of the instance: pods of its current spec.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas,omitempty"`
	// revision of the UnitDeployment the instance was rendered from.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Revision string `json:"revision,omitempty"`
	// unreachable is true while every node of the unit is unreachable: an
	// outdated instance waits for the unit to return.
	// +optional
	Unreachable bool `json:"unreachable,omitempty"`
}

// UnitDeploymentStatus is the observed state of a UnitDeployment.
type UnitDeploymentStatus struct {
	// observedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// updateRevision is the revision of the current template and
	// overrides, a hash of them.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	UpdateRevision string `json:"updateRevision,omitempty"`
	// units is the number of selected units that exist.
	// +optional
	Units int32 `json:"units"`
	// updatedUnits run the update revision.
	// +optional
	UpdatedUnits int32 `json:"updatedUnits"`
	// readyUnits run the update revision with every replica ready.
	// +optional
	ReadyUnits int32 `json:"readyUnits"`
	// replicas, readyReplicas and updatedReplicas summed over instances.
	// +optional
	Replicas int32 `json:"replicas"`
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`
	// instances per unit, sorted by unit (the first 1000).
	// +optional
	// +listType=map
	// +listMapKey=unit
	// +kubebuilder:validation:MaxItems=1000
	Instances []UnitInstanceStatus `json:"instances,omitempty"`
	// conditions: Progressing, Available and the summary Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// UnitDeployment is a processing unit: one Deployment stamped per selected
// EdgeUnit as <name>-<unit>, pinned to the unit's nodes, with per-unit
// overrides, an optional unit-local Service and a rollout that moves unit
// by unit.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ud,categories=edgeunit
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Units",type=integer,JSONPath=`.status.units`
// +kubebuilder:printcolumn:name="Ready-Units",type=integer,JSONPath=`.status.readyUnits`
// +kubebuilder:printcolumn:name="Updated-Units",type=integer,JSONPath=`.status.updatedUnits`
// +kubebuilder:printcolumn:name="Ready-Replicas",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: it is a label value on every instance"
type UnitDeployment struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the processing unit.
	// +required
	Spec UnitDeploymentSpec `json:"spec"`
	// status is the observed state of the processing unit.
	// +optional
	Status UnitDeploymentStatus `json:"status,omitempty"`
}

// UnitDeploymentList is a list of UnitDeployments.
// +kubebuilder:object:root=true
type UnitDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UnitDeployment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&UnitDeployment{}, &UnitDeploymentList{})
}
