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

	// ConditionProgressing says a UnitDeployment's change is still moving
	// across its units.
	ConditionProgressing = "Progressing"
	// ConditionAvailable says every reachable unit's instance has its
	// replicas ready.
	ConditionAvailable = "Available"
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
	// ReasonRolledOut: every unit runs the current revision.
	ReasonRolledOut = "RolledOut"
	// ReasonRollingOut: units are being updated, at most
	// spec.rollout.maxUnavailableUnits at a time.
	ReasonRollingOut = "RollingOut"
	// ReasonPaused: spec.rollout.paused holds outdated units back.
	ReasonPaused = "Paused"
	// ReasonWaitingOnUnreachable: only units whose nodes are all
	// unreachable are outdated; they catch up when they return.
	ReasonWaitingOnUnreachable = "WaitingOnUnreachable"
	// ReasonUnitNotFound: a unit named in spec.units does not exist.
	ReasonUnitNotFound = "UnitNotFound"
	// ReasonInstanceConflict: an instance's name is taken by an object the
	// UnitDeployment does not control.
	ReasonInstanceConflict = "InstanceConflict"
)
