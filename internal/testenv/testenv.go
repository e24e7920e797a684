// Package testenv finds the envtest control-plane binaries (kube-apiserver,
// etcd) that hack/build-k8s.sh builds into bin/k8s, for tests, benchmarks and
// the demo.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// AssetsDir returns the directory holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS when set, else bin/k8s at the repository root.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, check(dir)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s")
	return dir, check(dir)
}

// RepoRoot walks up from the working directory to the directory of go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func check(dir string) error {
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return fmt.Errorf("envtest binary %s missing in %s (run `make envtest`): %w", bin, dir, err)
		}
	}
	return nil
}

// Setenv points KUBEBUILDER_ASSETS at AssetsDir so envtest finds the
// binaries; it returns the directory.
func Setenv() (string, error) {
	dir, err := AssetsDir()
	if err != nil {
		return "", err
	}
	return dir, os.Setenv("KUBEBUILDER_ASSETS", dir)
}
