package hubinstall

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// source writes a consistent ConfigMap-like directory and returns its files.
func source(t *testing.T, dir, config string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		KeyConfig:     []byte(config),
		KeyUnit:       []byte("unit: factory\n"),
		KeyKubeconfig: []byte("apiVersion: v1\nkind: Config\n"),
	}
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "edge-hub", Annotations: map[string]string{AnnotationConfigHash: ConfigHash(files)}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "edge-hub", Image: "hub:1"}}},
	}
	raw, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	files[KeyManifest] = raw
	writeAll(t, dir, files)
	return files
}

func writeAll(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func options(t *testing.T) Options {
	root := t.TempDir()
	return Options{
		SourceDir:   filepath.Join(root, "src"),
		ManifestDir: filepath.Join(root, "etc", "kubernetes", "manifests"),
		StateDir:    filepath.Join(root, "var", "lib", "edgeunit"),
		Interval:    time.Hour,
	}
}

func installed(t *testing.T, o Options) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	read := func(key, path string) {
		b, err := os.ReadFile(path)
		if err == nil {
			out[key] = b
		}
	}
	read(KeyManifest, filepath.Join(o.ManifestDir, KeyManifest))
	for _, k := range configKeys {
		read(k, filepath.Join(o.StateDir, HubStateSubdir, k))
	}
	return out
}

func TestSync(t *testing.T) {
	tests := map[string]struct {
		// mutate breaks the source after a consistent one is written.
		mutate      func(t *testing.T, dir string)
		wantErr     string
		wantWritten int
	}{
		"fresh node gets every file": {wantWritten: 4},
		"missing key writes nothing": {
			mutate:  func(t *testing.T, dir string) { _ = os.Remove(filepath.Join(dir, KeyUnit)) },
			wantErr: "reading unit.yaml",
		},
		"config changed without the manifest writes nothing": {
			mutate: func(t *testing.T, dir string) {
				writeAll(t, dir, map[string][]byte{KeyConfig: []byte("server: https://other\n")})
			},
			wantErr: "ConfigMap mid-update",
		},
		"manifest that is not a Pod writes nothing": {
			mutate: func(t *testing.T, dir string) {
				writeAll(t, dir, map[string][]byte{KeyManifest: []byte("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\n")})
			},
			wantErr: "not a v1 Pod",
		},
		"truncated manifest writes nothing": {
			mutate: func(t *testing.T, dir string) {
				writeAll(t, dir, map[string][]byte{KeyManifest: []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: edge-hub, annotations: {")})
			},
			wantErr: "not a Pod manifest",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := options(t)
			source(t, o.SourceDir, "server: https://api\n")
			if tc.mutate != nil {
				tc.mutate(t, o.SourceDir)
			}
			written, err := Sync(o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Sync error = %v, want it to contain %q", err, tc.wantErr)
				}
				if got := installed(t, o); len(got) != 0 {
					t.Fatalf("Sync wrote %d files from a bad source", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(written) != tc.wantWritten {
				t.Fatalf("wrote %v, want %d files", written, tc.wantWritten)
			}
			if written[len(written)-1] != filepath.Join(o.ManifestDir, KeyManifest) {
				t.Fatalf("the manifest must be written last, order was %v", written)
			}
		})
	}
}

func TestSyncIsIdempotentAndFollowsChanges(t *testing.T) {
	o := options(t)
	src := source(t, o.SourceDir, "server: https://api\n")
	if _, err := Sync(o); err != nil {
		t.Fatal(err)
	}
	again, err := Sync(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("second sync rewrote %v", again)
	}

	next := source(t, o.SourceDir, "server: https://api-2\n")
	written, err := Sync(o)
	if err != nil {
		t.Fatal(err)
	}
	// The config and the manifest (new hash) change; unit and kubeconfig do not.
	if len(written) != 2 {
		t.Fatalf("wrote %v, want config.yaml and edge-hub.yaml", written)
	}
	got := installed(t, o)
	for k, v := range next {
		if string(got[k]) != string(v) {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if string(got[KeyManifest]) == string(src[KeyManifest]) {
		t.Error("manifest did not change with its configuration")
	}

	// A previous crash left a temporary file; the next write removes it.
	stale := filepath.Join(o.ManifestDir, tempPrefix(KeyManifest)+"123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	source(t, o.SourceDir, "server: https://api-3\n")
	if _, err := Sync(o); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(o.ManifestDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != KeyManifest {
		t.Fatalf("manifest dir holds %v, want only %s", entries, KeyManifest)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	tests := []struct {
		name      string
		data      string
		perm      os.FileMode
		wantWrote bool
	}{
		{"creates", "a", 0o600, true},
		{"same content is a no-op", "a", 0o600, false},
		{"new content replaces", "bb", 0o600, true},
		{"mode change rewrites", "bb", 0o644, true},
	}
	for _, tc := range tests {
		wrote, err := WriteFileAtomic(path, []byte(tc.data), tc.perm)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if wrote != tc.wantWrote {
			t.Fatalf("%s: wrote = %v, want %v", tc.name, wrote, tc.wantWrote)
		}
		b, _ := os.ReadFile(path)
		st, _ := os.Stat(path)
		if string(b) != tc.data || st.Mode().Perm() != tc.perm {
			t.Fatalf("%s: file = %q %v", tc.name, b, st.Mode().Perm())
		}
	}
	// A directory that cannot be written leaves the old content in place.
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = os.Chmod(dir, 0o755) }()
		if _, err := WriteFileAtomic(path, []byte("ccc"), 0o644); err == nil {
			t.Fatal("write into a read-only directory succeeded")
		}
		if b, _ := os.ReadFile(path); string(b) != "bb" {
			t.Fatalf("failed write changed the file to %q", b)
		}
	}
}

func TestRunSyncsUntilCancelled(t *testing.T) {
	o := options(t)
	source(t, o.SourceDir, "server: https://api\n")
	o.Interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, nil, logr.Discard()) }()

	deadline := time.After(10 * time.Second)
	for len(installed(t, o)) != 4 {
		select {
		case <-deadline:
			t.Fatal("Run did not install the files")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// A config rollout reaches the node without a restart.
	next := source(t, o.SourceDir, "server: https://api-2\n")
	for string(installed(t, o)[KeyManifest]) != string(next[KeyManifest]) {
		select {
		case <-deadline:
			t.Fatal("Run did not follow the ConfigMap change")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestUninstall(t *testing.T) {
	o := options(t)
	source(t, o.SourceDir, "server: https://api\n")
	if _, err := Sync(o); err != nil {
		t.Fatal(err)
	}
	if err := Uninstall(o); err != nil {
		t.Fatal(err)
	}
	if got := installed(t, o); len(got) != 0 {
		t.Fatalf("files left after Uninstall: %v", got)
	}
	if err := Uninstall(o); err != nil {
		t.Fatalf("second Uninstall: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err == nil || !strings.Contains(err.Error(), "--source-dir") || !strings.Contains(err.Error(), "--interval") {
		t.Fatalf("Validate() = %v, want every missing option named", err)
	}
}

// fakeNode records the hook's calls and says the node left or stayed.
type fakeNode struct {
	synced chan struct{}
	left   bool
}

func (f *fakeNode) AfterSync(context.Context) {
	select {
	case f.synced <- struct{}{}:
	default:
	}
}

func (f *fakeNode) Stopping(context.Context) bool { return f.left }

func TestRunUninstallsOnlyWhenTheNodeLeft(t *testing.T) {
	for _, left := range []bool{false, true} {
		o := options(t)
		source(t, o.SourceDir, "server: https://api\n")
		o.Interval = time.Hour
		node := &fakeNode{synced: make(chan struct{}, 1), left: left}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, o, node, logr.Discard()) }()
		select {
		case <-node.synced:
		case <-time.After(10 * time.Second):
			t.Fatal("the node hook did not run after the first sync")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want := 4
		if left {
			want = 0
		}
		if got := installed(t, o); len(got) != want {
			t.Fatalf("node left=%v: %d files installed after stopping, want %d", left, len(got), want)
		}
	}
}
