package testenv

import (
	"path/filepath"
	"time"

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
