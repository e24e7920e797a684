package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const root = "../.."

// TestBundleUpToDate regenerates the bundle into a temporary directory, with
// the version, image and channels the committed one was made with, and fails
// when the committed bundle/ or bundle.Dockerfile differ from it.
func TestBundleUpToDate(t *testing.T) {
	o := committedOptions(t)
	o.Root, o.Out = root, t.TempDir()
	if err := write(o); err != nil {
		t.Fatal(err)
	}
	want, got := tree(t, o.Out), tree(t, root)
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s is missing", name)
		case !bytes.Equal(g, w):
			t.Errorf("%s is out of date; first difference at line %d", name, firstDiffLine(g, w))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is not generated any more", name)
		}
	}
	if t.Failed() {
		t.Log("the committed bundle drifted from config/: run `make bundle` (go run ./hack/genbundle) and commit the result")
	}
}

// committedOptions recovers the flags the committed bundle was generated
// with, so `make bundle BUNDLE_VERSION=...` does not count as drift.
func committedOptions(t *testing.T) options {
	t.Helper()
	csv := committedCSV(t)
	b, err := os.ReadFile(filepath.Join(root, bundleDir, "metadata", "annotations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	o := defaultOptions()
	o.Version = csv.Spec.Version
	o.Image = csv.Metadata.Annotations["containerImage"]
	o.Channels = strings.Split(md.Annotations["operators.operatorframework.io.bundle.channels.v1"], ",")
	o.DefaultChannel = md.Annotations["operators.operatorframework.io.bundle.channel.default.v1"]
	return o
}

// tree reads what genbundle owns under dir: bundle/manifests,
// bundle/metadata and bundle.Dockerfile.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, sub := range []string{"manifests", "metadata"} {
		err := filepath.WalkDir(filepath.Join(dir, bundleDir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)], err = os.ReadFile(p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if files["bundle.Dockerfile"], err = os.ReadFile(filepath.Join(dir, "bundle.Dockerfile")); err != nil {
		t.Fatal(err)
	}
	return files
}

func firstDiffLine(a, b []byte) int {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return i + 1
		}
	}
	return min(len(al), len(bl)) + 1
}

func committedCSV(t *testing.T) *clusterServiceVersion {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, bundleDir, "manifests", csvFile))
	if err != nil {
		t.Fatal(err)
	}
	csv := &clusterServiceVersion{}
	if err := yaml.UnmarshalStrict(b, csv); err != nil {
		t.Fatal(err)
	}
	return csv
}

// TestCSVOwnsEveryCRD checks every CRD controller-gen writes is shipped in
// the bundle unchanged and owned by the CSV, even one that config/crd's
// kustomization forgot.
func TestCSVOwnsEveryCRD(t *testing.T) {
	csv := committedCSV(t)
	paths, err := filepath.Glob(filepath.Join(root, "config/crd/bases/*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	for _, p := range paths {
		objs, err := readObjects(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			c := &apiextensionsv1.CustomResourceDefinition{}
			if err := decode(o, c); err != nil {
				t.Fatal(err)
			}
			for _, v := range c.Spec.Versions {
				if !v.Served {
					continue
				}
				if !slices.ContainsFunc(csv.Spec.CustomResourceDefinitions.Owned, func(d crdDescription) bool {
					return d.Name == c.Name && d.Version == v.Name && d.Kind == c.Spec.Names.Kind && d.DisplayName != "" && d.Description != ""
				}) {
					t.Errorf("the CSV does not own %s %s with a display name and description", c.Name, v.Name)
				}
			}
			shipped, err := readObjects(filepath.Join(root, bundleDir, "manifests", crdFileName(c)))
			if err != nil {
				t.Errorf("CRD %s is not in the bundle: %v", c.Name, err)
				continue
			}
			if len(shipped) != 1 || !reflect.DeepEqual(shipped[0], o) {
				t.Errorf("bundle/manifests/%s differs from %s", crdFileName(c), p)
			}
		}
	}
}

// TestCSVInstallsManagerForOLM checks the install strategy and webhook
// definitions against config/: OLM's certificate instead of the
// self-provisioned one, the webhook port and path, and RBAC granted to the
// service account the manager runs as.
func TestCSVInstallsManagerForOLM(t *testing.T) {
	csv := committedCSV(t)
	if got, want := csv.Metadata.Name, "edgeunit.v"+csv.Spec.Version; got != want {
		t.Errorf("CSV name %q, want %q", got, want)
	}
	if !slices.Equal(csv.Spec.InstallModes, []installMode{{"OwnNamespace", false}, {"SingleNamespace", false}, {"MultiNamespace", false}, {"AllNamespaces", true}}) {
		t.Errorf("install modes %v, want AllNamespaces only", csv.Spec.InstallModes)
	}
	deps := csv.Spec.Install.Spec.DeploymentSpecs
	if len(deps) != 1 {
		t.Fatalf("%d deployments, want the manager only", len(deps))
	}
	pod := deps[0].Spec.Template.Spec
	mgr := pod.Containers[0]
	for _, want := range []string{"--provision-webhook-cert=false", "--webhook-cert-dir=" + olmCertDir, "--leader-elect"} {
		if !slices.Contains(mgr.Args, want) {
			t.Errorf("manager args %v lack %s", mgr.Args, want)
		}
	}
	if n := countPrefix(mgr.Args, provisionFlag); n != 1 {
		t.Errorf("manager args %v set %s %d times", mgr.Args, provisionFlag, n)
	}
	if len(mgr.VolumeMounts) != 0 || len(pod.Volumes) != 0 {
		t.Errorf("the self-provisioned certificate volume is still mounted: %v %v", mgr.VolumeMounts, pod.Volumes)
	}
	sa := pod.ServiceAccountName
	for name, ps := range map[string][]strategyPermissions{"permissions": csv.Spec.Install.Spec.Permissions, "clusterPermissions": csv.Spec.Install.Spec.ClusterPermissions} {
		i := slices.IndexFunc(ps, func(p strategyPermissions) bool { return p.ServiceAccountName == sa })
		if i < 0 || len(ps[i].Rules) == 0 {
			t.Errorf("%s %+v do not grant the manager's service account %s", name, ps, sa)
		}
	}
	mgrPerms := slices.IndexFunc(csv.Spec.Install.Spec.Permissions, func(p strategyPermissions) bool { return p.ServiceAccountName == sa })
	if mgrPerms < 0 {
		t.Fatal("no namespaced permissions for the manager")
	}
	if !slices.ContainsFunc(csv.Spec.Install.Spec.Permissions[mgrPerms].Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "leases") }) {
		t.Error("permissions lack the leader-election Lease rule")
	}

	objs, err := readObjects(filepath.Join(root, "config/webhook/manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, o := range objs {
		var hooks []admissionregistrationv1.ValidatingWebhook // the fields checked here are common
		c := struct {
			Webhooks *[]admissionregistrationv1.ValidatingWebhook `json:"webhooks"`
		}{&hooks}
		b, _ := yaml.Marshal(o)
		if err := yaml.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		for _, w := range hooks {
			want++
			i := slices.IndexFunc(csv.Spec.WebhookDefinitions, func(d webhookDescription) bool { return d.GenerateName == w.Name })
			if i < 0 {
				t.Errorf("webhook %s is not defined in the CSV", w.Name)
				continue
			}
			d := csv.Spec.WebhookDefinitions[i]
			if d.DeploymentName != deps[0].Name || d.ContainerPort != 9443 || d.TargetPort == nil || d.TargetPort.IntValue() != 9443 {
				t.Errorf("webhook %s: deployment %q, ports %d/%v; want %s, 9443/9443", w.Name, d.DeploymentName, d.ContainerPort, d.TargetPort, deps[0].Name)
			}
			if d.WebhookPath == nil || *d.WebhookPath != *w.ClientConfig.Service.Path {
				t.Errorf("webhook %s: path %v, want %s", w.Name, d.WebhookPath, *w.ClientConfig.Service.Path)
			}
			if !reflect.DeepEqual(d.Rules, w.Rules) {
				t.Errorf("webhook %s: rules %v, want %v", w.Name, d.Rules, w.Rules)
			}
		}
	}
	if len(csv.Spec.WebhookDefinitions) != want {
		t.Errorf("%d webhook definitions, want %d", len(csv.Spec.WebhookDefinitions), want)
	}
}

func countPrefix(args []string, flag string) int {
	n := 0
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			n++
		}
	}
	return n
}

// TestRenderMatchesKubectl checks the generator's small kustomize against
// the real one, so the bundle installs what `make deploy` installs.
func TestRenderMatchesKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	for _, dir := range []string{defaultConfig, samplesConfig} {
		out, err := exec.Command(kubectl, "kustomize", filepath.Join(root, dir)).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", dir, err)
		}
		f := filepath.Join(t.TempDir(), "rendered.yaml")
		if err := os.WriteFile(f, out, 0o644); err != nil {
			t.Fatal(err)
		}
		wantObjs, err := readObjects(f)
		if err != nil {
			t.Fatal(err)
		}
		gotObjs, err := kustomize(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		want, got := byID(wantObjs), byID(gotObjs)
		for id, w := range want {
			if g, ok := got[id]; !ok {
				t.Errorf("%s: genbundle does not render %s", dir, id)
			} else if !reflect.DeepEqual(g, w) {
				gb, _ := yaml.Marshal(g)
				wb, _ := yaml.Marshal(w)
				t.Errorf("%s: %s differs from kubectl's:\n%s\nkubectl:\n%s", dir, id, gb, wb)
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				t.Errorf("%s: genbundle renders %s, kubectl does not", dir, id)
			}
		}
	}
}

func byID(objs []object) map[string]object {
	m := map[string]object{}
	for _, o := range objs {
		ns, _ := meta(o)["namespace"].(string)
		m[fmt.Sprintf("%s %s/%s", kindOf(o), ns, nameOf(o))] = o
	}
	return m
}

func TestForOLM(t *testing.T) {
	tests := map[string]struct {
		args, mounts   []string
		volumes        []string
		wantArgs       []string
		wantVolumes    []string
		otherContainer []string // mounts of a second container
	}{
		"self-provisioned cert dir is replaced": {
			args:        []string{"--leader-elect", "--webhook-cert-dir=/certs"},
			mounts:      []string{"certs=/certs", "cache=/cache"},
			volumes:     []string{"certs", "cache"},
			wantArgs:    []string{"--leader-elect", "--provision-webhook-cert=false", "--webhook-cert-dir=" + olmCertDir},
			wantVolumes: []string{"cache"},
		},
		"explicit provisioning flag is overridden": {
			args:     []string{"--provision-webhook-cert=true", "--provision-webhook-cert"},
			wantArgs: []string{"--provision-webhook-cert=false", "--webhook-cert-dir=" + olmCertDir},
		},
		"volume another container mounts stays": {
			args:           []string{"--webhook-cert-dir=/certs"},
			mounts:         []string{"certs=/certs"},
			volumes:        []string{"certs"},
			otherContainer: []string{"certs=/certs"},
			wantArgs:       []string{"--provision-webhook-cert=false", "--webhook-cert-dir=" + olmCertDir},
			wantVolumes:    []string{"certs"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := &appsv1.Deployment{}
			spec := &d.Spec.Template.Spec
			spec.Containers = []corev1.Container{{Name: "manager", Command: []string{managerCommand}, Args: tc.args, VolumeMounts: mounts(tc.mounts)}}
			if tc.otherContainer != nil {
				spec.Containers = append(spec.Containers, corev1.Container{Name: "sidecar", VolumeMounts: mounts(tc.otherContainer)})
			}
			for _, v := range tc.volumes {
				spec.Volumes = append(spec.Volumes, corev1.Volume{Name: v})
			}
			forOLM(d)
			if got := spec.Containers[0].Args; !slices.Equal(got, tc.wantArgs) {
				t.Errorf("args %v, want %v", got, tc.wantArgs)
			}
			var got []string
			for _, v := range spec.Volumes {
				got = append(got, v.Name)
			}
			if !slices.Equal(got, tc.wantVolumes) {
				t.Errorf("volumes %v, want %v", got, tc.wantVolumes)
			}
		})
	}
}

func mounts(specs []string) []corev1.VolumeMount {
	var ms []corev1.VolumeMount
	for _, s := range specs {
		name, path, _ := strings.Cut(s, "=")
		ms = append(ms, corev1.VolumeMount{Name: name, MountPath: path})
	}
	return ms
}

func TestSplitWords(t *testing.T) {
	tests := map[string]string{"NodePool": "Node Pool", "EdgeUnit": "Edge Unit", "TunnelEndpoint": "Tunnel Endpoint", "CNIConfig": "CNIConfig"}
	for in, want := range tests {
		if got := splitWords(in); got != want {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMutatingWebhook covers the webhook kind config/ does not have yet: a
// mutating webhook behind a Service with a named target port.
func TestMutatingWebhook(t *testing.T) {
	cfg := object{
		"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
		"metadata": object{"name": "mwc"},
		"webhooks": []any{object{
			"name": "mpod.edge.edgeunit.io", "admissionReviewVersions": []any{"v1"}, "sideEffects": "None",
			"reinvocationPolicy": "IfNeeded",
			"clientConfig":       object{"service": object{"name": "svc", "namespace": "ns", "path": "/mutate-v1-pod"}},
			"rules":              []any{object{"apiGroups": []any{""}, "apiVersions": []any{"v1"}, "operations": []any{"CREATE"}, "resources": []any{"pods"}}},
		}},
	}
	svc := &corev1.Service{Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "mgr"},
		Ports:    []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromString("webhook")}},
	}}
	dep := &appsv1.Deployment{}
	dep.Name = "mgr"
	dep.Spec.Template.Labels = map[string]string{"app": "mgr", "other": "x"}
	dep.Spec.Template.Spec.Containers = []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "webhook", ContainerPort: 9443}}}}
	got, svcs, err := webhookDescriptions(cfg, map[string]*corev1.Service{"svc": svc}, []*appsv1.Deployment{dep})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !slices.Equal(svcs, []string{"svc"}) {
		t.Fatalf("got %+v, services %v", got, svcs)
	}
	w := got[0]
	if w.Type != mutatingAdmissionWebhook || w.DeploymentName != "mgr" || w.ContainerPort != 9443 || w.TargetPort.IntValue() != 9443 ||
		*w.WebhookPath != "/mutate-v1-pod" || w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("got %+v", w)
	}
}
