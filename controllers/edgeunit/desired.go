package edgeunit

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/applied"
	"github.com/edgeunit/edgeunit/internal/conversion"
	"github.com/edgeunit/edgeunit/internal/hub"
	"github.com/edgeunit/edgeunit/internal/hubinstall"
	"github.com/edgeunit/edgeunit/internal/netbind"
)

// Children are named after the unit. A unit name is at most 63 characters
// (a label value), so names stay far below the 253 of a DaemonSet or
// ConfigMap; the pods' generated names are shortened by the apiserver.
func hubName(unit string) string   { return "edgeunit-hub-" + unit }
func agentName(unit string) string { return "edgeunit-agent-" + unit }

// Label values of app.kubernetes.io/name.
const (
	appHubInstaller = "edge-hub-installer"
	appHub          = "edge-hub"
	appAgent        = "tunnel-agent"
)

const (
	// annotationConfigHash on the agent's pod template rolls the agents
	// when their ConfigMap changes (its values reach them as env vars).
	annotationConfigHash = edgev1.Prefix + "config-hash"
)

// Paths on the node and in the containers.
const (
	hostManifestDir = "/etc/kubernetes/manifests"
	hostStateDir    = "/var/lib/edgeunit"
	hostHubCacheDir = "/var/lib/edgeunit/hub-cache"
	// hostAgentCertDir keeps the agent's CSR-issued identity across
	// restarts, so an agent restarting offline still connects.
	hostAgentCertDir = "/var/lib/edgeunit/tunnel-agent"

	installerSourceDir = "/etc/edgeunit/hub-install"
	hubConfigDir       = "/etc/edge-hub"
	// hostConversionDir keeps the kubelet's original kubeconfig and the
	// node conversion's state (package conversion).
	hostConversionDir = "/var/lib/edgeunit/conversion"
	// hostSystemdDir holds systemd's private socket, through which the
	// installer restarts the kubelet.
	hostSystemdDir = "/run/systemd"
	// hostNetbindDir holds the socket edge-ipam asks for pod IP bindings.
	hostNetbindDir = "/var/run/edgeunit"
	hubDataDir     = "/var/lib/edge-hub"
	agentCADir     = "/etc/edgeunit/tunnel-ca"
)

// Ports on the node's loopback.
const (
	hubAdminPort    = 10267
	agentHealthPort = 10266
	// defaultAgentPort is the TunnelEndpoint's agent port when the API
	// default was not applied (objects built in memory).
	defaultAgentPort = 10262
)

// Keys of the agent ConfigMap.
const (
	agentKeyServers      = "servers"
	agentKeyAllowedPorts = "allowedPorts"
	// agentKeyPodPorts is present only when the unit opens pod ports, so
	// units without them keep their config hash and agents.
	agentKeyPodPorts = "podPorts"
	agentKeyEndpoint = "endpoint"
	agentKeyCA       = "ca.crt"
)

// hubKnownClients are the cache clients internal/hub accepts; the API also
// allows clients the hub does not tell apart yet (edge-ipam), which reach
// the hub through unit.yaml only.
var hubKnownClients = []string{hub.ClientKubelet, hub.ClientKubeProxy, hub.ClientCoreDNS, hub.ClientFlannel, hub.ClientTunnelAgent}

func labels(unit, app string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       app,
		"app.kubernetes.io/instance":   unit,
		"app.kubernetes.io/part-of":    "edgeunit",
		"app.kubernetes.io/managed-by": FieldOwner,
		edgev1.LabelUnit:               unit,
	}
}

// selector is the immutable part of labels.
func selector(unit, app string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/instance": unit}
}

func ownerRef(u *edgev1.EdgeUnit) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(edgev1.GroupVersion.String()).
		WithKind("EdgeUnit").
		WithName(u.Name).
		WithUID(u.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// nodeSelector pins a component to the nodes the NodePool controller
// labels into the unit, so a node moving between pools moves between units.
func nodeSelector(unit string) map[string]string {
	return map[string]string{edgev1.LabelUnit: unit}
}

func imageOr(image, fallback string) string {
	if image != "" {
		return image
	}
	return fallback
}

// desiredHubConfig is the hub's configuration file for the unit.
func desiredHubConfig(u *edgev1.EdgeUnit, o Options) hub.Config {
	cfg := hub.DefaultConfig()
	cfg.Kubeconfig = o.kubeletKubeconfig()
	// The kubelet's kubeconfig may come to point at the hub itself; the
	// hub dials the apiserver the manager was told nodes should use.
	cfg.Server = o.APIServerURL
	// Once the node is converted, the kubelet's kubeconfig names the hub:
	// without APIServerURL the hub reads the apiserver's address from the
	// original the conversion kept.
	cfg.OriginalKubeconfig = hostConversionDir + "/" + conversion.OriginalFile
	cfg.DataDir = hubDataDir
	// In-cluster clients on the node reach the hub too: the kubelet hands
	// pods this address as the apiserver's (see hub.Config).
	cfg.ListenInCluster = hub.DefaultListenInCluster
	if len(u.Spec.Hub.CacheClients) > 0 {
		var clients []string
		for _, c := range u.Spec.Hub.CacheClients {
			if slices.Contains(hubKnownClients, string(c)) {
				clients = append(clients, string(c))
			}
		}
		slices.Sort(clients)
		cfg.CacheClients = clients
	}
	if d := u.Spec.Hub.HealthCheckInterval; d != nil && d.Duration > 0 {
		cfg.ProbeInterval = hub.Duration{Duration: d.Duration}
	}
	if networkAutonomy(u) {
		cfg.NetBind = netbind.Options{
			Enabled:  true,
			UnitFile: hubConfigDir + "/" + hubinstall.KeyUnit,
			Listen:   "unix://" + hostNetbindDir + "/netbind.sock",
		}
	}
	return cfg
}

// networkAutonomy says whether the hub enforces network bindings on the
// unit's nodes.
func networkAutonomy(u *edgev1.EdgeUnit) bool {
	return u.Spec.NetworkAutonomy.StablePodIPs || u.Spec.NetworkAutonomy.StableVTEPMAC
}

// desiredUnitFile tells the hub about its unit: its pools and the switches
// the hub's configuration has no field for yet.
func desiredUnitFile(u *edgev1.EdgeUnit, pools []string) hubinstall.UnitFile {
	f := hubinstall.UnitFile{
		Unit:                u.Name,
		NodePools:           slices.Sorted(slices.Values(pools)),
		ServiceTopologyMode: string(topologyMode(u)),
		StablePodIPs:        u.Spec.NetworkAutonomy.StablePodIPs,
		StableVTEPMAC:       u.Spec.NetworkAutonomy.StableVTEPMAC,
		VTEPDevice:          u.Spec.NetworkAutonomy.VTEPDevice,
	}
	for _, c := range u.Spec.Hub.CacheClients {
		f.CacheClients = append(f.CacheClients, string(c))
	}
	slices.Sort(f.CacheClients)
	return f
}

func topologyMode(u *edgev1.EdgeUnit) edgev1.ServiceTopologyMode {
	if m := u.Spec.ServiceTopology.Mode; m != "" {
		return m
	}
	return edgev1.TopologyAnnotated
}

// hubClientKubeconfig points node components at the hub's loopback
// listener; the hub adds the node's identity.
func hubClientKubeconfig(listen string) clientcmdv1.Config {
	return clientcmdv1.Config{
		APIVersion:     "v1",
		Kind:           "Config",
		Clusters:       []clientcmdv1.NamedCluster{{Name: "edge-hub", Cluster: clientcmdv1.Cluster{Server: "http://" + listen}}},
		Contexts:       []clientcmdv1.NamedContext{{Name: "edge-hub", Context: clientcmdv1.Context{Cluster: "edge-hub", AuthInfo: "node"}}},
		AuthInfos:      []clientcmdv1.NamedAuthInfo{{Name: "node"}},
		CurrentContext: "edge-hub",
	}
}

// desiredHubPod is the edge hub's static Pod. It can reference nothing in
// the API (no ConfigMap, Secret or ServiceAccount): everything comes from
// the node's disk, so it starts with the cloud unreachable.
func desiredHubPod(u *edgev1.EdgeUnit, image, configHash string, o Options) *corev1.Pod {
	hostPath := func(name, path string, t corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t}}}
	}
	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Host: "127.0.0.1", Port: intstr.FromInt32(hubAdminPort), Path: path, Scheme: corev1.URISchemeHTTP,
			}},
			InitialDelaySeconds: 5, PeriodSeconds: 10, TimeoutSeconds: 3, FailureThreshold: failures,
		}
	}
	mounts := []corev1.VolumeMount{
		{Name: "config", MountPath: hubConfigDir, ReadOnly: true},
		{Name: "cache", MountPath: hubDataDir},
		{Name: "kubelet-kubeconfig", MountPath: o.kubeletKubeconfig(), ReadOnly: true},
		{Name: "kubelet-pki", MountPath: o.kubeletPKIDir(), ReadOnly: true},
		{Name: "conversion", MountPath: hostConversionDir, ReadOnly: true},
	}
	volumes := []corev1.Volume{
		hostPath("config", hostStateDir+"/"+hubinstall.HubStateSubdir, corev1.HostPathDirectory),
		hostPath("cache", hostHubCacheDir, corev1.HostPathDirectoryOrCreate),
		hostPath("kubelet-kubeconfig", o.kubeletKubeconfig(), corev1.HostPathFile),
		hostPath("kubelet-pki", o.kubeletPKIDir(), corev1.HostPathDirectory),
		hostPath("conversion", hostConversionDir, corev1.HostPathDirectoryOrCreate),
	}
	// Root, whatever user the image names: the kubelet's key and the
	// files the installer writes belong to root on the node. No
	// capability but NET_ADMIN: the hub puts its in-cluster listener's
	// address on the node's loopback interface, and netbind sets the VXLAN
	// device's MAC.
	security := &corev1.SecurityContext{
		RunAsUser:                new(int64(0)),
		AllowPrivilegeEscalation: new(false),
		ReadOnlyRootFilesystem:   new(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN"}},
	}
	if networkAutonomy(u) {
		// edge-ipam finds the hub's socket in a host directory.
		mounts = append(mounts, corev1.VolumeMount{Name: "netbind", MountPath: hostNetbindDir})
		volumes = append(volumes, hostPath("netbind", hostNetbindDir, corev1.HostPathDirectoryOrCreate))
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        appHub,
			Namespace:   metav1.NamespaceSystem,
			Labels:      labels(u.Name, appHub),
			Annotations: map[string]string{hubinstall.AnnotationConfigHash: configHash},
		},
		Spec: corev1.PodSpec{
			HostNetwork: true,
			// The node's resolv.conf, as the kubelet resolves: after an
			// offline reboot the cluster's DNS is not up before the hub
			// is, and the apiserver may be named by a host name.
			DNSPolicy:         corev1.DNSDefault,
			PriorityClassName: "system-node-critical",
			Containers: []corev1.Container{{
				Name:    appHub,
				Image:   image,
				Command: []string{"/edge-hub"},
				Args: []string{
					"--config=" + hubConfigDir + "/" + hubinstall.KeyConfig,
					"--node-name=$(NODE_NAME)",
				},
				Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "spec.nodeName"},
				}}},
				LivenessProbe:  probe("/healthz", 3),
				ReadinessProbe: probe("/readyz", 1),
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
				},
				SecurityContext: security,
				VolumeMounts:    mounts,
			}},
			Volumes: volumes,
		},
	}
}

// desiredHubConfigMap holds everything the installer puts on a node: the
// hub's configuration, the unit file, the client kubeconfig and the static
// Pod built for exactly those (it carries their hash, so a changed
// configuration restarts the hub).
func desiredHubConfigMap(u *edgev1.EdgeUnit, pools []string, o Options) (*corev1ac.ConfigMapApplyConfiguration, error) {
	cfg := desiredHubConfig(u, o)
	files := map[string][]byte{}
	for key, v := range map[string]any{
		hubinstall.KeyConfig:     cfg,
		hubinstall.KeyUnit:       desiredUnitFile(u, pools),
		hubinstall.KeyKubeconfig: hubClientKubeconfig(cfg.ListenHTTP),
	} {
		b, err := yaml.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("rendering %s of EdgeUnit %s: %w", key, u.Name, err)
		}
		files[key] = b
	}
	pod, err := yaml.Marshal(desiredHubPod(u, imageOr(u.Spec.Hub.Image, o.HubImage), hubinstall.ConfigHash(files), o))
	if err != nil {
		return nil, fmt.Errorf("rendering the hub manifest of EdgeUnit %s: %w", u.Name, err)
	}
	data := map[string]string{hubinstall.KeyManifest: string(pod)}
	for k, v := range files {
		data[k] = string(v)
	}
	return corev1ac.ConfigMap(hubName(u.Name), o.Namespace).
		WithLabels(labels(u.Name, appHub)).
		WithOwnerReferences(ownerRef(u)).
		WithData(data), nil
}

// desiredHubDaemonSet runs the installer on every node of the unit. It is
// not the hub: the hub is the static Pod it installs, which keeps running
// (and restarts with the node) whatever happens to the installer. The
// installer also converts the node (package conversion): it rewrites the
// kubelet's kubeconfig, so it mounts its directory read-write, and
// restarts the kubelet through the host's systemd socket. Told to stop
// because the node left the unit, it reverts the node within its grace
// period.
func desiredHubDaemonSet(u *edgev1.EdgeUnit, o Options) *appsv1ac.DaemonSetApplyConfiguration {
	hostPath := func(name, path string, t corev1.HostPathType) *corev1ac.VolumeApplyConfiguration {
		return corev1ac.Volume().WithName(name).WithHostPath(corev1ac.HostPathVolumeSource().WithPath(path).WithType(t))
	}
	kubeconfigDir := path.Dir(o.kubeletKubeconfig())
	mode := u.Spec.Hub.NodeConversion
	if mode == "" {
		mode = edgev1.NodeConversionAutomatic
	}
	timeout := conversion.DefaultTimeout
	if d := u.Spec.Hub.ConversionTimeout; d != nil && d.Duration > 0 {
		timeout = d.Duration
	}
	listen := hub.DefaultConfig().ListenHTTP
	installer := corev1ac.Container().
		WithName("installer").
		WithImage(imageOr(u.Spec.Hub.Image, o.HubImage)).
		WithCommand("/edge-hub", "install").
		WithArgs(
			"--source-dir="+installerSourceDir,
			"--manifest-dir=/host"+hostManifestDir,
			"--state-dir=/host"+hostStateDir,
			"--unit="+u.Name,
			"--node-conversion="+string(mode),
			"--conversion-timeout="+timeout.String(),
			"--conversion-state-dir="+hostConversionDir,
			"--kubelet-kubeconfig="+o.kubeletKubeconfig(),
			"--hub-url=http://"+listen,
			"--hub-admin-url=http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(hubAdminPort)),
			"--systemd-socket="+hostSystemdDir+"/private",
			"--in-cluster-address="+hub.DefaultListenInCluster,
		).
		WithEnv(corev1ac.EnvVar().WithName("NODE_NAME").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("spec.nodeName")))).
		// Ready when the hub it installed serves: HubReady counts these.
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithHost("127.0.0.1").WithPort(intstr.FromInt32(hubAdminPort)).WithPath("/readyz")).
			WithPeriodSeconds(10).WithTimeoutSeconds(3)).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")})).
		// Root: the kubelet's files belong to root, and systemd takes
		// requests on its private socket from root only. NET_ADMIN: when
		// the node leaves, it removes the hub's in-cluster address.
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsUser(0).
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithCapabilities(corev1ac.Capabilities().WithAdd("NET_ADMIN"))).
		WithVolumeMounts(
			corev1ac.VolumeMount().WithName("source").WithMountPath(installerSourceDir).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("manifests").WithMountPath("/host"+hostManifestDir),
			corev1ac.VolumeMount().WithName("state").WithMountPath("/host"+hostStateDir),
			// At the node's own paths: the kubeconfig names its
			// credentials by absolute path.
			corev1ac.VolumeMount().WithName("kubeconfig-dir").WithMountPath(kubeconfigDir),
			corev1ac.VolumeMount().WithName("conversion").WithMountPath(hostConversionDir),
			corev1ac.VolumeMount().WithName("systemd").WithMountPath(hostSystemdDir),
		)
	volumes := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName("source").WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(hubName(u.Name))),
		hostPath("manifests", hostManifestDir, corev1.HostPathDirectoryOrCreate),
		hostPath("state", hostStateDir, corev1.HostPathDirectoryOrCreate),
		hostPath("kubeconfig-dir", kubeconfigDir, corev1.HostPathDirectory),
		hostPath("conversion", hostConversionDir, corev1.HostPathDirectoryOrCreate),
		hostPath("systemd", hostSystemdDir, corev1.HostPathDirectoryOrCreate),
	}
	if pki := o.kubeletPKIDir(); pki != kubeconfigDir && !strings.HasPrefix(pki, kubeconfigDir+"/") {
		installer.WithVolumeMounts(corev1ac.VolumeMount().WithName("kubelet-pki").WithMountPath(pki).WithReadOnly(true))
		volumes = append(volumes, hostPath("kubelet-pki", pki, corev1.HostPathDirectory))
	}
	return appsv1ac.DaemonSet(hubName(u.Name), o.Namespace).
		WithLabels(labels(u.Name, appHubInstaller)).
		WithOwnerReferences(ownerRef(u)).
		WithSpec(appsv1ac.DaemonSetSpec().
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selector(u.Name, appHubInstaller))).
			WithUpdateStrategy(rollingUpdate()).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(labels(u.Name, appHubInstaller)).
				WithSpec(corev1ac.PodSpec().
					WithNodeSelector(nodeSelector(u.Name)).
					WithTolerations(tolerateEverything()).
					// The readiness probe reaches the hub on the node's
					// loopback; the apiserver is resolved as the kubelet
					// resolves it, from the node's resolv.conf.
					WithHostNetwork(true).
					WithDNSPolicy(corev1.DNSDefault).
					WithAutomountServiceAccountToken(false).
					// Time to finish a rollback under way (a minute) and
					// then revert the node when it leaves the unit.
					WithTerminationGracePeriodSeconds(int64((hubinstall.StopBound+time.Minute)/time.Second) + 30).
					WithContainers(installer).
					WithVolumes(volumes...))))
}

// desiredAgentConfigMap is the agent's configuration: the servers to dial
// (the TunnelEndpoint's addresses on its agent port), the node and pod
// ports it may open, and the operator CA's certificate (never its key). The
// second result hashes it for the pod template.
func desiredAgentConfigMap(u *edgev1.EdgeUnit, te *edgev1.TunnelEndpoint, caPEM []byte, o Options) (*corev1ac.ConfigMapApplyConfiguration, string) {
	data := map[string]string{
		agentKeyServers:      strings.Join(agentServers(te), ","),
		agentKeyAllowedPorts: allowedPorts(u.Spec.Tunnel),
		agentKeyEndpoint:     te.Name,
		agentKeyCA:           string(caPEM),
	}
	if ports := podPorts(u.Spec.Tunnel); ports != "" {
		data[agentKeyPodPorts] = ports
	}
	cm := corev1ac.ConfigMap(agentName(u.Name), o.Namespace).
		WithLabels(labels(u.Name, appAgent)).
		WithOwnerReferences(ownerRef(u)).
		WithData(data)
	return cm, applied.Hash(data)
}

// agentServers are host:port of every address the endpoint reports. The
// TunnelEndpoint controller reports host:port on the agent port; a bare
// host gets the agent port.
func agentServers(te *edgev1.TunnelEndpoint) []string {
	port := te.Spec.Ports.Agent
	if port == 0 {
		port = defaultAgentPort
	}
	out := make([]string, 0, len(te.Status.Addresses))
	for _, a := range te.Status.Addresses {
		if _, _, err := net.SplitHostPort(a); err == nil {
			out = append(out, a)
			continue
		}
		out = append(out, net.JoinHostPort(strings.Trim(a, "[]"), strconv.Itoa(int(port))))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func allowedPorts(t *edgev1.TunnelSpec) string {
	if len(t.AllowedPorts) == 0 {
		return portList([]int32{10250})
	}
	return portList(t.AllowedPorts)
}

// podPorts is the unit's pod ports; empty when it opens no pod.
func podPorts(t *edgev1.TunnelSpec) string { return portList(t.PodPorts) }

// portList is ports sorted, without duplicates, comma-separated.
func portList(ports []int32) string {
	ports = slices.Clone(ports)
	slices.Sort(ports)
	s := make([]string, 0, len(ports))
	for _, p := range slices.Compact(ports) {
		s = append(s, strconv.Itoa(int(p)))
	}
	return strings.Join(s, ",")
}

// desiredAgentDaemonSet runs the tunnel agent on every node of the unit.
// The agent obtains its identity (a client certificate for its node name)
// through the CSR API with the kubelet's credential, which it reads from
// the node's disk, and keeps it in a state directory on the node.
func desiredAgentDaemonSet(u *edgev1.EdgeUnit, configHash string, o Options) *appsv1ac.DaemonSetApplyConfiguration {
	name := agentName(u.Name)
	fromConfig := func(env, key string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(env).WithValueFrom(corev1ac.EnvVarSource().
			WithConfigMapKeyRef(corev1ac.ConfigMapKeySelector().WithName(name).WithKey(key)))
	}
	health := func(path string) *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithHost("127.0.0.1").WithPort(intstr.FromInt32(agentHealthPort)).WithPath(path)).
			WithPeriodSeconds(10).WithTimeoutSeconds(3)
	}
	agent := corev1ac.Container().
		WithName(appAgent).
		WithImage(imageOr(u.Spec.Tunnel.AgentImage, o.AgentImage)).
		WithCommand("/tunnel-agent").
		WithArgs(
			"--node-name=$(NODE_NAME)",
			"--servers=$(TUNNEL_SERVERS)",
			"--allowed-ports=$(TUNNEL_ALLOWED_PORTS)",
			"--ca-file="+agentCADir+"/"+agentKeyCA,
			"--kubeconfig="+o.kubeletKubeconfig(),
			"--cert-dir="+hostAgentCertDir,
			"--health-address=127.0.0.1:"+strconv.Itoa(agentHealthPort),
		).
		WithEnv(
			corev1ac.EnvVar().WithName("NODE_NAME").WithValueFrom(corev1ac.EnvVarSource().
				WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("spec.nodeName"))),
			fromConfig("TUNNEL_SERVERS", agentKeyServers),
			fromConfig("TUNNEL_ALLOWED_PORTS", agentKeyAllowedPorts),
		).
		WithReadinessProbe(health("/readyz")).
		WithLivenessProbe(health("/healthz").WithFailureThreshold(3)).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")})).
		// Root, without capabilities: the kubelet's key and the state
		// directory belong to root on the node.
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsUser(0).
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))).
		// The kubelet's files are mounted where they are on the node: its
		// kubeconfig names its client certificate by that path.
		WithVolumeMounts(
			corev1ac.VolumeMount().WithName("ca").WithMountPath(agentCADir).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("kubelet-kubeconfig").WithMountPath(o.kubeletKubeconfig()).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("kubelet-pki").WithMountPath(o.kubeletPKIDir()).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("cert-dir").WithMountPath(hostAgentCertDir),
		)
	// Only for units that open pods: the agents of the others keep their
	// pod template and do not roll. The agent reads its Node's pod CIDRs
	// with the kubelet's kubeconfig, which the Node authorizer allows.
	if podPorts(u.Spec.Tunnel) != "" {
		agent.WithArgs("--pod-ports=$(TUNNEL_POD_PORTS)").WithEnv(fromConfig("TUNNEL_POD_PORTS", agentKeyPodPorts))
	}
	return appsv1ac.DaemonSet(name, o.Namespace).
		WithLabels(labels(u.Name, appAgent)).
		WithOwnerReferences(ownerRef(u)).
		WithSpec(appsv1ac.DaemonSetSpec().
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selector(u.Name, appAgent))).
			WithUpdateStrategy(rollingUpdate()).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(labels(u.Name, appAgent)).
				WithAnnotations(map[string]string{annotationConfigHash: configHash}).
				WithSpec(corev1ac.PodSpec().
					WithNodeSelector(nodeSelector(u.Name)).
					WithTolerations(tolerateEverything()).
					WithHostNetwork(true).
					WithDNSPolicy(corev1.DNSClusterFirstWithHostNet).
					WithAutomountServiceAccountToken(false).
					WithContainers(agent).
					WithVolumes(
						corev1ac.Volume().WithName("ca").WithConfigMap(corev1ac.ConfigMapVolumeSource().
							WithName(name).WithItems(corev1ac.KeyToPath().WithKey(agentKeyCA).WithPath(agentKeyCA))),
						corev1ac.Volume().WithName("kubelet-kubeconfig").WithHostPath(corev1ac.HostPathVolumeSource().
							WithPath(o.kubeletKubeconfig()).WithType(corev1.HostPathFile)),
						corev1ac.Volume().WithName("kubelet-pki").WithHostPath(corev1ac.HostPathVolumeSource().
							WithPath(o.kubeletPKIDir()).WithType(corev1.HostPathDirectory)),
						corev1ac.Volume().WithName("cert-dir").WithHostPath(corev1ac.HostPathVolumeSource().
							WithPath(hostAgentCertDir).WithType(corev1.HostPathDirectoryOrCreate)),
					))))
}

// tolerateEverything: edge nodes carry their pools' taints, and a node
// that lost the cloud is tainted unreachable; the hub and agent must stay.
func tolerateEverything() *corev1ac.TolerationApplyConfiguration {
	return corev1ac.Toleration().WithOperator(corev1.TolerationOpExists)
}

// rollingUpdate replaces a quarter of the pods at a time: the hub keeps
// running while its installer restarts, and an agent restart only drops
// that node's tunnel for a moment.
func rollingUpdate() *appsv1ac.DaemonSetUpdateStrategyApplyConfiguration {
	return appsv1ac.DaemonSetUpdateStrategy().
		WithType(appsv1.RollingUpdateDaemonSetStrategyType).
		WithRollingUpdate(appsv1ac.RollingUpdateDaemonSet().WithMaxUnavailable(intstr.FromString("25%")))
}

// rolloutOf reads a DaemonSet's counts; a DaemonSet whose controller has
// not seen its latest spec reports nothing updated.
func rolloutOf(ds *appsv1.DaemonSet) edgev1.RolloutStatus {
	if ds == nil {
		return edgev1.RolloutStatus{}
	}
	r := edgev1.RolloutStatus{
		Desired: ds.Status.DesiredNumberScheduled,
		Ready:   ds.Status.NumberReady,
		Updated: ds.Status.UpdatedNumberScheduled,
	}
	if ds.Status.ObservedGeneration < ds.Generation {
		r.Updated = 0
	}
	return r
}
