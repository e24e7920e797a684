// Command ociimage builds a single-layer container image from local files
// and writes it as an OCI image layout in a tar archive, the form
// `ctr images import` takes, without a Docker engine or a registry.
//
//	ociimage -o edgeunit.tar -ref edgeunit.local/edgeunit:e2e \
//	    -entrypoint /manager -user 65532 bin/linux/manager=/manager ...
//
// The archive's index names the image by its full reference
// (io.containerd.image.name) and by its tag (org.opencontainers.image.ref.name).
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is every file's modification time, so the same inputs give the
// same image digest.
var epoch = time.Unix(0, 0).UTC()

type options struct {
	out, ref, entrypoint, user, platform string
	files                                []file
}

// file is one regular file of the image: src on this machine, dst in the
// image.
type file struct{ src, dst string }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	fs.StringVar(&o.out, "o", "", "Archive to write (required).")
	fs.StringVar(&o.ref, "ref", "", "Image reference, e.g. edgeunit.local/edgeunit:e2e (required).")
	fs.StringVar(&o.entrypoint, "entrypoint", "", "Entrypoint: a path in the image, arguments separated by spaces.")
	fs.StringVar(&o.user, "user", "", "User the image runs as (uid[:gid]); root when empty.")
	fs.StringVar(&o.platform, "platform", "linux/amd64", "os/arch of the files.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.out == "" || o.ref == "" || fs.NArg() == 0 {
		return errors.New("usage: ociimage -o archive.tar -ref name:tag [-entrypoint /bin] [-user uid] src=/dst ...")
	}
	for _, a := range fs.Args() {
		src, dst, ok := strings.Cut(a, "=")
		if !ok || src == "" || !path.IsAbs(dst) {
			return fmt.Errorf("file %q: want src=/absolute/destination", a)
		}
		o.files = append(o.files, file{src: src, dst: path.Clean(dst)})
	}
	return build(o)
}

func build(o options) error {
	ref, err := name.ParseReference(o.ref)
	if err != nil {
		return fmt.Errorf("image reference: %w", err)
	}
	plat, err := v1.ParsePlatform(o.platform)
	if err != nil {
		return fmt.Errorf("platform: %w", err)
	}
	layerTar, err := layerArchive(o.files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = o.user
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if o.entrypoint != "" {
		cf.Config.Entrypoint = strings.Fields(o.entrypoint)
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	tag := "latest"
	if t, ok := ref.(name.Tag); ok {
		tag = t.TagStr()
	}
	if err := lp.AppendImage(img, layout.WithPlatform(*plat), layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref.Name(),
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	return tarDir(dir, o.out)
}

// layerArchive is the layer: the files, the directories above them, /tmp,
// and an /etc/passwd naming root and the image's user.
func layerArchive(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{"/tmp": true, "/etc": true}
	for _, f := range files {
		for d := path.Dir(f.dst); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, d := range sorted {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	passwd := []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
	if err := writeFile(tw, "etc/passwd", 0o644, passwd); err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return nil, err
		}
		if err := writeFile(tw, strings.TrimPrefix(f.dst, "/"), 0o755, b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// tarDir writes the layout directory as a tar archive, atomically.
func tarDir(dir, out string) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".ociimage-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	tw := tar.NewWriter(tmp)
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.ModTime = filepath.ToSlash(rel), epoch
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil || info.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp.Name(), out)
}
