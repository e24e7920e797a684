package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeunit/edgeunit/controllers"
)

// TestLoadRepoSamples checks that config/samples decodes strictly into the
// API types, in the kustomization's order.
func TestLoadRepoSamples(t *testing.T) {
	ms, err := loadSamples(filepath.Join("..", "..", "config", "samples"), controllers.Scheme())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.obj.GetKind()+"/"+m.obj.GetName())
	}
	want := "NodePool/factory-a NodePool/cloud TunnelEndpoint/tunnel EdgeUnit/factory"
	if strings.Join(got, " ") != want {
		t.Errorf("samples: got %v, want %s", got, want)
	}
}

func TestLoadSamplesErrors(t *testing.T) {
	tests := map[string]struct {
		files map[string]string
		want  string
	}{
		"unknown field": {
			files: map[string]string{"pool.yaml": "apiVersion: edge.edgeunit.io/v1alpha1\nkind: NodePool\nmetadata:\n  name: a\nspec:\n  lables: {}\n"},
			want:  `pool.yaml#1: strict decoding error: unknown field "spec.lables"`,
		},
		"unknown kind": {
			files: map[string]string{"x.yaml": "apiVersion: edge.edgeunit.io/v1alpha1\nkind: NodeGroup\nmetadata:\n  name: a\n"},
			want:  "x.yaml#1",
		},
		"second document": {
			files: map[string]string{"x.yaml": "# comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\nbogus: 1\n"},
			want:  "x.yaml#2",
		},
		"kustomization lists a missing file": {
			files: map[string]string{"kustomization.yaml": "resources:\n- gone.yaml\n"},
			want:  `lists resource "gone.yaml"`,
		},
		"empty directory": {
			want: "no YAML files",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := loadSamples(dir, controllers.Scheme())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadSamples() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
