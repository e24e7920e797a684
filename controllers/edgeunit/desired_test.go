package edgeunit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/hub"
	"github.com/edgeunit/edgeunit/internal/hubinstall"
)

var testOptions = Options{
	Namespace:    "edgeunit-system",
	HubImage:     "example.com/edgeunit:v1",
	AgentImage:   "example.com/tunnel-agent:v1",
	APIServerURL: "https://203.0.113.10:6443",
}

func testUnit(mutate ...func(*edgev1.EdgeUnit)) *edgev1.EdgeUnit {
	u := &edgev1.EdgeUnit{
		ObjectMeta: metav1.ObjectMeta{Name: "factory", UID: types.UID("uid-1"), Generation: 3},
		Spec: edgev1.EdgeUnitSpec{
			NodePools: []string{"factory-b", "factory-a"},
			Hub: edgev1.HubSpec{
				CacheClients:        []edgev1.HubClient{"kubelet", "kube-proxy", "coredns", "flannel", "tunnel-agent", "edge-ipam"},
				HealthCheckInterval: &metav1.Duration{Duration: 5 * time.Second},
			},
			ServiceTopology: edgev1.ServiceTopologySpec{Mode: edgev1.TopologyAnnotated},
			NetworkAutonomy: edgev1.NetworkAutonomySpec{VTEPDevice: "flannel.1"},
		},
	}
	for _, m := range mutate {
		m(u)
	}
	return u
}

func withTunnel(u *edgev1.EdgeUnit) {
	u.Spec.Tunnel = &edgev1.TunnelSpec{Endpoint: "tunnel", AllowedPorts: []int32{10255, 10250}}
}

func testEndpoint(addresses ...string) *edgev1.TunnelEndpoint {
	return &edgev1.TunnelEndpoint{
		ObjectMeta: metav1.ObjectMeta{Name: "tunnel"},
		Spec:       edgev1.TunnelEndpointSpec{Ports: edgev1.TunnelPorts{Agent: 10262}},
		Status:     edgev1.TunnelEndpointStatus{Addresses: addresses},
	}
}

// typed turns an apply configuration into the object it describes.
func typed[T any](t *testing.T, ac any) *T {
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

func checkChildMeta(t *testing.T, obj metav1.Object, wantName string) {
	t.Helper()
	if obj.GetName() != wantName || obj.GetNamespace() != testOptions.Namespace {
		t.Errorf("child is %s/%s, want %s/%s", obj.GetNamespace(), obj.GetName(), testOptions.Namespace, wantName)
	}
	refs := obj.GetOwnerReferences()
	if len(refs) != 1 || refs[0].Kind != "EdgeUnit" || refs[0].Name != "factory" || refs[0].UID != "uid-1" ||
		refs[0].Controller == nil || !*refs[0].Controller || refs[0].APIVersion != edgev1.GroupVersion.String() {
		t.Errorf("owner references = %+v, want the unit as controller", refs)
	}
	if obj.GetLabels()[edgev1.LabelUnit] != "factory" || obj.GetLabels()["app.kubernetes.io/instance"] != "factory" {
		t.Errorf("labels = %v, want the unit's", obj.GetLabels())
	}
}

func checkPinnedToUnit(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	if want := map[string]string{edgev1.LabelUnit: "factory"}; !equalMaps(spec.NodeSelector, want) {
		t.Errorf("nodeSelector = %v, want %v", spec.NodeSelector, want)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations = %+v, want one that tolerates every taint", spec.Tolerations)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestDesiredHubDaemonSet(t *testing.T) {
	tests := map[string]struct {
		unit      *edgev1.EdgeUnit
		wantImage string
	}{
		"manager default image": {unit: testUnit(), wantImage: testOptions.HubImage},
		"unit's own image": {
			unit:      testUnit(func(u *edgev1.EdgeUnit) { u.Spec.Hub.Image = "example.com/edgeunit:dev" }),
			wantImage: "example.com/edgeunit:dev",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ds := typed[appsv1.DaemonSet](t, desiredHubDaemonSet(tc.unit, testOptions))
			checkChildMeta(t, ds, "edgeunit-hub-factory")
			spec := ds.Spec.Template.Spec
			checkPinnedToUnit(t, spec)
			for k, v := range ds.Spec.Selector.MatchLabels {
				if ds.Spec.Template.Labels[k] != v {
					t.Errorf("selector %s=%s does not match the template", k, v)
				}
			}
			c := spec.Containers[0]
			if c.Image != tc.wantImage {
				t.Errorf("image = %s, want %s", c.Image, tc.wantImage)
			}
			args := strings.Join(append(c.Command, c.Args...), " ")
			for _, want := range []string{"/edge-hub install", "--manifest-dir=/host/etc/kubernetes/manifests", "--state-dir=/host/var/lib/edgeunit", "--source-dir=" + installerSourceDir} {
				if !strings.Contains(args, want) {
					t.Errorf("command %q lacks %q", args, want)
				}
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Port.IntVal != hubAdminPort {
				t.Errorf("readiness probe %+v does not check the hub", c.ReadinessProbe)
			}
			vols := map[string]corev1.Volume{}
			for _, v := range spec.Volumes {
				vols[v.Name] = v
			}
			if cm := vols["source"].ConfigMap; cm == nil || cm.Name != "edgeunit-hub-factory" {
				t.Errorf("source volume = %+v, want the hub ConfigMap", vols["source"])
			}
			for name, path := range map[string]string{"manifests": "/etc/kubernetes/manifests", "state": "/var/lib/edgeunit"} {
				if hp := vols[name].HostPath; hp == nil || hp.Path != path {
					t.Errorf("volume %s = %+v, want hostPath %s", name, vols[name], path)
				}
			}
		})
	}
}

// hubFiles renders the hub ConfigMap and returns its data.
func hubFiles(t *testing.T, u *edgev1.EdgeUnit, pools []string, o Options) map[string]string {
	t.Helper()
	ac, err := desiredHubConfigMap(u, pools, o)
	if err != nil {
		t.Fatal(err)
	}
	cm := typed[corev1.ConfigMap](t, ac)
	checkChildMeta(t, cm, "edgeunit-hub-factory")
	return cm.Data
}

func TestDesiredHubConfigMap(t *testing.T) {
	noServer := testOptions
	noServer.APIServerURL = ""
	tests := map[string]struct {
		unit        *edgev1.EdgeUnit
		opts        Options
		wantServer  string
		wantProbe   time.Duration
		wantClients []string
		wantMode    string
	}{
		"defaults": {
			unit: testUnit(), opts: testOptions, wantServer: testOptions.APIServerURL, wantProbe: 5 * time.Second,
			// edge-ipam is not a client the hub tells apart: unit.yaml only.
			wantClients: []string{"coredns", "flannel", "kube-proxy", "kubelet", "tunnel-agent"},
			wantMode:    "Annotated",
		},
		"own probe interval and clients": {
			unit: testUnit(func(u *edgev1.EdgeUnit) {
				u.Spec.Hub.HealthCheckInterval = &metav1.Duration{Duration: 30 * time.Second}
				u.Spec.Hub.CacheClients = []edgev1.HubClient{"kubelet"}
				u.Spec.ServiceTopology.Mode = edgev1.TopologyAllServices
			}),
			opts: testOptions, wantServer: testOptions.APIServerURL, wantProbe: 30 * time.Second,
			wantClients: []string{"kubelet"}, wantMode: "AllServices",
		},
		"apiserver from the kubelet's kubeconfig": {
			unit: testUnit(), opts: noServer, wantServer: "", wantProbe: 5 * time.Second,
			wantClients: []string{"coredns", "flannel", "kube-proxy", "kubelet", "tunnel-agent"}, wantMode: "Annotated",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			data := hubFiles(t, tc.unit, []string{"factory-b", "factory-a"}, tc.opts)
			for _, k := range []string{hubinstall.KeyManifest, hubinstall.KeyConfig, hubinstall.KeyUnit, hubinstall.KeyKubeconfig} {
				if data[k] == "" {
					t.Fatalf("ConfigMap lacks %s", k)
				}
			}

			// The real hub accepts the configuration.
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(data[hubinstall.KeyConfig]), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"--config=" + path, "--node-name=edge-1"}
			if tc.wantServer == "" {
				// The kubelet's kubeconfig has the server; stand in for it.
				args = append(args, "--server=https://from-kubeconfig")
			}
			cfg, err := hub.LoadConfig(args)
			if err != nil {
				t.Fatalf("the hub refuses the rendered configuration: %v\n%s", err, data[hubinstall.KeyConfig])
			}
			if tc.wantServer != "" && cfg.Server != tc.wantServer {
				t.Errorf("server = %q, want %q", cfg.Server, tc.wantServer)
			}
			if cfg.Kubeconfig != DefaultKubeletKubeconfig || cfg.ProbeInterval.Duration != tc.wantProbe || !slices.Equal(cfg.CacheClients, tc.wantClients) {
				t.Errorf("config = kubeconfig %s probe %s clients %v, want %s %s %v", cfg.Kubeconfig, cfg.ProbeInterval, cfg.CacheClients, DefaultKubeletKubeconfig, tc.wantProbe, tc.wantClients)
			}

			var unit hubinstall.UnitFile
			if err := yaml.UnmarshalStrict([]byte(data[hubinstall.KeyUnit]), &unit); err != nil {
				t.Fatal(err)
			}
			if unit.Unit != "factory" || !slices.Equal(unit.NodePools, []string{"factory-a", "factory-b"}) || unit.ServiceTopologyMode != tc.wantMode {
				t.Errorf("unit file = %+v", unit)
			}
			if !strings.Contains(data[hubinstall.KeyKubeconfig], "http://"+cfg.ListenHTTP) {
				t.Errorf("client kubeconfig does not point at the hub's listener %s:\n%s", cfg.ListenHTTP, data[hubinstall.KeyKubeconfig])
			}

			// The static Pod is built for exactly these files.
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict([]byte(data[hubinstall.KeyManifest]), &pod); err != nil {
				t.Fatal(err)
			}
			files := map[string][]byte{}
			for k, v := range data {
				files[k] = []byte(v)
			}
			if got, want := pod.Annotations[hubinstall.AnnotationConfigHash], hubinstall.ConfigHash(files); got != want {
				t.Errorf("manifest config hash = %q, want %q", got, want)
			}
		})
	}
}

func TestDesiredHubPod(t *testing.T) {
	pod := desiredHubPod(testUnit(), "example.com/edgeunit:v1", "abc", testOptions)
	if pod.Kind != "Pod" || pod.APIVersion != "v1" {
		t.Errorf("type = %s/%s", pod.APIVersion, pod.Kind)
	}
	if !pod.Spec.HostNetwork || pod.Spec.PriorityClassName != "system-node-critical" {
		t.Errorf("hostNetwork %v priorityClass %q, want a host-network critical pod", pod.Spec.HostNetwork, pod.Spec.PriorityClassName)
	}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath: a static pod cannot use API objects", v.Name)
		}
	}
	c := pod.Spec.Containers[0]
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for name, path := range map[string]string{"config": hubConfigDir, "kubelet-kubeconfig": DefaultKubeletKubeconfig, "kubelet-pki": DefaultKubeletPKIDir, "cache": hubDataDir} {
		if mounts[name] != path {
			t.Errorf("mount %s = %q, want %q", name, mounts[name], path)
		}
	}
	if !slices.Contains(c.Args, "--config="+hubConfigDir+"/"+hubinstall.KeyConfig) || !slices.Contains(c.Args, "--node-name=$(NODE_NAME)") {
		t.Errorf("args = %v", c.Args)
	}

	// The kubelet's credentials where Options say they are.
	own := testOptions
	own.KubeletKubeconfig, own.KubeletPKIDir = "/etc/kubelet/kubeconfig", "/srv/kubelet/pki"
	pod = desiredHubPod(testUnit(), "example.com/edgeunit:v1", "abc", own)
	hostPaths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		hostPaths[v.Name] = v.HostPath.Path
	}
	if hostPaths["kubelet-kubeconfig"] != own.KubeletKubeconfig || hostPaths["kubelet-pki"] != own.KubeletPKIDir {
		t.Errorf("hostPaths = %v, want the kubelet's files from Options", hostPaths)
	}
	if cfg := desiredHubConfig(testUnit(), own); cfg.Kubeconfig != own.KubeletKubeconfig {
		t.Errorf("hub kubeconfig = %s, want %s", cfg.Kubeconfig, own.KubeletKubeconfig)
	}
}

func TestOptionsValidate(t *testing.T) {
	relative := testOptions
	relative.KubeletPKIDir = "var/lib/kubelet/pki"
	if err := relative.validate(); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("validate() = %v, want a relative kubelet path refused", err)
	}
	if err := testOptions.validate(); err != nil {
		t.Errorf("validate() = %v, want the defaults accepted", err)
	}
}

func TestHubConfigChangeRestartsHub(t *testing.T) {
	manifest := func(u *edgev1.EdgeUnit, pools []string) string {
		return hubFiles(t, u, pools, testOptions)[hubinstall.KeyManifest]
	}
	base := manifest(testUnit(), []string{"factory-a"})
	if again := manifest(testUnit(), []string{"factory-a"}); again != base {
		t.Fatal("rendering is not deterministic")
	}
	changes := map[string]string{
		"pools":          manifest(testUnit(), []string{"factory-a", "factory-c"}),
		"probe interval": manifest(testUnit(func(u *edgev1.EdgeUnit) { u.Spec.Hub.HealthCheckInterval.Duration = time.Minute }), []string{"factory-a"}),
		"topology":       manifest(testUnit(func(u *edgev1.EdgeUnit) { u.Spec.ServiceTopology.Mode = edgev1.TopologyDisabled }), []string{"factory-a"}),
	}
	for what, m := range changes {
		if m == base {
			t.Errorf("changing the %s leaves the static pod manifest unchanged: the hub would not restart", what)
		}
	}
}

func TestDesiredAgent(t *testing.T) {
	ownKubelet := testOptions
	ownKubelet.KubeletKubeconfig = "/etc/kubelet/kubeconfig"
	ownKubelet.KubeletPKIDir = "/srv/kubelet/pki"
	tests := map[string]struct {
		endpoint       *edgev1.TunnelEndpoint
		unit           *edgev1.EdgeUnit
		opts           *Options // testOptions when nil
		wantServers    string
		wantPorts      string
		wantPodPorts   string // empty: no pod ports anywhere, as before they existed
		wantImage      string
		wantKubeconfig string
		wantPKIDir     string
	}{
		"addresses on the agent port": {
			endpoint: testEndpoint("tunnel.example.com", "203.0.113.7"), unit: testUnit(withTunnel),
			wantServers: "203.0.113.7:10262,tunnel.example.com:10262", wantPorts: "10250,10255", wantImage: testOptions.AgentImage,
			wantKubeconfig: "/etc/kubernetes/kubelet.conf", wantPKIDir: "/var/lib/kubelet/pki",
		},
		"host:port as the TunnelEndpoint controller reports them": {
			endpoint: testEndpoint("tunnel.example.com:10262", "203.0.113.7:10262", "[2001:db8::1]:10262"), unit: testUnit(withTunnel),
			wantServers: "203.0.113.7:10262,[2001:db8::1]:10262,tunnel.example.com:10262", wantPorts: "10250,10255", wantImage: testOptions.AgentImage,
			wantKubeconfig: "/etc/kubernetes/kubelet.conf", wantPKIDir: "/var/lib/kubelet/pki",
		},
		"the kubelet's credentials elsewhere": {
			endpoint: testEndpoint("203.0.113.7"), unit: testUnit(withTunnel), opts: &ownKubelet,
			wantServers: "203.0.113.7:10262", wantPorts: "10250,10255", wantImage: testOptions.AgentImage,
			wantKubeconfig: "/etc/kubelet/kubeconfig", wantPKIDir: "/srv/kubelet/pki",
		},
		"IPv6 and a custom port": {
			endpoint: func() *edgev1.TunnelEndpoint {
				te := testEndpoint("2001:db8::1")
				te.Spec.Ports.Agent = 443
				return te
			}(),
			unit: testUnit(withTunnel, func(u *edgev1.EdgeUnit) {
				u.Spec.Tunnel.AllowedPorts = nil
				u.Spec.Tunnel.AgentImage = "example.com/agent:dev"
			}),
			wantServers: "[2001:db8::1]:443", wantPorts: "10250", wantImage: "example.com/agent:dev",
			wantKubeconfig: "/etc/kubernetes/kubelet.conf", wantPKIDir: "/var/lib/kubelet/pki",
		},
		"pod ports": {
			endpoint: testEndpoint("203.0.113.7"),
			unit: testUnit(withTunnel, func(u *edgev1.EdgeUnit) {
				u.Spec.Tunnel.PodPorts = []int32{9443, 8443, 9443}
			}),
			wantServers: "203.0.113.7:10262", wantPorts: "10250,10255", wantPodPorts: "8443,9443", wantImage: testOptions.AgentImage,
			wantKubeconfig: "/etc/kubernetes/kubelet.conf", wantPKIDir: "/var/lib/kubelet/pki",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := testOptions
			if tc.opts != nil {
				opts = *tc.opts
			}
			cmAC, hash := desiredAgentConfigMap(tc.unit, tc.endpoint, []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"), opts)
			cm := typed[corev1.ConfigMap](t, cmAC)
			checkChildMeta(t, cm, "edgeunit-agent-factory")
			if cm.Data[agentKeyServers] != tc.wantServers || cm.Data[agentKeyAllowedPorts] != tc.wantPorts {
				t.Errorf("servers %q ports %q, want %q %q", cm.Data[agentKeyServers], cm.Data[agentKeyAllowedPorts], tc.wantServers, tc.wantPorts)
			}
			if !strings.Contains(cm.Data[agentKeyCA], "CERTIFICATE") {
				t.Errorf("ca.crt = %q", cm.Data[agentKeyCA])
			}
			if got, ok := cm.Data[agentKeyPodPorts]; got != tc.wantPodPorts || ok != (tc.wantPodPorts != "") {
				t.Errorf("podPorts = %q (present %v), want %q", got, ok, tc.wantPodPorts)
			}

			ds := typed[appsv1.DaemonSet](t, desiredAgentDaemonSet(tc.unit, hash, opts))
			checkChildMeta(t, ds, "edgeunit-agent-factory")
			spec := ds.Spec.Template.Spec
			checkPinnedToUnit(t, spec)
			if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
				t.Errorf("hostNetwork %v dnsPolicy %s", spec.HostNetwork, spec.DNSPolicy)
			}
			if ds.Spec.Template.Annotations[annotationConfigHash] != hash {
				t.Errorf("pod template does not carry the config hash")
			}
			c := spec.Containers[0]
			if c.Image != tc.wantImage {
				t.Errorf("image = %s, want %s", c.Image, tc.wantImage)
			}
			env := map[string]corev1.EnvVar{}
			for _, e := range c.Env {
				env[e.Name] = e
			}
			if f := env["NODE_NAME"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("NODE_NAME = %+v, want the downward API", env["NODE_NAME"])
			}
			fromConfig := map[string]string{"TUNNEL_SERVERS": agentKeyServers, "TUNNEL_ALLOWED_PORTS": agentKeyAllowedPorts}
			wantArgs := []string{"--servers=$(TUNNEL_SERVERS)", "--allowed-ports=$(TUNNEL_ALLOWED_PORTS)", "--node-name=$(NODE_NAME)", "--ca-file=" + agentCADir + "/ca.crt",
				"--kubeconfig=" + tc.wantKubeconfig, "--cert-dir=/var/lib/edgeunit/tunnel-agent"}
			if tc.wantPodPorts != "" {
				fromConfig["TUNNEL_POD_PORTS"] = agentKeyPodPorts
				wantArgs = append(wantArgs, "--pod-ports=$(TUNNEL_POD_PORTS)")
			} else if _, ok := env["TUNNEL_POD_PORTS"]; ok || slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--pod-ports") }) {
				t.Errorf("env %v and args %v of a unit without pod ports name pod ports: its agents would roll", c.Env, c.Args)
			}
			for name, key := range fromConfig {
				if f := env[name].ValueFrom; f == nil || f.ConfigMapKeyRef == nil || f.ConfigMapKeyRef.Name != cm.Name || f.ConfigMapKeyRef.Key != key {
					t.Errorf("%s = %+v, want key %s of %s", name, env[name], key, cm.Name)
				}
			}
			for _, want := range wantArgs {
				if !slices.Contains(c.Args, want) {
					t.Errorf("args %v lack %s", c.Args, want)
				}
			}
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--cert-file") || strings.HasPrefix(a, "--key-file") {
					t.Errorf("args %v name a static certificate: the agent obtains its identity through the CSR API", c.Args)
				}
			}
			checkAgentVolumes(t, spec, c, tc.wantKubeconfig, tc.wantPKIDir)
		})
	}
}

func TestAgentConfigHashFollowsEndpoint(t *testing.T) {
	u := testUnit(withTunnel)
	ca := []byte("ca")
	_, h1 := desiredAgentConfigMap(u, testEndpoint("a.example.com"), ca, testOptions)
	_, h2 := desiredAgentConfigMap(u, testEndpoint("a.example.com"), ca, testOptions)
	_, h3 := desiredAgentConfigMap(u, testEndpoint("b.example.com"), ca, testOptions)
	_, h4 := desiredAgentConfigMap(u, testEndpoint("a.example.com"), []byte("other ca"), testOptions)
	if h1 != h2 {
		t.Fatal("config hash is not deterministic")
	}
	if h1 == h3 || h1 == h4 {
		t.Fatal("config hash ignores a change of servers or CA: agents would keep the old values")
	}
	withPods := testUnit(withTunnel, func(u *edgev1.EdgeUnit) { u.Spec.Tunnel.PodPorts = []int32{8443} })
	_, h5 := desiredAgentConfigMap(withPods, testEndpoint("a.example.com"), ca, testOptions)
	withPods.Spec.Tunnel.PodPorts = []int32{9443}
	_, h6 := desiredAgentConfigMap(withPods, testEndpoint("a.example.com"), ca, testOptions)
	if h5 == h1 || h5 == h6 {
		t.Fatal("config hash ignores a change of pod ports: agents would keep the old values")
	}
}

func TestRolloutOf(t *testing.T) {
	tests := map[string]struct {
		ds   *appsv1.DaemonSet
		want edgev1.RolloutStatus
	}{
		"absent": {},
		"counts": {
			ds:   &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 5, NumberReady: 4, UpdatedNumberScheduled: 3}},
			want: edgev1.RolloutStatus{Desired: 5, Ready: 4, Updated: 3},
		},
		"spec not observed yet": {
			ds:   &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 3}, Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 5, NumberReady: 5, UpdatedNumberScheduled: 5}},
			want: edgev1.RolloutStatus{Desired: 5, Ready: 5},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := rolloutOf(tc.ds); got != tc.want {
				t.Errorf("rolloutOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// checkAgentVolumes: the kubelet's kubeconfig and client certificate
// directory read-only where they are on the node, the agent's own state
// directory writable, the CA from the ConfigMap.
func checkAgentVolumes(t *testing.T, spec corev1.PodSpec, c corev1.Container, kubeconfig, pkiDir string) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	tests := map[string]struct {
		hostPath string
		hostType corev1.HostPathType
		readOnly bool
	}{
		"kubelet-kubeconfig": {hostPath: kubeconfig, hostType: corev1.HostPathFile, readOnly: true},
		"kubelet-pki":        {hostPath: pkiDir, hostType: corev1.HostPathDirectory, readOnly: true},
		"cert-dir":           {hostPath: "/var/lib/edgeunit/tunnel-agent", hostType: corev1.HostPathDirectoryOrCreate},
	}
	for name, want := range tests {
		hp := vols[name].HostPath
		if hp == nil || hp.Path != want.hostPath || hp.Type == nil || *hp.Type != want.hostType {
			t.Errorf("volume %s = %+v, want hostPath %s of type %s", name, vols[name].VolumeSource, want.hostPath, want.hostType)
		}
		if m, ok := mounts[name]; !ok || m.MountPath != want.hostPath || m.ReadOnly != want.readOnly {
			t.Errorf("mount %s = %+v, want %s read-only %v", name, m, want.hostPath, want.readOnly)
		}
	}
	if cm := vols["ca"].ConfigMap; cm == nil || mounts["ca"].MountPath != agentCADir || !mounts["ca"].ReadOnly {
		t.Errorf("ca volume %+v mounted %+v, want the agent ConfigMap read-only at %s", vols["ca"], mounts["ca"], agentCADir)
	}
	if len(vols) != 4 || len(mounts) != 4 {
		t.Errorf("volumes %v, mounts %v: want exactly ca, kubelet-kubeconfig, kubelet-pki and cert-dir", spec.Volumes, c.VolumeMounts)
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("security context %+v: want root (the kubelet's key is root's) without capabilities, read-only root", sc)
	}
}

func TestHubEnforcesNetworkBindingsOnlyWhenAsked(t *testing.T) {
	tests := map[string]struct {
		autonomy edgev1.NetworkAutonomySpec
		want     bool
	}{
		"off":             {autonomy: edgev1.NetworkAutonomySpec{VTEPDevice: "flannel.1"}, want: false},
		"stable pod IPs":  {autonomy: edgev1.NetworkAutonomySpec{StablePodIPs: true, VTEPDevice: "flannel.1"}, want: true},
		"stable VTEP MAC": {autonomy: edgev1.NetworkAutonomySpec{StableVTEPMAC: true, VTEPDevice: "flannel.1"}, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u := testUnit(func(u *edgev1.EdgeUnit) { u.Spec.NetworkAutonomy = tc.autonomy })
			cfg := desiredHubConfig(u, testOptions)
			if cfg.NetBind.Enabled != tc.want {
				t.Fatalf("netBind.enabled = %v, want %v", cfg.NetBind.Enabled, tc.want)
			}
			pod := desiredHubPod(u, "example.com/edgeunit:v1", "abc", testOptions)
			sc := pod.Spec.Containers[0].SecurityContext
			// The image's user (nonroot) could not read the kubelet's key
			// nor the installer's files.
			if sc.RunAsUser == nil || *sc.RunAsUser != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("security context %+v: want root without capabilities but NET_ADMIN", sc)
			}
			// NET_ADMIN in every case: the in-cluster listener's dummy
			// interface needs it, and nothing else is added.
			if caps := sc.Capabilities; caps == nil || !slices.Equal(caps.Add, []corev1.Capability{"NET_ADMIN"}) {
				t.Errorf("capabilities added %v, want [NET_ADMIN]", caps)
			}
			if cfg.ListenInCluster != hub.DefaultListenInCluster {
				t.Errorf("listenInCluster = %q, want %q", cfg.ListenInCluster, hub.DefaultListenInCluster)
			}
			if !tc.want {
				return
			}
			if cfg.NetBind.UnitFile != hubConfigDir+"/"+hubinstall.KeyUnit || !strings.HasPrefix(cfg.NetBind.Listen, "unix://"+hostNetbindDir+"/") {
				t.Errorf("netBind = %+v", cfg.NetBind)
			}
			if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.HostPath != nil && v.HostPath.Path == hostNetbindDir }) {
				t.Errorf("no hostPath for %s, where edge-ipam finds the socket", hostNetbindDir)
			}
		})
	}
}
