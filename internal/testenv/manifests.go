package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NodeRBAC is the manifest of what the project grants nodes (group
// system:nodes) on top of the Node authorizer, relative to the repository
// root.
const NodeRBAC = "config/rbac/node_reader.yaml"

// ApplyManifest creates the objects of a YAML manifest of the repository
// (path relative to its root) as they are shipped, so tests grant what an
// install grants.
func ApplyManifest(ctx context.Context, c client.Client, path string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(root, path))
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, &obj); err != nil {
			return fmt.Errorf("creating %s %s from %s: %w", obj.GetKind(), obj.GetName(), path, err)
		}
	}
}
