// Command genbundle writes edgeunit's OLM bundle — bundle/manifests,
// bundle/metadata and bundle.Dockerfile — from config/: the CRDs, the
// manager Deployment and its RBAC, the webhooks (all as `kubectl kustomize
// config/default` renders them), the samples, and the hand-written CSV
// metadata in config/manifests/bases. Its output is a pure function of those
// files and the flags, so the committed bundle can be checked for drift (see
// main_test.go).
//
//	go run ./hack/genbundle                     # rewrite bundle/ and bundle.Dockerfile
//	go run ./hack/genbundle -image my/img:dev -out /tmp/b
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// options select what to generate and where.
type options struct {
	// Root is the repository root holding config/.
	Root string
	// Out is the directory that receives bundle/ and bundle.Dockerfile.
	Out string
	// Version is the bundle's semantic version (no leading v).
	Version string
	// Image is the manager image; empty means the image config/manager
	// names, tagged v<Version>.
	Image string
	// Channels and DefaultChannel are the OLM channels the bundle is in.
	Channels       []string
	DefaultChannel string
}

// Defaults the committed bundle is generated with.
const (
	defaultVersion = "0.1.0"
	defaultChannel = "alpha"
	packageName    = "edgeunit"
)

func defaultOptions() options {
	return options{Root: ".", Out: ".", Version: defaultVersion, Channels: []string{defaultChannel}, DefaultChannel: defaultChannel}
}

func main() {
	o := defaultOptions()
	channels := defaultChannel
	flag.StringVar(&o.Root, "root", o.Root, "Repository root holding config/.")
	flag.StringVar(&o.Out, "out", o.Out, "Directory to write bundle/ and bundle.Dockerfile into.")
	flag.StringVar(&o.Version, "version", o.Version, "Bundle version (semver, no leading v).")
	flag.StringVar(&o.Image, "image", o.Image, "Manager image (default: config/manager's image tagged v<version>).")
	flag.StringVar(&channels, "channels", channels, "Comma-separated OLM channels.")
	flag.StringVar(&o.DefaultChannel, "default-channel", o.DefaultChannel, "Default OLM channel.")
	flag.Parse()
	o.Channels = strings.Split(channels, ",")
	if err := write(o); err != nil {
		fmt.Fprintln(os.Stderr, "genbundle:", err)
		os.Exit(1)
	}
}

// write generates the bundle and replaces Out/bundle/{manifests,metadata}
// and Out/bundle.Dockerfile with it.
func write(o options) error {
	files, err := generate(o)
	if err != nil {
		return err
	}
	for _, d := range []string{"manifests", "metadata"} {
		if err := os.RemoveAll(filepath.Join(o.Out, "bundle", d)); err != nil {
			return err
		}
	}
	for name, b := range files {
		p := filepath.Join(o.Out, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
