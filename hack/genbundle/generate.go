package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Paths inside the repository and the bundle.
const (
	defaultConfig = "config/default"
	samplesConfig = "config/samples"
	managerConfig = "config/manager"
	baseCSV       = "config/manifests/bases/edgeunit.clusterserviceversion.yaml"
	bundleDir     = "bundle"
	csvFile       = packageName + ".clusterserviceversion.yaml"
)

// Under OLM the manager must not provision its own webhook certificate: OLM
// issues one and mounts it at olmCertDir in every container of the
// deployment that serves the webhooks.
const (
	managerCommand = "/manager"
	olmCertDir     = "/tmp/k8s-webhook-server/serving-certs"
	certDirFlag    = "--webhook-cert-dir"
	provisionFlag  = "--provision-webhook-cert"
)

// generate returns the bundle's files keyed by slash-separated paths
// relative to options.Out.
func generate(o options) (map[string][]byte, error) {
	objs, err := kustomize(filepath.Join(o.Root, defaultConfig))
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", defaultConfig, err)
	}
	in, err := classify(objs)
	if err != nil {
		return nil, err
	}
	csv, err := readBaseCSV(filepath.Join(o.Root, baseCSV))
	if err != nil {
		return nil, err
	}
	img := o.Image
	if img == "" {
		if img, err = defaultImage(o.Root, o.Version); err != nil {
			return nil, err
		}
	}
	samples, err := kustomize(filepath.Join(o.Root, samplesConfig))
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", samplesConfig, err)
	}
	if err := buildCSV(csv, in, samples, img, o.Version); err != nil {
		return nil, err
	}

	files := map[string][]byte{}
	b, err := yaml.Marshal(csv)
	if err != nil {
		return nil, err
	}
	files[bundleDir+"/manifests/"+csvFile] = b
	for _, crd := range in.crds {
		b, err := yaml.Marshal(crd.raw)
		if err != nil {
			return nil, err
		}
		files[bundleDir+"/manifests/"+crdFileName(crd.typed)] = b
	}
	for _, extra := range in.extra {
		b, err := yaml.Marshal(extra)
		if err != nil {
			return nil, err
		}
		name := strings.ToLower(nameOf(extra) + "_" + kindOf(extra) + ".yaml")
		files[bundleDir+"/manifests/"+name] = b
	}
	labels := bundleLabels(o)
	b, err = yaml.Marshal(map[string]any{"annotations": labels})
	if err != nil {
		return nil, err
	}
	files[bundleDir+"/metadata/annotations.yaml"] = b
	files["bundle.Dockerfile"] = bundleDockerfile(labels)
	return files, nil
}

type crd struct {
	raw   object
	typed *apiextensionsv1.CustomResourceDefinition
}

// inputs are the rendered config/default objects, sorted by what OLM does
// with them.
type inputs struct {
	namespace          string
	crds               []crd
	deployments        []*appsv1.Deployment
	permissions        []strategyPermissions
	clusterPermissions []strategyPermissions
	webhooks           []webhookDescription
	// extra are objects the bundle ships as they are (OLM creates them in
	// the operator's namespace).
	extra []object
}

func classify(objs []object) (*inputs, error) {
	in := &inputs{}
	roles := map[string][]rbacv1.PolicyRule{}          // "Kind/name" -> rules
	roleObjs := map[string]object{}                    // "Kind/name" -> object
	services := map[string]*corev1.Service{}           // name -> Service
	var bindings, webhookConfigs, serviceObjs []object // need the maps above
	for _, o := range objs {
		switch kindOf(o) {
		case "Namespace":
			in.namespace = nameOf(o)
		case "CustomResourceDefinition":
			c := &apiextensionsv1.CustomResourceDefinition{}
			if err := decode(o, c); err != nil {
				return nil, err
			}
			in.crds = append(in.crds, crd{raw: o, typed: c})
		case "Deployment":
			d := &appsv1.Deployment{}
			if err := decode(o, d); err != nil {
				return nil, err
			}
			in.deployments = append(in.deployments, d)
		case "ServiceAccount":
			// OLM creates the service accounts the permissions name.
		case "Role", "ClusterRole":
			r := &rbacv1.ClusterRole{} // a Role's fields are a subset
			if err := decode(o, r); err != nil {
				return nil, err
			}
			roles[kindOf(o)+"/"+nameOf(o)] = r.Rules
			roleObjs[kindOf(o)+"/"+nameOf(o)] = o
		case "RoleBinding", "ClusterRoleBinding":
			bindings = append(bindings, o)
		case "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
			webhookConfigs = append(webhookConfigs, o)
		case "Service":
			s := &corev1.Service{}
			if err := decode(o, s); err != nil {
				return nil, err
			}
			services[s.Name] = s
			serviceObjs = append(serviceObjs, o)
		case "ConfigMap":
			in.extra = append(in.extra, bundleCopy(o))
		default:
			return nil, fmt.Errorf("%s %s in %s: hack/genbundle does not know how OLM should install this kind", kindOf(o), nameOf(o), defaultConfig)
		}
	}
	if len(in.deployments) == 0 {
		return nil, fmt.Errorf("%s renders no Deployment", defaultConfig)
	}
	for _, d := range in.deployments {
		forOLM(d)
	}
	for _, b := range bindings {
		rb := &rbacv1.RoleBinding{}
		if err := decode(b, rb); err != nil {
			return nil, err
		}
		rules, ok := roles[rb.RoleRef.Kind+"/"+rb.RoleRef.Name]
		if !ok {
			return nil, fmt.Errorf("%s %s binds missing %s %s", kindOf(b), rb.Name, rb.RoleRef.Kind, rb.RoleRef.Name)
		}
		// A ClusterRoleBinding for users or groups (the nodes, say) is not
		// a permission of the operator's own: it ships as it is, with its
		// ClusterRole, as OLM bundles allow.
		if kindOf(b) == "ClusterRoleBinding" && !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool { return s.Kind == rbacv1.ServiceAccountKind }) {
			in.extra = append(in.extra, roleObjs[rb.RoleRef.Kind+"/"+rb.RoleRef.Name], b)
			continue
		}
		for _, s := range rb.Subjects {
			if s.Kind != rbacv1.ServiceAccountKind {
				return nil, fmt.Errorf("%s %s: OLM only grants service accounts, not %s %s", kindOf(b), rb.Name, s.Kind, s.Name)
			}
			if kindOf(b) == "ClusterRoleBinding" {
				in.clusterPermissions = addRules(in.clusterPermissions, s.Name, rules)
			} else {
				in.permissions = addRules(in.permissions, s.Name, rules)
			}
		}
	}
	webhookServices := map[string]bool{}
	for _, c := range webhookConfigs {
		whs, svcs, err := webhookDescriptions(c, services, in.deployments)
		if err != nil {
			return nil, err
		}
		in.webhooks = append(in.webhooks, whs...)
		for _, s := range svcs {
			webhookServices[s] = true
		}
	}
	// OLM creates the webhooks' Service; any other Service ships as is.
	for _, s := range serviceObjs {
		if !webhookServices[nameOf(s)] {
			in.extra = append(in.extra, bundleCopy(s))
		}
	}
	slices.SortFunc(in.crds, func(a, b crd) int { return strings.Compare(a.typed.Name, b.typed.Name) })
	return in, nil
}

// bundleCopy strips the namespace: OLM installs bundle objects into the
// namespace the operator is installed in.
func bundleCopy(o object) object {
	delete(meta(o), "namespace")
	return o
}

func addRules(ps []strategyPermissions, sa string, rules []rbacv1.PolicyRule) []strategyPermissions {
	for i := range ps {
		if ps[i].ServiceAccountName == sa {
			ps[i].Rules = append(ps[i].Rules, rules...)
			return ps
		}
	}
	return append(ps, strategyPermissions{ServiceAccountName: sa, Rules: slices.Clone(rules)})
}

// forOLM turns the manager Deployment of config/default into the one OLM
// runs: OLM provides the webhook certificate, so the manager stops
// provisioning its own and reads OLM's from olmCertDir; the volume that
// held the self-provisioned certificate goes.
func forOLM(d *appsv1.Deployment) {
	spec := &d.Spec.Template.Spec
	dropped := map[string]bool{}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if len(c.Command) == 0 || c.Command[0] != managerCommand {
			continue
		}
		oldDir := ""
		var args []string
		for _, a := range c.Args {
			switch {
			case strings.HasPrefix(a, certDirFlag+"="):
				oldDir = strings.TrimPrefix(a, certDirFlag+"=")
			case a == provisionFlag || strings.HasPrefix(a, provisionFlag+"="):
			default:
				args = append(args, a)
			}
		}
		c.Args = append(args, provisionFlag+"=false", certDirFlag+"="+olmCertDir)
		c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			if oldDir != "" && m.MountPath == oldDir {
				dropped[m.Name] = true
				return true
			}
			return false
		})
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, m := range c.VolumeMounts {
			delete(dropped, m.Name) // still used elsewhere
		}
	}
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool { return dropped[v.Name] })
}

// webhookDescriptions converts one webhook configuration. It returns the
// names of the Services its webhooks call, which OLM replaces with its own.
func webhookDescriptions(o object, services map[string]*corev1.Service, deps []*appsv1.Deployment) ([]webhookDescription, []string, error) {
	mutating := kindOf(o) == "MutatingWebhookConfiguration"
	var whs []admissionregistrationv1.MutatingWebhook
	if mutating {
		c := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := decode(o, c); err != nil {
			return nil, nil, err
		}
		whs = c.Webhooks
	} else {
		c := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := decode(o, c); err != nil {
			return nil, nil, err
		}
		for _, w := range c.Webhooks {
			whs = append(whs, admissionregistrationv1.MutatingWebhook{
				Name: w.Name, ClientConfig: w.ClientConfig, Rules: w.Rules, FailurePolicy: w.FailurePolicy,
				MatchPolicy: w.MatchPolicy, NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector,
				SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions,
				MatchConditions: w.MatchConditions,
			})
		}
	}
	var out []webhookDescription
	var svcs []string
	for _, w := range whs {
		ref := w.ClientConfig.Service
		if ref == nil {
			return nil, nil, fmt.Errorf("webhook %s: OLM can only serve webhooks backed by a Service", w.Name)
		}
		if len(w.MatchConditions) > 0 {
			return nil, nil, fmt.Errorf("webhook %s: OLM's webhookdefinitions cannot carry matchConditions", w.Name)
		}
		if w.NamespaceSelector != nil && (len(w.NamespaceSelector.MatchLabels) > 0 || len(w.NamespaceSelector.MatchExpressions) > 0) {
			// OLM sets namespaceSelector from the OperatorGroup.
			fmt.Fprintf(os.Stderr, "genbundle: webhook %s: namespaceSelector is dropped, OLM derives it from the OperatorGroup\n", w.Name)
		}
		dep, port, err := webhookBackend(ref, services, deps)
		if err != nil {
			return nil, nil, fmt.Errorf("webhook %s: %w", w.Name, err)
		}
		typ := validatingAdmissionWebhook
		if mutating {
			typ = mutatingAdmissionWebhook
		}
		target := intstr.FromInt32(port)
		out = append(out, webhookDescription{
			GenerateName: w.Name, Type: typ, DeploymentName: dep, ContainerPort: port, TargetPort: &target,
			Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy, ObjectSelector: w.ObjectSelector,
			SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions,
			ReinvocationPolicy: w.ReinvocationPolicy, WebhookPath: ref.Path,
		})
		svcs = append(svcs, ref.Name)
	}
	return out, svcs, nil
}

// webhookBackend finds the Deployment behind a webhook's Service and the
// container port the webhook server listens on.
func webhookBackend(ref *admissionregistrationv1.ServiceReference, services map[string]*corev1.Service, deps []*appsv1.Deployment) (string, int32, error) {
	svc, ok := services[ref.Name]
	if !ok {
		return "", 0, fmt.Errorf("service %s is not in %s", ref.Name, defaultConfig)
	}
	want := int32(443)
	if ref.Port != nil {
		want = *ref.Port
	}
	var target *intstr.IntOrString
	for _, p := range svc.Spec.Ports {
		if p.Port == want {
			target = &p.TargetPort
		}
	}
	if target == nil {
		return "", 0, fmt.Errorf("service %s has no port %d", svc.Name, want)
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, d := range deps {
		if len(svc.Spec.Selector) == 0 || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		if target.Type == intstr.Int {
			return d.Name, target.IntVal, nil
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == target.StrVal {
					return d.Name, p.ContainerPort, nil
				}
			}
		}
		return "", 0, fmt.Errorf("deployment %s has no container port named %q", d.Name, target.StrVal)
	}
	return "", 0, fmt.Errorf("no Deployment matches the selector of service %s", svc.Name)
}

func readBaseCSV(path string) (*clusterServiceVersion, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	csv := &clusterServiceVersion{}
	if err := yaml.UnmarshalStrict(b, csv); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return csv, nil
}

// defaultImage is the image config/manager points the manager at, with the
// bundle's version as its tag.
func defaultImage(root, version string) (string, error) {
	k, err := readKustomization(filepath.Join(root, managerConfig))
	if err != nil {
		return "", err
	}
	for _, img := range k.Images {
		if img.NewName != "" {
			return img.NewName + ":v" + version, nil
		}
	}
	return "", fmt.Errorf("%s/kustomization.yaml sets no image newName", managerConfig)
}

// buildCSV completes the hand-written base CSV with what config/ holds.
func buildCSV(csv *clusterServiceVersion, in *inputs, samples []object, img, version string) error {
	csv.APIVersion = "operators.coreos.com/v1alpha1"
	csv.Kind = "ClusterServiceVersion"
	csv.Metadata.Name = packageName + ".v" + version
	csv.Spec.Version = version
	if csv.Metadata.Annotations == nil {
		csv.Metadata.Annotations = map[string]string{}
	}
	examples, err := json.MarshalIndent(samples, "", "  ")
	if err != nil {
		return err
	}
	csv.Metadata.Annotations["alm-examples"] = string(examples)
	csv.Metadata.Annotations["containerImage"] = img
	if in.namespace != "" {
		csv.Metadata.Annotations["operatorframework.io/suggested-namespace"] = in.namespace
	}

	owned, err := ownedCRDs(csv.Spec.CustomResourceDefinitions.Owned, in.crds)
	if err != nil {
		return err
	}
	csv.Spec.CustomResourceDefinitions.Owned = owned

	if len(csv.Spec.Install.Spec.DeploymentSpecs) > 0 || len(csv.Spec.WebhookDefinitions) > 0 {
		return fmt.Errorf("%s: install and webhookdefinitions are generated from %s; remove them", baseCSV, defaultConfig)
	}
	csv.Spec.Install.StrategyName = "deployment"
	for _, d := range in.deployments {
		for i := range d.Spec.Template.Spec.Containers {
			if c := &d.Spec.Template.Spec.Containers[i]; c.Command != nil && c.Command[0] == managerCommand {
				c.Image = img
			}
		}
		csv.Spec.Install.Spec.DeploymentSpecs = append(csv.Spec.Install.Spec.DeploymentSpecs,
			strategyDeployment{Name: d.Name, Label: d.Labels, Spec: d.Spec})
	}
	csv.Spec.Install.Spec.Permissions = in.permissions
	csv.Spec.Install.Spec.ClusterPermissions = in.clusterPermissions
	csv.Spec.WebhookDefinitions = in.webhooks
	return nil
}

// ownedCRDs lists every served version of every CRD, taking display names
// and descriptions from the base CSV where it has them and from the CRD
// (kind split into words, schema description) where it does not.
func ownedCRDs(base []crdDescription, crds []crd) ([]crdDescription, error) {
	used := map[int]bool{}
	var out []crdDescription
	for _, c := range crds {
		for _, v := range c.typed.Spec.Versions {
			if !v.Served {
				continue
			}
			d := crdDescription{Name: c.typed.Name, Version: v.Name, Kind: c.typed.Spec.Names.Kind}
			for i, b := range base {
				if b.Name == d.Name && (b.Version == "" || b.Version == d.Version) {
					used[i] = true
					d.DisplayName, d.Description = b.DisplayName, b.Description
				}
			}
			if d.DisplayName == "" {
				d.DisplayName = splitWords(d.Kind)
			}
			if d.Description == "" && v.Schema != nil && v.Schema.OpenAPIV3Schema != nil {
				d.Description = strings.Join(strings.Fields(v.Schema.OpenAPIV3Schema.Description), " ")
			}
			out = append(out, d)
		}
	}
	for i, b := range base {
		if !used[i] {
			return nil, fmt.Errorf("%s owns %s %s, which %s does not install", baseCSV, b.Name, b.Version, defaultConfig)
		}
	}
	return out, nil
}

// splitWords turns "TunnelEndpoint" into "Tunnel Endpoint".
func splitWords(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) && !unicode.IsUpper(rune(s[i-1])) {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// crdFileName follows operator-sdk's <group>_<plural>.yaml.
func crdFileName(c *apiextensionsv1.CustomResourceDefinition) string {
	return c.Spec.Group + "_" + c.Spec.Names.Plural + ".yaml"
}

// bundleLabels are the registry+v1 bundle annotations, which bundle.Dockerfile
// repeats as image labels.
func bundleLabels(o options) map[string]string {
	return map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1":       "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":        "metadata/",
		"operators.operatorframework.io.bundle.package.v1":         packageName,
		"operators.operatorframework.io.bundle.channels.v1":        strings.Join(o.Channels, ","),
		"operators.operatorframework.io.bundle.channel.default.v1": o.DefaultChannel,
	}
}

func bundleDockerfile(labels map[string]string) []byte {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("# Generated by hack/genbundle from config/; do not edit. Build from the\n# repository root: docker build -f bundle.Dockerfile -t <bundle-image> .\nFROM scratch\n\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "LABEL %s=%s\n", k, labels[k])
	}
	b.WriteString("\nCOPY " + bundleDir + "/manifests /manifests/\nCOPY " + bundleDir + "/metadata /metadata/\n")
	return []byte(b.String())
}
