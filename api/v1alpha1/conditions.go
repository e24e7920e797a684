package v1alpha1

// Condition types.
const (
	// ConditionReady is the summary condition of every kind.
	ConditionReady = "Ready"
	// ConditionNodesSynced says every member node carries the pool's labels,
	// annotations and taints.
	ConditionNodesSynced = "NodesSynced"

	// ConditionHubReady says the edge hub runs on every node of the unit.
	ConditionHubReady = "HubReady"
	// ConditionNodesConverted says every node's kubelet talks to its hub
	// (node conversion).
	ConditionNodesConverted = "NodesConverted"
	// ConditionTunnelConnected says every node's tunnel agent is connected.
	ConditionTunnelConnected = "TunnelConnected"
	// ConditionTopologyProgrammed says service topology is in place.
	ConditionTopologyProgrammed = "TopologyProgrammed"
	// ConditionNetworkBound says pod IP and VTEP bindings are recorded.
	ConditionNetworkBound = "NetworkBound"

	// ConditionServersReady says the tunnel-server replicas are available.
	ConditionServersReady = "ServersReady"
	// ConditionCertificateReady says the serving certificate is valid.
	ConditionCertificateReady = "CertificateReady"
)

// Condition reasons.
const (
	ReasonSynced          = "Synced"
	ReasonSyncing         = "Syncing"
	ReasonSyncFailed      = "SyncFailed"
	ReasonKeyConflict     = "KeyConflict"
	ReasonNoNodes         = "NoNodes"
	ReasonDeleting        = "Deleting"
	ReasonAvailable       = "Available"
	ReasonProgressing     = "Progressing"
	ReasonUnavailable     = "Unavailable"
	ReasonNotFound        = "NotFound"
	ReasonInvalid         = "Invalid"
	ReasonDisabled        = "Disabled"
	ReasonConnected       = "Connected"
	ReasonNotConnected    = "NotConnected"
	ReasonIssued          = "Issued"
	ReasonIssueFailed     = "IssueFailed"
	ReasonComponentsReady = "ComponentsReady"
	ReasonNotReady        = "NotReady"
	// ReasonPoolClaimed: a listed pool is owned by another (older) unit.
	ReasonPoolClaimed = "PoolClaimed"
	// ReasonBindingsPending: network autonomy is on, but bindings are not
	// recorded yet.
	ReasonBindingsPending = "BindingsPending"
	// ReasonLimitExceeded: the unit has more nodes or pods per node than
	// its status can record.
	ReasonLimitExceeded = "LimitExceeded"
	// ReasonConverted: every node's kubelet talks to its hub.
	ReasonConverted = "Converted"
	// ReasonConverting: some nodes are not switched yet.
	ReasonConverting = "Converting"
	// ReasonRolledBack: a node's switch failed and was undone.
	ReasonRolledBack = "RolledBack"
	// ReasonManual: spec.hub.nodeConversion is Manual.
	ReasonManual = "Manual"
)
