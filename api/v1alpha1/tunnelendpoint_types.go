package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceType is how the tunnel servers are exposed.
// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
type ServiceType string

// TunnelExposure says how edge agents reach the tunnel servers.
// +kubebuilder:validation:XValidation:rule="self.type != 'ClusterIP' || size(self.addresses) > 0",message="addresses are required when type is ClusterIP: edge agents cannot reach a ClusterIP"
type TunnelExposure struct {
	// type of the Service in front of the servers.
	// +optional
	// +kubebuilder:default=LoadBalancer
	Type ServiceType `json:"type,omitempty"`
	// addresses agents dial, in addition to what the Service reports: DNS
	// names (lower case, DNS-1123) or IPv4/IPv6 addresses, without a port.
	// Also put in the serving certificate.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}|[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,6}:[0-9]{1,3}(\.[0-9]{1,3}){3})$`
	Addresses []string `json:"addresses,omitempty"`
	// annotations for the Service, such as a cloud load balancer's settings.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TunnelPorts are the servers' listener ports.
// +kubebuilder:validation:XValidation:rule="self.agent != self.connect && self.agent != self.passthrough && self.connect != self.passthrough",message="agent, connect and passthrough ports must differ"
type TunnelPorts struct {
	// agent is the mTLS port agents dial.
	// +optional
	// +kubebuilder:default=10262
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Agent int32 `json:"agent,omitempty"`
	// connect is the HTTP CONNECT port kube-apiserver's egress selector uses.
	// +optional
	// +kubebuilder:default=10263
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Connect int32 `json:"connect,omitempty"`
	// passthrough is the TLS passthrough port routed by SNI, for scrapers.
	// +optional
	// +kubebuilder:default=10264
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Passthrough int32 `json:"passthrough,omitempty"`
}

// TunnelEndpointSpec is the desired state of a TunnelEndpoint.
type TunnelEndpointSpec struct {
	// replicas of the tunnel server. Agents connect to every replica.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	Replicas *int32 `json:"replicas,omitempty"`
	// image of the tunnel server; the manager's default when unset.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// service says how agents reach the servers.
	// +optional
	Service TunnelExposure `json:"service,omitempty"`
	// ports of the servers' listeners.
	// +optional
	Ports TunnelPorts `json:"ports,omitempty"`
	// certificateLifetime of the servers' serving certificates; they are
	// renewed at two thirds of it.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="certificateLifetime must be between 1h and 8760h"
	CertificateLifetime *metav1.Duration `json:"certificateLifetime,omitempty"`
	// resources of the server container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// egress says where the servers send kube-apiserver's cluster traffic
	// (the egress selector's "cluster" egress): to an edge node or a pod on
	// one through that node's agent, to the cloud side directly.
	// +optional
	Egress TunnelEgress `json:"egress,omitempty"`
}

// TunnelEgress is the routing policy of the servers' CONNECT listener. An
// edge node (by name or address) and a pod on an edge node go through
// that node's agent. A cloud-side destination is dialled by the server
// itself: a node outside Edge pools or a pod on one, an address in the
// cluster's Service ranges (unless serviceCIDRs is false), and an address
// in direct. Anything else is refused.
type TunnelEgress struct {
	// direct are further CIDRs the servers dial themselves, such as the
	// cloud network of webhooks and aggregated API servers that run
	// outside the cluster.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="each entry must be a CIDR, such as 10.96.0.0/12"
	Direct []string `json:"direct,omitempty"`
	// serviceCIDRs adds the cluster's Service ranges (its ServiceCIDR
	// objects) to the direct CIDRs, so webhooks and aggregated APIs behind
	// a ClusterIP keep working.
	// +optional
	// +kubebuilder:default=true
	ServiceCIDRs *bool `json:"serviceCIDRs,omitempty"`
}

// ConnectedAgent is an agent connected to the servers.
type ConnectedAgent struct {
	// node the agent runs on.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// servers is how many server replicas the agent is connected to.
	// +optional
	Servers int32 `json:"servers,omitempty"`
	// lastSeen is when a server last heard from the agent.
	// +optional
	LastSeen metav1.Time `json:"lastSeen,omitempty"`
}

// TunnelEndpointStatus is the observed state of a TunnelEndpoint.
type TunnelEndpointStatus struct {
	// observedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// readyServers is the number of available server replicas.
	// +optional
	ReadyServers int32 `json:"readyServers,omitempty"`
	// addresses agents should dial, from spec and the Service.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	Addresses []string `json:"addresses,omitempty"`
	// directCIDRs are the CIDRs the servers dial themselves: spec.egress.direct
	// and, unless turned off, the cluster's Service ranges.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=43
	DirectCIDRs []string `json:"directCIDRs,omitempty"`
	// connectedAgents is the number of connected agents.
	// +optional
	ConnectedAgents int32 `json:"connectedAgents,omitempty"`
	// agents lists connected agents, at most 256; connectedAgents has the
	// full number.
	// +optional
	// +listType=map
	// +listMapKey=node
	// +kubebuilder:validation:MaxItems=256
	Agents []ConnectedAgent `json:"agents,omitempty"`
	// conditions: ServersReady, CertificateReady and the summary Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TunnelEndpoint is a tunnel-server deployment in the cloud that edge agents
// dial, so the cloud reaches nodes behind NAT.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=te;tunnel,categories=edgeunit
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Servers",type=integer,JSONPath=`.status.readyServers`
// +kubebuilder:printcolumn:name="Agents",type=integer,JSONPath=`.status.connectedAgents`
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.service.type`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 52",message="metadata.name must be at most 52 characters: the TunnelEndpoint's Deployment and Services are named after it"
type TunnelEndpoint struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the endpoint.
	// +optional
	Spec TunnelEndpointSpec `json:"spec,omitempty"`
	// status is the observed state of the endpoint.
	// +optional
	Status TunnelEndpointStatus `json:"status,omitempty"`
}

// TunnelEndpointList is a list of TunnelEndpoints.
// +kubebuilder:object:root=true
type TunnelEndpointList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TunnelEndpoint `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TunnelEndpoint{}, &TunnelEndpointList{})
}
