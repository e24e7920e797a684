package tunnelendpoint

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

var testCfg = config{Namespace: "edgeunit-system", Image: "example.com/edgeunit:v1", ServiceAccount: "tunnel-sa", ClusterDomain: "cluster.local"}

func endpoint(name string, mutate ...func(*edgev1.TunnelEndpoint)) *edgev1.TunnelEndpoint {
	te := &edgev1.TunnelEndpoint{ObjectMeta: metav1.ObjectMeta{Name: name, UID: "uid-1", Generation: 3}}
	for _, m := range mutate {
		m(te)
	}
	return te
}

// decode turns an apply configuration into the typed object it describes.
func decode[T any](t *testing.T, ac any) *T {
	t.Helper()
	raw, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestChildNames(t *testing.T) {
	tests := map[string]struct {
		name     string
		wantBase string
	}{
		"short name kept":         {name: "tunnel", wantBase: "edgeunit-tunnel-tunnel"},
		"38 characters kept":      {name: strings.Repeat("a", 38), wantBase: "edgeunit-tunnel-" + strings.Repeat("a", 38)},
		"52 characters shortened": {name: strings.Repeat("b", 52)},
		"dots replaced":           {name: "edge.example.com"},
	}
	seen := map[string]string{}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			base := DeploymentName(tc.name)
			if tc.wantBase != "" && base != tc.wantBase {
				t.Errorf("base name = %q, want %q", base, tc.wantBase)
			}
			for _, svc := range []string{ServiceName(tc.name), HeadlessServiceName(tc.name)} {
				if errs := validation.IsDNS1035Label(svc); len(errs) > 0 {
					t.Errorf("Service name %q invalid: %v", svc, errs)
				}
			}
			if errs := validation.IsDNS1123Subdomain(SecretName(tc.name)); len(errs) > 0 {
				t.Errorf("Secret name invalid: %v", errs)
			}
			if other, dup := seen[base]; dup {
				t.Errorf("%q and %q share base name %q", tc.name, other, base)
			}
			seen[base] = tc.name
		})
	}
	if baseName("a.b") == baseName("a-b") {
		t.Error(`"a.b" and "a-b" must not share children`)
	}
}

func TestDesiredDeployment(t *testing.T) {
	tests := map[string]struct {
		te           *edgev1.TunnelEndpoint
		wantReplicas int32
		wantImage    string
		wantArgs     []string
		wantPorts    map[string]int32
		wantSysctl   bool
		wantCPU      string
	}{
		"defaults": {
			te:           endpoint("tunnel"),
			wantReplicas: 2,
			wantImage:    "example.com/edgeunit:v1",
			wantArgs: []string{
				"--id=$(POD_NAME)",
				"--agent-address=:10262",
				"--agent-cert-file=/etc/edgeunit/tunnel/tls.crt",
				"--agent-key-file=/etc/edgeunit/tunnel/tls.key",
				"--agent-client-ca-file=/etc/edgeunit/tunnel/ca.crt",
				"--connect-address=:10263",
				"--connect-cert-file=/etc/edgeunit/tunnel/tls.crt",
				"--connect-key-file=/etc/edgeunit/tunnel/tls.key",
				"--connect-client-ca-file=/etc/edgeunit/tunnel/ca.crt",
				"--connect-client-names=edgeunit:kube-apiserver-egress",
				"--passthrough-address=:10264",
				"--health-address=:8081",
				"--tunnel-endpoint=tunnel",
			},
			wantPorts: map[string]int32{"agent": 10262, "connect": 10263, "passthrough": 10264, "health": 8081},
			wantCPU:   "100m",
		},
		"from spec, privileged port, health port moved": {
			te: endpoint("edge", func(te *edgev1.TunnelEndpoint) {
				te.Spec.Replicas = ptr(int32(3))
				te.Spec.Image = "registry.local/tunnel:v2"
				te.Spec.Ports = edgev1.TunnelPorts{Agent: 443, Connect: 8081, Passthrough: 8443}
				te.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}
			}),
			wantReplicas: 3,
			wantImage:    "registry.local/tunnel:v2",
			wantPorts:    map[string]int32{"agent": 443, "connect": 8081, "passthrough": 8443, "health": 8082},
			wantSysctl:   true,
			wantCPU:      "250m",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := decode[appsv1.Deployment](t, desiredDeployment(tc.te, testCfg, "cafe", nil))
			if d.Name != DeploymentName(tc.te.Name) || d.Namespace != testCfg.Namespace {
				t.Errorf("name = %s/%s", d.Namespace, d.Name)
			}
			if len(d.OwnerReferences) != 1 || d.OwnerReferences[0].UID != "uid-1" || !*d.OwnerReferences[0].Controller || d.OwnerReferences[0].Kind != "TunnelEndpoint" {
				t.Errorf("owner references = %+v", d.OwnerReferences)
			}
			if *d.Spec.Replicas != tc.wantReplicas {
				t.Errorf("replicas = %d, want %d", *d.Spec.Replicas, tc.wantReplicas)
			}
			for k, v := range d.Spec.Selector.MatchLabels {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("template lacks selector label %s=%s", k, v)
				}
			}
			if got := d.Spec.Template.Annotations[AnnotationCAHash]; got != "cafe" {
				t.Errorf("CA hash annotation = %q", got)
			}
			pod := d.Spec.Template.Spec
			if pod.ServiceAccountName != "tunnel-sa" {
				t.Errorf("service account = %q", pod.ServiceAccountName)
			}
			c := pod.Containers[0]
			if c.Image != tc.wantImage || !slices.Equal(c.Command, []string{"/tunnel-server"}) {
				t.Errorf("image, command = %q, %q", c.Image, c.Command)
			}
			if tc.wantArgs != nil && !slices.Equal(c.Args, tc.wantArgs) {
				t.Errorf("args =\n%s\nwant\n%s", strings.Join(c.Args, "\n"), strings.Join(tc.wantArgs, "\n"))
			}
			for _, a := range []string{"--tunnel-endpoint=" + tc.te.Name, "--id=$(POD_NAME)"} {
				if !slices.Contains(c.Args, a) {
					t.Errorf("args lack %s", a)
				}
			}
			if len(c.Env) != 1 || c.Env[0].Name != "POD_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("env = %+v", c.Env)
			}
			gotPorts := map[string]int32{}
			for _, p := range c.Ports {
				gotPorts[p.Name] = p.ContainerPort
			}
			for n, p := range tc.wantPorts {
				if gotPorts[n] != p {
					t.Errorf("port %s = %d, want %d", n, gotPorts[n], p)
				}
			}
			if !slices.Contains(c.Args, "--health-address=:"+itoa(tc.wantPorts["health"])) || c.ReadinessProbe.HTTPGet.Port.StrVal != "health" {
				t.Errorf("health flag or probe port wrong: %v", c.Args)
			}
			if got := c.Resources.Requests.Cpu().String(); got != tc.wantCPU {
				t.Errorf("cpu request = %s, want %s", got, tc.wantCPU)
			}
			// Restricted pod security.
			sc := c.SecurityContext
			if *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("container security context = %+v", sc)
			}
			if ps := pod.SecurityContext; !*ps.RunAsNonRoot || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod security context = %+v", ps)
			}
			if got := len(pod.SecurityContext.Sysctls) == 1; got != tc.wantSysctl {
				t.Errorf("unprivileged port sysctl = %v, want %v", got, tc.wantSysctl)
			}
			// Certificate volume.
			if len(pod.Volumes) != 1 || pod.Volumes[0].Secret.SecretName != SecretName(tc.te.Name) {
				t.Errorf("volumes = %+v", pod.Volumes)
			}
			if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != CertDir || !c.VolumeMounts[0].ReadOnly {
				t.Errorf("volume mounts = %+v", c.VolumeMounts)
			}
			// Replicas spread over nodes.
			terms := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
			if len(terms) != 1 || terms[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname ||
				terms[0].PodAffinityTerm.LabelSelector.MatchLabels["app.kubernetes.io/instance"] != d.Spec.Selector.MatchLabels["app.kubernetes.io/instance"] {
				t.Errorf("anti-affinity = %+v", terms)
			}
		})
	}
}

func TestDesiredServices(t *testing.T) {
	tests := map[string]struct {
		exposure edgev1.TunnelExposure
		wantType corev1.ServiceType
	}{
		"default is LoadBalancer": {wantType: corev1.ServiceTypeLoadBalancer},
		"ClusterIP":               {exposure: edgev1.TunnelExposure{Type: "ClusterIP", Addresses: []string{"10.0.0.1"}}, wantType: corev1.ServiceTypeClusterIP},
		"NodePort":                {exposure: edgev1.TunnelExposure{Type: "NodePort"}, wantType: corev1.ServiceTypeNodePort},
		"LoadBalancer with annotations": {
			exposure: edgev1.TunnelExposure{Type: "LoadBalancer", Annotations: map[string]string{"lb.example.com/internal": "false"}},
			wantType: corev1.ServiceTypeLoadBalancer,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			te := endpoint("tunnel", func(te *edgev1.TunnelEndpoint) {
				te.Spec.Service = tc.exposure
				te.Spec.Ports = edgev1.TunnelPorts{Agent: 9000, Connect: 9001, Passthrough: 9002}
			})
			svc := decode[corev1.Service](t, desiredService(te, testCfg))
			hl := decode[corev1.Service](t, desiredHeadlessService(te, testCfg))
			if svc.Spec.Type != tc.wantType {
				t.Errorf("type = %s, want %s", svc.Spec.Type, tc.wantType)
			}
			if len(tc.exposure.Annotations) > 0 && svc.Annotations["lb.example.com/internal"] != "false" {
				t.Errorf("annotations = %v", svc.Annotations)
			}
			if hl.Spec.ClusterIP != corev1.ClusterIPNone || !hl.Spec.PublishNotReadyAddresses || hl.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("headless spec = %+v", hl.Spec)
			}
			if len(hl.Annotations) != 0 {
				t.Errorf("headless Service carries the load balancer's annotations: %v", hl.Annotations)
			}
			for _, s := range []*corev1.Service{svc, hl} {
				want := map[string]int32{"agent": 9000, "connect": 9001, "passthrough": 9002}
				if len(s.Spec.Ports) != len(want) {
					t.Errorf("%s ports = %+v", s.Name, s.Spec.Ports)
				}
				for _, p := range s.Spec.Ports {
					if want[p.Name] != p.Port || p.TargetPort.StrVal != p.Name {
						t.Errorf("%s port %+v", s.Name, p)
					}
				}
				if s.Spec.Selector["app.kubernetes.io/instance"] != baseName("tunnel") || len(s.OwnerReferences) != 1 {
					t.Errorf("%s selector %v owners %v", s.Name, s.Spec.Selector, s.OwnerReferences)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	te := endpoint("x")
	if got := lifetimeOf(te); got != 24*time.Hour {
		t.Errorf("lifetime = %s", got)
	}
	te.Spec.CertificateLifetime = &metav1.Duration{Duration: 2 * time.Hour}
	if got := lifetimeOf(te); got != 2*time.Hour {
		t.Errorf("lifetime = %s", got)
	}
}

func ptr[T any](v T) *T { return &v }

func itoa(i int32) string { return strconv.Itoa(int(i)) }
