package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HubClient names a node component whose reads the edge hub caches.
// +kubebuilder:validation:Enum=kubelet;kube-proxy;coredns;flannel;tunnel-agent;edge-ipam
type HubClient string

// ServiceTopologyMode selects which Services keep their traffic inside the unit.
// +kubebuilder:validation:Enum=Disabled;Annotated;AllServices
type ServiceTopologyMode string

const (
	// TopologyDisabled: the hub does not filter EndpointSlices.
	TopologyDisabled ServiceTopologyMode = "Disabled"
	// TopologyAnnotated: only Services annotated edge.edgeunit.io/topology
	// are filtered.
	TopologyAnnotated ServiceTopologyMode = "Annotated"
	// TopologyAllServices: every Service without the annotation is treated
	// as unit-scoped.
	TopologyAllServices ServiceTopologyMode = "AllServices"
)

// NodeConversion says who points a node's kubelet at the edge hub.
// +kubebuilder:validation:Enum=Automatic;Manual
type NodeConversion string

const (
	// NodeConversionAutomatic: the hub installer converts a node when it
	// joins the unit and reverts it when it leaves.
	NodeConversionAutomatic NodeConversion = "Automatic"
	// NodeConversionManual: the hub is installed, but the kubelet is left
	// alone; `edge-hub convert` and `edge-hub revert` switch it by hand.
	NodeConversionManual NodeConversion = "Manual"
)

// HubSpec configures the edge hub that runs on every node of the unit.
type HubSpec struct {
	// image of the edge hub; the manager's default when unset.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// cacheClients are the node components whose reads the hub records for
	// offline use.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=6
	// +kubebuilder:default={kubelet,kube-proxy,coredns,flannel,tunnel-agent,edge-ipam}
	CacheClients []HubClient `json:"cacheClients,omitempty"`
	// healthCheckInterval is how often the hub probes kube-apiserver.
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1m')",message="healthCheckInterval must be between 1s and 1m"
	HealthCheckInterval *metav1.Duration `json:"healthCheckInterval,omitempty"`
	// nodeConversion: Automatic points each node's kubelet at its hub when
	// the node joins the unit (and back when it leaves); Manual leaves the
	// kubelet to `edge-hub convert` and `edge-hub revert`.
	// +optional
	// +kubebuilder:default=Automatic
	NodeConversion NodeConversion `json:"nodeConversion,omitempty"`
	// conversionTimeout bounds a conversion: a node that is not Ready
	// through its hub this long after its kubelet restarted is rolled back
	// to the apiserver.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('30m')",message="conversionTimeout must be between 10s and 30m"
	ConversionTimeout *metav1.Duration `json:"conversionTimeout,omitempty"`
}

// TunnelSpec connects the unit's nodes to a TunnelEndpoint.
type TunnelSpec struct {
	// endpoint is the name of the TunnelEndpoint the unit's agents dial.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Endpoint string `json:"endpoint"`
	// allowedPorts are the node-local ports the agent may open for the
	// cloud, such as the kubelet's 10250. Nothing else is reachable.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	// +kubebuilder:default={10250}
	AllowedPorts []int32 `json:"allowedPorts,omitempty"`
	// podPorts are ports of the node's own pods the agent may open for the
	// cloud, for webhooks or aggregated API servers that run on the
	// unit's nodes. None by default: the agent opens no pod.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	PodPorts []int32 `json:"podPorts,omitempty"`
	// agentImage of the tunnel agent; the manager's default when unset.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	AgentImage string `json:"agentImage,omitempty"`
}

// ServiceTopologySpec keeps Service traffic inside the unit.
type ServiceTopologySpec struct {
	// mode selects the Services whose endpoints are limited to the unit.
	// +optional
	// +kubebuilder:default=Annotated
	Mode ServiceTopologyMode `json:"mode,omitempty"`
}

// NetworkAutonomySpec keeps the unit's network stable across restarts while
// the cloud is unreachable.
// +kubebuilder:validation:XValidation:rule="!self.stableVTEPMAC || size(self.vtepDevice) > 0",message="vtepDevice is required when stableVTEPMAC is true"
type NetworkAutonomySpec struct {
	// stablePodIPs binds each pod's IP to its namespace/name and has
	// edge-ipam hand the same IP back after a restart.
	// +optional
	StablePodIPs bool `json:"stablePodIPs,omitempty"`
	// stableVTEPMAC binds each node's VXLAN device MAC to the node name.
	// +optional
	StableVTEPMAC bool `json:"stableVTEPMAC,omitempty"`
	// vtepDevice is the VXLAN device whose MAC is kept.
	// +optional
	// +kubebuilder:default="flannel.1"
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]*$`
	VTEPDevice string `json:"vtepDevice,omitempty"`
}

// EdgeUnitSpec is the desired state of an EdgeUnit.
type EdgeUnitSpec struct {
	// nodePools in this unit, by NodePool name (a DNS-1123 subdomain of at
	// most 63 characters: a name no NodePool could have is refused). A pool
	// belongs to at most one unit.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	NodePools []string `json:"nodePools"`
	// hub configures the edge hub on the unit's nodes.
	// +optional
	Hub HubSpec `json:"hub,omitempty"`
	// tunnel connects the unit's nodes to a TunnelEndpoint; no tunnel agent
	// runs when unset.
	// +optional
	Tunnel *TunnelSpec `json:"tunnel,omitempty"`
	// serviceTopology keeps Service traffic inside the unit.
	// +optional
	ServiceTopology ServiceTopologySpec `json:"serviceTopology,omitempty"`
	// networkAutonomy keeps pod IPs and VTEP MACs stable.
	// +optional
	NetworkAutonomy NetworkAutonomySpec `json:"networkAutonomy,omitempty"`
}

// RolloutStatus counts a node component's DaemonSet rollout.
type RolloutStatus struct {
	// desired is the number of nodes that should run the component.
	// +optional
	Desired int32 `json:"desired,omitempty"`
	// ready is the number of nodes where it is ready.
	// +optional
	Ready int32 `json:"ready,omitempty"`
	// updated is the number of nodes that run the current version.
	// +optional
	Updated int32 `json:"updated,omitempty"`
}

// ConversionStatus counts the unit's nodes by node conversion phase, as
// each node's hub installer reports it on its Node.
type ConversionStatus struct {
	// converted is the number of nodes whose kubelet talks to its hub.
	// +optional
	Converted int32 `json:"converted,omitempty"`
	// converting is the number of nodes being switched now.
	// +optional
	Converting int32 `json:"converting,omitempty"`
	// rolledBack is the number of nodes whose last switch failed and was
	// undone; the installer tries again later.
	// +optional
	RolledBack int32 `json:"rolledBack,omitempty"`
	// failedNodes names up to 10 rolled-back nodes.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=253
	FailedNodes []string `json:"failedNodes,omitempty"`
}

// PodIPBinding binds a pod, by namespace/name, to an IP.
type PodIPBinding struct {
	// pod is "namespace/name".
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=317
	Pod string `json:"pod"`
	// ip is the pod's bound IP.
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=45
	IP string `json:"ip"`
}

// NodeBinding holds a node's VTEP binding and the IP bindings of its pods.
// Pods are grouped by node so the node name is stored once.
type NodeBinding struct {
	// node name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// vtepMAC is the MAC bound to the node's VXLAN device.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`
	VTEPMAC string `json:"vtepMAC,omitempty"`
	// vtepIP is the node's VXLAN endpoint address.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	VTEPIP string `json:"vtepIP,omitempty"`
	// pods bound on this node. Atomic: one controller writes the list
	// whole, and per-entry field ownership would cost more than the
	// bindings themselves at 10,000 pods.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=512
	Pods []PodIPBinding `json:"pods,omitempty"`
}

// EdgeUnitStatus is the observed state of an EdgeUnit.
type EdgeUnitStatus struct {
	// observedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// nodeCount is the number of nodes in the unit's pools.
	// +optional
	NodeCount int32 `json:"nodeCount,omitempty"`
	// hub is the rollout of the edge hub.
	// +optional
	Hub RolloutStatus `json:"hub,omitempty"`
	// tunnelAgent is the rollout of the tunnel agent.
	// +optional
	TunnelAgent RolloutStatus `json:"tunnelAgent,omitempty"`
	// conversion counts the nodes whose kubelet goes through the hub.
	// +optional
	Conversion ConversionStatus `json:"conversion,omitempty"`
	// bindings are the unit's stable VTEP MACs and pod IPs, per node.
	// +optional
	// +listType=map
	// +listMapKey=node
	// +kubebuilder:validation:MaxItems=1000
	Bindings []NodeBinding `json:"bindings,omitempty"`
	// conditions: HubReady, NodesConverted, TunnelConnected,
	// TopologyProgrammed, NetworkBound and the summary Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// EdgeUnit is the unit of deployment and traffic: one or more NodePools that
// share an edge hub configuration, a tunnel and a service topology.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=eu,categories=edgeunit
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.nodePools`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodeCount`
// +kubebuilder:printcolumn:name="Hub",type=string,JSONPath=`.status.conditions[?(@.type=="HubReady")].status`
// +kubebuilder:printcolumn:name="Tunnel",type=string,JSONPath=`.status.conditions[?(@.type=="TunnelConnected")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: an EdgeUnit name is a label value"
type EdgeUnit struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the unit.
	// +required
	Spec EdgeUnitSpec `json:"spec"`
	// status is the observed state of the unit.
	// +optional
	Status EdgeUnitStatus `json:"status,omitempty"`
}

// EdgeUnitList is a list of EdgeUnits.
// +kubebuilder:object:root=true
type EdgeUnitList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EdgeUnit `json:"items"`
}

func init() {
	SchemeBuilder.Register(&EdgeUnit{}, &EdgeUnitList{})
}
