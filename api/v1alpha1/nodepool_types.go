package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodePoolType says where a pool's nodes run.
// +kubebuilder:validation:Enum=Edge;Cloud
type NodePoolType string

const (
	// NodePoolEdge nodes run at the edge, behind NAT, on a weak link.
	NodePoolEdge NodePoolType = "Edge"
	// NodePoolCloud nodes run next to the control plane.
	NodePoolCloud NodePoolType = "Cloud"
)

// TaintEffect is the effect of a taint pushed to a pool's nodes.
// +kubebuilder:validation:Enum=NoSchedule;PreferNoSchedule;NoExecute
type TaintEffect string

// NodePoolTaint is a taint the pool puts on each member node.
type NodePoolTaint struct {
	// key of the taint, a qualified name such as "example.com/dedicated".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('edge.edgeunit.io/')",message="keys under edge.edgeunit.io/ are reserved for the controllers"
	Key string `json:"key"`
	// value of the taint.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Value string `json:"value,omitempty"`
	// effect of the taint.
	// +required
	Effect TaintEffect `json:"effect"`
}

// AutonomySpec says how long pods keep running on a pool's nodes while the
// cloud cannot reach them.
// +kubebuilder:validation:XValidation:rule="self.enabled || !has(self.duration)",message="duration requires enabled: true"
type AutonomySpec struct {
	// enabled gives pods that land on the pool's nodes NoExecute tolerations
	// for unreachable and not-ready nodes, so a cut link does not evict them.
	// +required
	Enabled bool `json:"enabled"`
	// duration is how long pods survive a lost link before eviction.
	// Unset means they are never evicted for it.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('8760h')",message="duration must be between 1m and 8760h"
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// NodePoolSpec is the desired state of a NodePool.
type NodePoolSpec struct {
	// type of the pool's nodes. Immutable.
	// +optional
	// +kubebuilder:default=Edge
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="type is immutable"
	Type NodePoolType `json:"type,omitempty"`

	// labels pushed to every member node. Keys under edge.edgeunit.io/ are
	// reserved. Keys that another writer already set on a node are left as
	// they are and reported in the NodesSynced condition.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && !k.startsWith('edge.edgeunit.io/'))",message="label keys must be at most 317 characters and not under edge.edgeunit.io/"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 63)",message="label values must be at most 63 characters"
	Labels map[string]string `json:"labels,omitempty"`

	// annotations pushed to every member node. Keys under edge.edgeunit.io/
	// are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && !k.startsWith('edge.edgeunit.io/'))",message="annotation keys must be at most 317 characters and not under edge.edgeunit.io/"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 4096)",message="annotation values must be at most 4096 characters"
	Annotations map[string]string `json:"annotations,omitempty"`

	// taints pushed to every member node.
	// +optional
	// +listType=map
	// +listMapKey=key
	// +listMapKey=effect
	// +kubebuilder:validation:MaxItems=32
	Taints []NodePoolTaint `json:"taints,omitempty"`

	// autonomy of the pool's nodes while the cloud link is cut. Only Edge
	// pools may enable it.
	// +optional
	Autonomy *AutonomySpec `json:"autonomy,omitempty"`
}

// NodePoolStatus is the observed state of a NodePool.
type NodePoolStatus struct {
	// observedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// nodeCount is the number of member nodes.
	// +optional
	NodeCount int32 `json:"nodeCount,omitempty"`
	// readyNodes is the number of members whose Ready condition is True.
	// +optional
	ReadyNodes int32 `json:"readyNodes,omitempty"`
	// notReadyNodes is the number of members that are not Ready.
	// +optional
	NotReadyNodes int32 `json:"notReadyNodes,omitempty"`
	// nodes lists member node names, sorted, at most 100; nodeCount has the
	// full number.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	Nodes []string `json:"nodes,omitempty"`
	// unit is the EdgeUnit this pool belongs to, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Unit string `json:"unit,omitempty"`
	// conditions: NodesSynced and the summary Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodePool is a set of nodes with one fate: a site, a rack, a CDN point of
// presence. A node joins by carrying the label edge.edgeunit.io/nodepool=<pool>.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=np;npool,categories=edgeunit
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodeCount`
// +kubebuilder:printcolumn:name="Ready-Nodes",type=integer,JSONPath=`.status.readyNodes`
// +kubebuilder:printcolumn:name="Unit",type=string,JSONPath=`.status.unit`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: a NodePool name is a label value"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.autonomy) || !self.spec.autonomy.enabled || self.spec.type == 'Edge'",message="spec.autonomy can only be enabled on Edge pools"
type NodePool struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the pool.
	// +optional
	Spec NodePoolSpec `json:"spec,omitempty"`
	// status is the observed state of the pool.
	// +optional
	Status NodePoolStatus `json:"status,omitempty"`
}

// NodePoolList is a list of NodePools.
// +kubebuilder:object:root=true
type NodePoolList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodePool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&NodePool{}, &NodePoolList{})
}
