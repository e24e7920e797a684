// Package demo runs edgeunit's embedded local environment: a kube-apiserver
// and etcd from the envtest binaries, the CRDs and webhooks, the manager
// in-process, simulated edge nodes and config/samples, a real tunnel (a
// tunnel-server process and a tunnel-agent process per edge node), with a
// kubeconfig for the user.
package demo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeunit/edgeunit/internal/testenv"
)

// Options configure the demo. Zero values take the defaults that Complete
// fills in.
type Options struct {
	// AssetsDir holds kube-apiserver and etcd. Default: $KUBEBUILDER_ASSETS,
	// else bin/k8s at the repository root.
	AssetsDir string
	// ConfigDir is the repository's config directory (crd/bases, webhook,
	// samples). Default: config at the repository root.
	ConfigDir string
	// SamplesDir holds the objects applied after the nodes are registered.
	// Default: ConfigDir/samples.
	SamplesDir string
	// KubeconfigOut is where the admin kubeconfig is written. Default:
	// $TMPDIR/edgeunit-demo/kubeconfig.
	KubeconfigOut string
	// Kubectl is the kubectl used for the summary. Default: kubectl on
	// PATH; when there is none the summary is printed from the client.
	Kubectl string
	// BinDir holds tunnel-server and tunnel-agent. Default: the directory
	// of the running executable when it holds them (bin/ after `make
	// build`), else they are built into the working directory.
	BinDir string
	// ReadyTimeout bounds the wait for the pools to become Ready, then
	// each of the waits for the pods' bindings, for the UnitDeployments'
	// statuses to settle and for the tunnel agents to show as connected.
	ReadyTimeout time.Duration
	// ExitAfterSetup makes Run return once the summary is printed.
	ExitAfterSetup bool
	// RealNode says whether to run a real edge node next to the simulated
	// ones (see RealNodeMode); default off. The node runs in a helper
	// process, `<this executable> real-node run`, so the executable must
	// be edgeunit-demo.
	RealNode RealNodeMode
	// Out receives the progress and the summary. Default: os.Stdout.
	Out io.Writer
}

// DefaultReadyTimeout is the default of Options.ReadyTimeout.
const DefaultReadyTimeout = time.Minute

// DefaultKubeconfigOut is the default of Options.KubeconfigOut.
func DefaultKubeconfigOut() string {
	return filepath.Join(os.TempDir(), "edgeunit-demo", "kubeconfig")
}

// Complete fills in defaults and checks that the binaries and manifests are
// where the options say, with errors that tell the user what to do.
func (o *Options) Complete() error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.ReadyTimeout < 0 {
		return fmt.Errorf("--ready-timeout must not be negative, got %s", o.ReadyTimeout)
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.KubeconfigOut == "" {
		o.KubeconfigOut = DefaultKubeconfigOut()
	}
	mode, err := ParseRealNodeMode(string(o.RealNode))
	if err != nil {
		return err
	}
	o.RealNode = mode

	if o.AssetsDir == "" {
		dir, err := testenv.AssetsDir()
		if err != nil {
			return fmt.Errorf("finding the envtest binaries (pass --assets or set KUBEBUILDER_ASSETS): %w", err)
		}
		o.AssetsDir = dir
	}
	if err := checkAssets(o.AssetsDir); err != nil {
		return err
	}

	if o.ConfigDir == "" {
		root, err := repoRoot()
		if err != nil {
			return fmt.Errorf("finding the config directory (pass --config-dir): %w", err)
		}
		o.ConfigDir = filepath.Join(root, "config")
	}
	for _, sub := range []string{crdDir, webhookDir} {
		if err := checkDir(filepath.Join(o.ConfigDir, sub)); err != nil {
			return fmt.Errorf("--config-dir %s does not look like edgeunit's config directory: %w", o.ConfigDir, err)
		}
	}
	if o.SamplesDir == "" {
		o.SamplesDir = filepath.Join(o.ConfigDir, "samples")
	}
	if err := checkDir(o.SamplesDir); err != nil {
		return fmt.Errorf("samples directory: %w", err)
	}

	if o.BinDir != "" {
		if err := checkBinaries(o.BinDir); err != nil {
			return fmt.Errorf("--bin-dir %s: %w (run `make build`)", o.BinDir, err)
		}
	}
	for _, p := range []*string{&o.AssetsDir, &o.ConfigDir, &o.SamplesDir, &o.KubeconfigOut, &o.BinDir} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	return nil
}

// Paths inside the config directory.
const (
	crdDir     = "crd/bases"
	webhookDir = "webhook"
)

func checkAssets(dir string) error {
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		p := filepath.Join(dir, bin)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("envtest binary %s not found in %s (run `make envtest`): %w", bin, dir, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("envtest binary %s is not executable (run `make envtest`)", p)
		}
	}
	return nil
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// repoRoot finds the repository from the working directory and, failing
// that, from the binary's location (bin/edgeunit-demo run from elsewhere).
func repoRoot() (string, error) {
	root, err := testenv.RepoRoot()
	if err == nil && checkDir(filepath.Join(root, "config", crdDir)) == nil {
		return root, nil
	}
	if exe, exeErr := os.Executable(); exeErr == nil {
		for dir := filepath.Dir(exe); ; dir = filepath.Dir(dir) {
			if checkDir(filepath.Join(dir, "config", crdDir)) == nil {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if err == nil {
		err = fmt.Errorf("%s has no config/%s", root, crdDir)
	}
	return "", errors.Join(errors.New("not inside the edgeunit repository"), err)
}
