// Package hubinstall is the node side of the edge hub's installation: it
// copies the hub's static-pod manifest, configuration and client kubeconfig
// from a mounted ConfigMap into the node's kubelet and state directories, so
// the hub runs as a static pod and comes back after a reboot with the cloud
// unreachable.
//
// The EdgeUnit controller writes the ConfigMap (keys below); an installer
// DaemonSet mounts it and runs `edge-hub install`, which calls Main. Every
// file is written atomically (temporary file, fsync, rename, fsync of the
// directory), only when its content differs, and the manifest last: the
// kubelet never sees a half-written manifest nor a manifest whose
// configuration is not on disk yet.
package hubinstall

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/edgeunit/edgeunit/internal/nodeaddr"
)

// Keys of the hub ConfigMap, which are also the file names on the node.
const (
	// KeyManifest is the edge-hub static Pod (YAML), written to the
	// kubelet's manifest directory.
	KeyManifest = "edge-hub.yaml"
	// KeyConfig is the hub's configuration (internal/hub.Config, YAML).
	KeyConfig = "config.yaml"
	// KeyUnit describes the unit the node is in (UnitFile, YAML).
	KeyUnit = "unit.yaml"
	// KeyKubeconfig points node clients at the hub's local listener.
	KeyKubeconfig = "kubeconfig"
)

// AnnotationConfigHash on the static Pod is ConfigHash of the files it
// reads. A changed configuration changes the manifest, so the kubelet
// restarts the hub; the installer also uses it to refuse a manifest that
// does not match the configuration next to it (a ConfigMap caught mid-update).
const AnnotationConfigHash = "edge.edgeunit.io/config-hash"

// HubStateSubdir is the directory under the state directory holding the
// hub's configuration files.
const HubStateSubdir = "hub"

// configKeys are the files the static Pod reads, in the order they are
// hashed and written.
var configKeys = []string{KeyConfig, KeyUnit, KeyKubeconfig}

// UnitFile is the content of KeyUnit: what the hub knows about its unit.
type UnitFile struct {
	// Unit is the EdgeUnit's name.
	Unit string `json:"unit"`
	// NodePools are the pools the unit owns.
	NodePools []string `json:"nodePools,omitempty"`
	// CacheClients are all the clients the unit asks the hub to cache for,
	// including those the hub's configuration does not know yet.
	CacheClients []string `json:"cacheClients,omitempty"`
	// ServiceTopologyMode is the unit's spec.serviceTopology.mode.
	ServiceTopologyMode string `json:"serviceTopologyMode,omitempty"`
	// NetworkAutonomy switches.
	StablePodIPs  bool   `json:"stablePodIPs,omitempty"`
	StableVTEPMAC bool   `json:"stableVTEPMAC,omitempty"`
	VTEPDevice    string `json:"vtepDevice,omitempty"`
}

// ConfigHash hashes the configuration files by key, in a fixed order. The
// controller and the installer compute it the same way.
func ConfigHash(files map[string][]byte) string {
	h := sha256.New()
	for _, k := range configKeys {
		fmt.Fprintf(h, "%s\x00%d\x00", k, len(files[k]))
		h.Write(files[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Options of the installer.
type Options struct {
	// SourceDir is where the ConfigMap is mounted.
	SourceDir string
	// ManifestDir is the kubelet's static pod directory.
	ManifestDir string
	// StateDir is edgeunit's state directory on the node; the hub's files
	// go to StateDir/hub.
	StateDir string
	// Interval between re-syncs; ConfigMap volumes change in place.
	Interval time.Duration
	// InClusterAddress is the address the hub put on the node's loopback
	// interface for its in-cluster listener; Uninstall removes it. Empty:
	// left alone.
	InClusterAddress string
}

// BindFlags registers the options on fs with their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SourceDir, "source-dir", "/etc/edgeunit/hub-install", "directory of the mounted hub ConfigMap")
	fs.StringVar(&o.ManifestDir, "manifest-dir", "/host/etc/kubernetes/manifests", "the kubelet's static pod directory, as mounted")
	fs.StringVar(&o.StateDir, "state-dir", "/host/var/lib/edgeunit", "edgeunit's state directory on the node, as mounted")
	fs.DurationVar(&o.Interval, "interval", 10*time.Second, "how often the mounted ConfigMap is checked for changes")
	fs.StringVar(&o.InClusterAddress, "in-cluster-address", "", "the hub's in-cluster listener address (host:port), whose IP is removed from the loopback interface on uninstall (empty: left alone)")
}

// Validate reports missing options.
func (o Options) Validate() error {
	var errs []error
	for flagName, v := range map[string]string{"--source-dir": o.SourceDir, "--manifest-dir": o.ManifestDir, "--state-dir": o.StateDir} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flagName))
		}
	}
	if o.Interval <= 0 {
		errs = append(errs, errors.New("--interval must be positive"))
	}
	return errors.Join(errs...)
}

// Node is what the installer does on the node besides installing files
// (node conversion, package conversion): AfterSync runs after every
// sync; Stopping runs once when the installer is told to stop
// and says whether the node left the unit, so the hub's files go.
type Node interface {
	AfterSync(ctx context.Context)
	Stopping(ctx context.Context) (uninstall bool)
}

// StopBound bounds what the installer does after it was told to stop: the
// DaemonSet's grace period must be longer.
const StopBound = 90 * time.Second

// Run syncs at once and then every Interval until ctx ends. A failed sync
// is logged and retried: the files already installed stay as they were.
// node, when not nil, runs after each successful sync and when stopping.
func Run(ctx context.Context, o Options, node Node, log logr.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	var lastErr string
	for {
		changed, err := Sync(o)
		switch {
		case err != nil:
			// Log a repeated failure once, not every interval.
			if err.Error() != lastErr {
				log.Error(err, "Installing the edge hub failed, will retry", "interval", o.Interval)
			}
			lastErr = err.Error()
		case len(changed) > 0:
			lastErr = ""
			log.Info("Installed edge hub files", "files", changed)
		default:
			lastErr = ""
		}
		// Even after a failed sync: a switch a crash interrupted is
		// finished (or rolled back) whatever the ConfigMap's state.
		if node != nil {
			node.AfterSync(ctx)
		}
		select {
		case <-ctx.Done():
			if node == nil {
				return nil
			}
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopBound)
			defer cancel()
			if node.Stopping(stopCtx) {
				if err := Uninstall(o); err != nil {
					return err
				}
				log.Info("Removed the edge hub from this node: it left the unit")
			}
			return nil
		case <-t.C:
		}
	}
}

// Sync installs the files from SourceDir when they differ from what is on
// the node, and returns the paths it wrote. It writes nothing unless the
// whole set is present and consistent.
func Sync(o Options) ([]string, error) {
	files, err := readSource(o.SourceDir)
	if err != nil {
		return nil, err
	}
	stateDir := filepath.Join(o.StateDir, HubStateSubdir)
	for _, dir := range []string{stateDir, o.ManifestDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	type target struct{ key, path string }
	// The manifest goes last: the kubelet starts the hub as soon as it
	// appears, and the hub must find its configuration.
	targets := make([]target, 0, len(configKeys)+1)
	for _, k := range configKeys {
		targets = append(targets, target{k, filepath.Join(stateDir, k)})
	}
	targets = append(targets, target{KeyManifest, filepath.Join(o.ManifestDir, KeyManifest)})

	var changed []string
	for _, t := range targets {
		wrote, err := WriteFileAtomic(t.path, files[t.key], 0o600)
		if err != nil {
			return changed, err
		}
		if wrote {
			changed = append(changed, t.path)
		}
	}
	return changed, nil
}

// readSource reads every key and checks the manifest is a Pod built for
// exactly these configuration files.
func readSource(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, k := range append([]string{KeyManifest}, configKeys...) {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			return nil, fmt.Errorf("reading %s from the hub ConfigMap: %w", k, err)
		}
		files[k] = b
	}
	if err := checkManifest(files[KeyManifest], ConfigHash(files)); err != nil {
		return nil, err
	}
	return files, nil
}

func checkManifest(raw []byte, hash string) error {
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
		return fmt.Errorf("%s is not a Pod manifest: %w", KeyManifest, err)
	}
	if pod.Kind != "Pod" || pod.APIVersion != "v1" {
		return fmt.Errorf("%s is a %s/%s, not a v1 Pod", KeyManifest, pod.APIVersion, pod.Kind)
	}
	if pod.Name == "" || len(pod.Spec.Containers) == 0 {
		return fmt.Errorf("%s: a Pod needs a name and a container", KeyManifest)
	}
	if got := pod.Annotations[AnnotationConfigHash]; got != hash {
		// The ConfigMap volume is updated by swapping a symlink, but we read
		// the files one by one; the next sync sees a consistent set.
		return fmt.Errorf("%s was built for configuration %q but the configuration files hash to %q (ConfigMap mid-update?)", KeyManifest, got, hash)
	}
	return nil
}

// WriteFileAtomic makes path hold data with mode perm. It returns false
// without writing when the file already holds data. The new content is
// written to a hidden temporary file in the same directory (the kubelet
// ignores dot files in its manifest directory), synced, and renamed over
// path, then the directory is synced: after a crash path holds either the
// old or the new content, never a mix.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (bool, error) {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == perm {
			return false, nil
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	removeStaleTemps(dir, base)
	tmp, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return false, fmt.Errorf("writing %s: %w", tmpName, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return false, fmt.Errorf("writing %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("syncing %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("closing %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return false, fmt.Errorf("renaming %s to %s: %w", tmpName, path, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return true, err
	}
	return true, nil
}

func tempPrefix(base string) string { return "." + base + ".tmp-" }

// removeStaleTemps deletes temporary files a crash left behind.
func removeStaleTemps(dir, base string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix(base)) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// Uninstall removes the static Pod manifest first (the kubelet stops the
// hub), then the hub's configuration and its in-cluster interface. The
// hub's cache is left alone. The installer calls it when its Node says the
// node left the unit.
func Uninstall(o Options) error {
	paths := []string{filepath.Join(o.ManifestDir, KeyManifest)}
	for _, k := range configKeys {
		paths = append(paths, filepath.Join(o.StateDir, HubStateSubdir, k))
	}
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
		}
	}
	if o.InClusterAddress != "" {
		host, _, err := net.SplitHostPort(o.InClusterAddress)
		ip := net.ParseIP(host)
		switch {
		case err != nil || ip == nil:
			errs = append(errs, fmt.Errorf("--in-cluster-address %q is not an IP and port", o.InClusterAddress))
		default:
			if err := nodeaddr.RemoveLoopback(ip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
