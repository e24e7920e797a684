package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Environment returns an envtest environment with edgeunit's CRDs and, when
// webhooks is true, its admission webhooks installed. It sets
// KUBEBUILDER_ASSETS so envtest finds the binaries from bin/k8s.
func Environment(webhooks bool) (*envtest.Environment, error) {
	assets, err := Setenv()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if webhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths:                    []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
			IgnoreErrorIfPathMissing: false,
		}
	}
	return env, nil
}

// EnvironmentWithWebhooks is Environment with only the named webhooks of
// config/webhook/manifests.yaml installed, for suites that serve some of
// the project's webhooks: a webhook nobody serves would fail its requests.
func EnvironmentWithWebhooks(names ...string) (*envtest.Environment, error) {
	env, err := Environment(false)
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("reading webhook manifests: %w", err)
		}
		if u.Object == nil {
			continue
		}
		js, err := u.MarshalJSON()
		if err != nil {
			return nil, err
		}
		switch u.GetKind() {
		case "ValidatingWebhookConfiguration":
			var c admissionregistrationv1.ValidatingWebhookConfiguration
			if err := json.Unmarshal(js, &c); err != nil {
				return nil, err
			}
			c.Webhooks = slices.DeleteFunc(c.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool { return !want[w.Name] })
			if len(c.Webhooks) > 0 {
				env.WebhookInstallOptions.ValidatingWebhooks = append(env.WebhookInstallOptions.ValidatingWebhooks, &c)
			}
		case "MutatingWebhookConfiguration":
			var c admissionregistrationv1.MutatingWebhookConfiguration
			if err := json.Unmarshal(js, &c); err != nil {
				return nil, err
			}
			c.Webhooks = slices.DeleteFunc(c.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool { return !want[w.Name] })
			if len(c.Webhooks) > 0 {
				env.WebhookInstallOptions.MutatingWebhooks = append(env.WebhookInstallOptions.MutatingWebhooks, &c)
			}
		}
	}
	return env, nil
}
