package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// manifest is one object read from the samples.
type manifest struct {
	// source is "file#index" for error messages.
	source string
	obj    *unstructured.Unstructured
}

// kustomization is the part of kustomization.yaml the demo reads.
type kustomization struct {
	Resources []string `json:"resources"`
}

// sampleFiles lists the samples in the order kustomization.yaml gives, or
// every YAML file in name order when there is none.
func sampleFiles(dir string) ([]string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		var files []string
		for _, pattern := range []string{"*.yaml", "*.yml"} {
			m, err := filepath.Glob(filepath.Join(dir, pattern))
			if err != nil {
				return nil, err
			}
			files = append(files, m...)
		}
		slices.Sort(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("no YAML files in %s", dir)
		}
		return files, nil
	case err != nil:
		return nil, err
	}
	var k kustomization
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "kustomization.yaml"), err)
	}
	files := make([]string, 0, len(k.Resources))
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		if err := checkFile(p); err != nil {
			return nil, fmt.Errorf("%s lists resource %q: the demo applies plain files only: %w", filepath.Join(dir, "kustomization.yaml"), r, err)
		}
		files = append(files, p)
	}
	return files, nil
}

func checkFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", p)
	}
	return nil
}

// loadSamples reads every object in the sample files. Each is decoded
// strictly into its Go type first, so a typo in a field name or an unknown
// kind fails here with the file name rather than being silently pruned by
// the apiserver.
func loadSamples(dir string, scheme *runtime.Scheme) ([]manifest, error) {
	files, err := sampleFiles(dir)
	if err != nil {
		return nil, err
	}
	strict := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []manifest
	for _, f := range files {
		docs, err := readDocuments(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range docs {
			src := fmt.Sprintf("%s#%d", filepath.Base(f), i+1)
			if _, _, err := strict.Decode(doc, nil, nil); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", src, err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", src, err)
			}
			out = append(out, manifest{source: src, obj: u})
		}
	}
	return out, nil
}

// readDocuments splits a multi-document YAML file, dropping empty documents.
func readDocuments(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if isEmptyDocument(doc) {
			continue
		}
		docs = append(docs, doc)
	}
}

func isEmptyDocument(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		l := strings.TrimSpace(string(line))
		if l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

// applySamples server-side applies each object. A webhook that is not
// reachable yet is retried for a bounded time; anything else, such as a
// schema or webhook rejection, fails at once.
func applySamples(ctx context.Context, c client.Client, ms []manifest, timeout time.Duration) error {
	for _, m := range ms {
		obj := m.obj.DeepCopy()
		namespaced, err := c.IsObjectNamespaced(obj)
		if err != nil {
			return fmt.Errorf("applying %s: %w", m.source, err)
		}
		if namespaced && obj.GetNamespace() == "" {
			obj.SetNamespace("default")
		}
		var lastErr error
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			lastErr = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.FieldOwner(FieldOwner), client.ForceOwnership)
			if lastErr == nil {
				return true, nil
			}
			return false, retryable(lastErr)
		})
		if err != nil {
			if lastErr != nil {
				err = lastErr
			}
			return fmt.Errorf("applying %s %s from %s: %w", obj.GetKind(), obj.GetName(), m.source, err)
		}
	}
	return nil
}

// retryable returns nil for errors that go away once the manager's webhook
// server answers and the apiserver settles, and the error otherwise.
func retryable(err error) error {
	switch {
	case apierrors.IsInternalError(err) && strings.Contains(err.Error(), "failed calling webhook"),
		apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err),
		apierrors.IsTooManyRequests(err):
		return nil
	}
	return err
}
