package tunnelendpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/certs"
)

// Defaults for fields a TunnelEndpoint may leave out. The CRD defaults them
// too, but only inside a parent object that is present (a TunnelEndpoint
// without spec.ports gets no port defaults), so the builders apply them
// again.
const (
	DefaultReplicas            int32 = 2
	DefaultAgentPort           int32 = 10262
	DefaultConnectPort         int32 = 10263
	DefaultPassthroughPort     int32 = 10264
	DefaultCertificateLifetime       = 24 * time.Hour
	DefaultServiceType               = edgev1.ServiceType("LoadBalancer")
)

// Port names on the container and both Services.
const (
	PortAgent       = "agent"
	PortConnect     = "connect"
	PortPassthrough = "passthrough"
	portHealth      = "health"
)

const (
	namePrefix     = "edgeunit-tunnel-"
	headlessSuffix = "-headless"
	tlsSuffix      = "-tls"
	// maxServiceName is a DNS-1035 label's limit; Service names must fit.
	maxServiceName = 63

	containerName = "tunnel-server"
	tlsVolume     = "tls"
	// CertDir is where the serving Secret is mounted in server pods.
	CertDir = "/etc/edgeunit/tunnel"
	// nonRootID is the user and group the server runs as (distroless
	// "nonroot"), so runAsNonRoot holds whatever the image declares.
	nonRootID int64 = 65532
)

// Labels and annotations on the children.
const (
	// LabelTunnelEndpoint names the TunnelEndpoint a child belongs to.
	LabelTunnelEndpoint = edgev1.Prefix + "tunnelendpoint"
	// AnnotationCAHash on the pod template is a hash of the CA bundle the
	// servers verify agents with. The servers load that bundle once, so a
	// new CA must roll the pods; the serving certificate itself is reloaded
	// from the mounted files when it changes, so renewals roll nothing.
	AnnotationCAHash = edgev1.Prefix + "ca-hash"
)

// Names of the children of a TunnelEndpoint.

// DeploymentName is the name of the tunnel-server Deployment and of the
// Service agents dial.
func DeploymentName(te string) string { return baseName(te) }

// ServiceName is the name of the Service of type spec.service.type.
func ServiceName(te string) string { return baseName(te) }

// HeadlessServiceName is the name of the headless Service that lists every
// replica, ready or not.
func HeadlessServiceName(te string) string { return baseName(te) + headlessSuffix }

// SecretName is the name of the Secret with the serving certificate.
func SecretName(te string) string { return baseName(te) + tlsSuffix }

// baseName is edgeunit-tunnel-<name> when that leaves room for the headless
// suffix in a DNS-1035 label. Longer names, and names with dots (legal for
// a cluster-scoped object, not for a Service), are shortened and suffixed
// with a hash of the full name so two endpoints never share children.
func baseName(te string) string {
	const maxBase = maxServiceName - len(headlessSuffix)
	if n := namePrefix + te; len(n) <= maxBase && !strings.Contains(te, ".") {
		return n
	}
	sum := sha256.Sum256([]byte(te))
	hash := hex.EncodeToString(sum[:4])
	s := strings.ReplaceAll(te, ".", "-")
	if keep := maxBase - len(namePrefix) - 1 - len(hash); len(s) > keep {
		s = s[:keep]
	}
	return namePrefix + strings.TrimRight(s, "-") + "-" + hash
}

// config is what the builders need besides the TunnelEndpoint.
type config struct {
	Namespace      string
	Image          string
	ServiceAccount string
	ClusterDomain  string
	// EgressLifetime is the lifetime of kube-apiserver's egress client
	// certificate.
	EgressLifetime time.Duration
}

// ports are a TunnelEndpoint's listener ports with defaults applied.
type ports struct{ Agent, Connect, Passthrough int32 }

func portsOf(te *edgev1.TunnelEndpoint) ports {
	p := ports{Agent: te.Spec.Ports.Agent, Connect: te.Spec.Ports.Connect, Passthrough: te.Spec.Ports.Passthrough}
	if p.Agent == 0 {
		p.Agent = DefaultAgentPort
	}
	if p.Connect == 0 {
		p.Connect = DefaultConnectPort
	}
	if p.Passthrough == 0 {
		p.Passthrough = DefaultPassthroughPort
	}
	return p
}

// healthPort is the servers' /healthz and /readyz port: 8081 unless a
// listener already uses it.
func (p ports) healthPort() int32 {
	for h := int32(8081); ; h++ {
		if h != p.Agent && h != p.Connect && h != p.Passthrough {
			return h
		}
	}
}

func replicasOf(te *edgev1.TunnelEndpoint) int32 {
	if te.Spec.Replicas != nil {
		return *te.Spec.Replicas
	}
	return DefaultReplicas
}

func serviceTypeOf(te *edgev1.TunnelEndpoint) corev1.ServiceType {
	if te.Spec.Service.Type != "" {
		return corev1.ServiceType(te.Spec.Service.Type)
	}
	return corev1.ServiceType(DefaultServiceType)
}

func lifetimeOf(te *edgev1.TunnelEndpoint) time.Duration {
	if l := te.Spec.CertificateLifetime; l != nil && l.Duration > 0 {
		return l.Duration
	}
	return DefaultCertificateLifetime
}

func (c config) imageFor(te *edgev1.TunnelEndpoint) string {
	if te.Spec.Image != "" {
		return te.Spec.Image
	}
	return c.Image
}

// selectorLabels select a TunnelEndpoint's server pods. They never change:
// a Deployment's selector is immutable.
func selectorLabels(te *edgev1.TunnelEndpoint) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":     "tunnel-server",
		"app.kubernetes.io/instance": baseName(te.Name),
	}
}

func childLabels(te *edgev1.TunnelEndpoint) map[string]string {
	l := selectorLabels(te)
	l["app.kubernetes.io/component"] = "tunnel-server"
	l["app.kubernetes.io/part-of"] = "edgeunit"
	l["app.kubernetes.io/managed-by"] = "edgeunit-manager"
	l[LabelTunnelEndpoint] = te.Name
	return l
}

func ownerRef(te *edgev1.TunnelEndpoint) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(edgev1.GroupVersion.String()).
		WithKind("TunnelEndpoint").
		WithName(te.Name).
		WithUID(te.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// serverArgs are the tunnel-server's flags (internal/tunnel.ServerOptions).
// One serving certificate covers the agent and CONNECT listeners; the
// operator CA authenticates agents and kube-apiserver's egress client, and
// the CONNECT listener admits only the latter's name (EgressSecretName).
// direct are the CIDRs the servers dial themselves (observeEgress).
func serverArgs(te *edgev1.TunnelEndpoint, direct []string) []string {
	p := portsOf(te)
	crt, key, ca := CertDir+"/"+corev1.TLSCertKey, CertDir+"/"+corev1.TLSPrivateKeyKey, CertDir+"/"+corev1.ServiceAccountRootCAKey
	args := []string{
		"--id=$(POD_NAME)",
		fmt.Sprintf("--agent-address=:%d", p.Agent),
		"--agent-cert-file=" + crt,
		"--agent-key-file=" + key,
		"--agent-client-ca-file=" + ca,
		fmt.Sprintf("--connect-address=:%d", p.Connect),
		"--connect-cert-file=" + crt,
		"--connect-key-file=" + key,
		"--connect-client-ca-file=" + ca,
		"--connect-client-names=" + certs.EgressCommonName,
		fmt.Sprintf("--passthrough-address=:%d", p.Passthrough),
		fmt.Sprintf("--health-address=:%d", p.healthPort()),
		"--tunnel-endpoint=" + te.Name,
	}
	if len(direct) > 0 {
		args = append(args, "--direct-cidrs="+strings.Join(direct, ","))
	}
	return args
}

// defaultResources apply when spec.resources is unset.
var defaultResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
}

func resourcesOf(te *edgev1.TunnelEndpoint) *corev1ac.ResourceRequirementsApplyConfiguration {
	r := defaultResources
	if te.Spec.Resources != nil {
		r = *te.Spec.Resources
	}
	ac := corev1ac.ResourceRequirements()
	if len(r.Requests) > 0 {
		ac.WithRequests(r.Requests)
	}
	if len(r.Limits) > 0 {
		ac.WithLimits(r.Limits)
	}
	return ac
}

// desiredDeployment is the tunnel-server Deployment. caHash rolls the pods
// when the CA they trust changes.
func desiredDeployment(te *edgev1.TunnelEndpoint, cfg config, caHash string, direct []string) *appsv1ac.DeploymentApplyConfiguration {
	p := portsOf(te)
	labels := childLabels(te)
	selector := selectorLabels(te)

	podSecurity := corev1ac.PodSecurityContext().
		WithRunAsNonRoot(true).
		WithRunAsUser(nonRootID).
		WithRunAsGroup(nonRootID).
		WithFSGroup(nonRootID).
		WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
	if min(p.Agent, p.Connect, p.Passthrough) < 1024 {
		// A non-root process binds a privileged port only with this (safe,
		// namespaced) sysctl; the restricted profile allows it.
		podSecurity.WithSysctls(corev1ac.Sysctl().WithName("net.ipv4.ip_unprivileged_port_start").WithValue("0"))
	}

	container := corev1ac.Container().
		WithName(containerName).
		WithImage(cfg.imageFor(te)).
		WithImagePullPolicy(corev1.PullIfNotPresent).
		WithCommand("/tunnel-server").
		WithArgs(serverArgs(te, direct)...).
		WithEnv(corev1ac.EnvVar().WithName("POD_NAME").WithValueFrom(
			corev1ac.EnvVarSource().WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("metadata.name")))).
		WithPorts(
			corev1ac.ContainerPort().WithName(PortAgent).WithContainerPort(p.Agent).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName(PortConnect).WithContainerPort(p.Connect).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName(PortPassthrough).WithContainerPort(p.Passthrough).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName(portHealth).WithContainerPort(p.healthPort()).WithProtocol(corev1.ProtocolTCP),
		).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/readyz").WithPort(intstr.FromString(portHealth))).
			WithPeriodSeconds(5)).
		WithLivenessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/healthz").WithPort(intstr.FromString(portHealth))).
			WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithResources(resourcesOf(te)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithVolumeMounts(corev1ac.VolumeMount().WithName(tlsVolume).WithMountPath(CertDir).WithReadOnly(true))

	// Preferred, not required: a rollout surges one pod, and a small
	// cluster must still run every replica.
	antiAffinity := corev1ac.PodAntiAffinity().WithPreferredDuringSchedulingIgnoredDuringExecution(
		corev1ac.WeightedPodAffinityTerm().WithWeight(100).WithPodAffinityTerm(
			corev1ac.PodAffinityTerm().
				WithTopologyKey(corev1.LabelHostname).
				WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selector))))

	pod := corev1ac.PodSpec().
		WithSecurityContext(podSecurity).
		WithAffinity(corev1ac.Affinity().WithPodAntiAffinity(antiAffinity)).
		WithContainers(container).
		WithVolumes(corev1ac.Volume().WithName(tlsVolume).WithSecret(
			corev1ac.SecretVolumeSource().WithSecretName(SecretName(te.Name)).WithDefaultMode(0o440)))
	if cfg.ServiceAccount != "" {
		pod.WithServiceAccountName(cfg.ServiceAccount)
	}

	return appsv1ac.Deployment(DeploymentName(te.Name), cfg.Namespace).
		WithLabels(labels).
		WithOwnerReferences(ownerRef(te)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicasOf(te)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selector)).
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromInt32(1)))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(labels).
				WithAnnotations(map[string]string{AnnotationCAHash: caHash}).
				WithSpec(pod)))
}

func servicePorts(te *edgev1.TunnelEndpoint) []*corev1ac.ServicePortApplyConfiguration {
	p := portsOf(te)
	port := func(name string, n int32) *corev1ac.ServicePortApplyConfiguration {
		return corev1ac.ServicePort().WithName(name).WithProtocol(corev1.ProtocolTCP).WithPort(n).WithTargetPort(intstr.FromString(name))
	}
	return []*corev1ac.ServicePortApplyConfiguration{
		port(PortAgent, p.Agent), port(PortConnect, p.Connect), port(PortPassthrough, p.Passthrough),
	}
}

// desiredService is the Service agents dial, of type spec.service.type with
// spec.service.annotations (a cloud load balancer's settings, say).
func desiredService(te *edgev1.TunnelEndpoint, cfg config) *corev1ac.ServiceApplyConfiguration {
	svc := corev1ac.Service(ServiceName(te.Name), cfg.Namespace).
		WithLabels(childLabels(te)).
		WithOwnerReferences(ownerRef(te)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(serviceTypeOf(te)).
			WithSelector(selectorLabels(te)).
			WithPorts(servicePorts(te)...))
	if len(te.Spec.Service.Annotations) > 0 {
		svc.WithAnnotations(maps.Clone(te.Spec.Service.Annotations))
	}
	return svc
}

// desiredHeadlessService lists every replica, ready or not, so an agent
// resolving it finds each server it must connect to.
func desiredHeadlessService(te *edgev1.TunnelEndpoint, cfg config) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(HeadlessServiceName(te.Name), cfg.Namespace).
		WithLabels(childLabels(te)).
		WithOwnerReferences(ownerRef(te)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithClusterIP(corev1.ClusterIPNone).
			WithPublishNotReadyAddresses(true).
			WithSelector(selectorLabels(te)).
			WithPorts(servicePorts(te)...))
}

// desiredSecret is the serving Secret: tls.crt, tls.key and ca.crt.
func desiredSecret(te *edgev1.TunnelEndpoint, cfg config, data map[string][]byte) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(SecretName(te.Name), cfg.Namespace).
		WithLabels(childLabels(te)).
		WithOwnerReferences(ownerRef(te)).
		WithType(corev1.SecretTypeTLS).
		WithData(maps.Clone(data))
}
