package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// object is one manifest as decoded from YAML.
type object = map[string]any

// kustomization is the subset of kustomize this repository's config/ uses.
// Unmarshalling is strict, so a kustomization that starts using another
// feature (patches, replacements, ...) fails generation loudly instead of
// producing a bundle that differs from `kubectl kustomize`.
type kustomization struct {
	APIVersion string   `json:"apiVersion,omitempty"`
	Kind       string   `json:"kind,omitempty"`
	Namespace  string   `json:"namespace,omitempty"`
	NamePrefix string   `json:"namePrefix,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Images     []image  `json:"images,omitempty"`
}

type image struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

func readKustomization(dir string) (*kustomization, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	k := &kustomization{}
	if err := yaml.UnmarshalStrict(b, k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml uses kustomize features hack/genbundle does not implement: %w", dir, err)
	}
	return k, nil
}

// kustomize renders dir the way `kubectl kustomize` does for the features
// in kustomization: resources (files and directories), images, namePrefix
// and namespace, applied innermost first.
func kustomize(dir string) ([]object, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		var got []object
		if fi.IsDir() {
			got, err = kustomize(p)
		} else {
			got, err = readObjects(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, got...)
	}
	for _, o := range objs {
		for _, c := range podContainers(o) {
			setImage(c, k.Images)
		}
	}
	if k.NamePrefix != "" {
		prefixNames(objs, k.NamePrefix)
	}
	if k.Namespace != "" {
		setNamespace(objs, k.Namespace)
	}
	return objs, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// readObjects reads every non-empty YAML document of a file.
func readObjects(path string) ([]object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, doc := range docSeparator.Split(string(b), -1) {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		var o object
		if err := json.Unmarshal(j, &o); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// decode converts an object to a typed API struct, refusing unknown fields.
func decode(o object, into any) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("%s %s: %w", kindOf(o), nameOf(o), err)
	}
	return nil
}

func kindOf(o object) string { s, _ := o["kind"].(string); return s }

func meta(o object) object {
	m, _ := o["metadata"].(object)
	if m == nil {
		m = object{}
		o["metadata"] = m
	}
	return m
}

func nameOf(o object) string { s, _ := meta(o)["name"].(string); return s }

func field(o object, path ...string) object {
	for _, p := range path {
		next, _ := o[p].(object)
		if next == nil {
			return nil
		}
		o = next
	}
	return o
}

func list(o object, key string) []object {
	items, _ := o[key].([]any)
	var out []object
	for _, it := range items {
		if m, ok := it.(object); ok {
			out = append(out, m)
		}
	}
	return out
}

func podContainers(o object) []object {
	if kindOf(o) != "Deployment" {
		return nil
	}
	spec := field(o, "spec", "template", "spec")
	if spec == nil {
		return nil
	}
	return append(list(spec, "initContainers"), list(spec, "containers")...)
}

// setImage applies kustomize's images transformer to one container.
func setImage(c object, images []image) {
	ref, _ := c["image"].(string)
	name, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i:]
	}
	if i := strings.Index(name, "@"); i >= 0 {
		name, tag = name[:i], name[i:]
	}
	for _, img := range images {
		if img.Name != name {
			continue
		}
		if img.NewName != "" {
			name = img.NewName
		}
		switch {
		case img.Digest != "":
			tag = "@" + img.Digest
		case img.NewTag != "":
			tag = ":" + img.NewTag
		}
		c["image"] = name + tag
	}
}

// clusterScoped lists the cluster-scoped kinds config/ contains.
var clusterScoped = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"CustomResourceDefinition": true, "ValidatingWebhookConfiguration": true,
	"MutatingWebhookConfiguration": true,
}

// prefixNames prefixes every name but CRDs' and the references this
// repository's manifests hold: service accounts, role refs, subjects and
// webhook services.
func prefixNames(objs []object, prefix string) {
	for _, o := range objs {
		if kindOf(o) == "CustomResourceDefinition" {
			continue
		}
		meta(o)["name"] = prefix + nameOf(o)
		switch kindOf(o) {
		case "Deployment":
			if spec := field(o, "spec", "template", "spec"); spec != nil {
				if sa, ok := spec["serviceAccountName"].(string); ok {
					spec["serviceAccountName"] = prefix + sa
				}
			}
		case "RoleBinding", "ClusterRoleBinding":
			if ref := field(o, "roleRef"); ref != nil {
				ref["name"] = prefix + ref["name"].(string)
			}
			for _, s := range list(o, "subjects") {
				if s["kind"] == "ServiceAccount" {
					s["name"] = prefix + s["name"].(string)
				}
			}
		case "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
			for _, w := range list(o, "webhooks") {
				if svc := field(w, "clientConfig", "service"); svc != nil {
					svc["name"] = prefix + svc["name"].(string)
				}
			}
		}
	}
}

// setNamespace moves namespaced objects, and the references to them, into
// ns; the Namespace object itself is renamed to ns.
func setNamespace(objs []object, ns string) {
	for _, o := range objs {
		switch kindOf(o) {
		case "Namespace":
			meta(o)["name"] = ns
		case "RoleBinding", "ClusterRoleBinding":
			for _, s := range list(o, "subjects") {
				if s["kind"] == "ServiceAccount" {
					s["namespace"] = ns
				}
			}
		case "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
			for _, w := range list(o, "webhooks") {
				if svc := field(w, "clientConfig", "service"); svc != nil {
					svc["namespace"] = ns
				}
			}
		}
		if !clusterScoped[kindOf(o)] {
			meta(o)["namespace"] = ns
		}
	}
}
