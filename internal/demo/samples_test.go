package demo

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/controllers/unitdeployment"
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
	want := "NodePool/factory-a NodePool/cloud TunnelEndpoint/tunnel EdgeUnit/factory UnitDeployment/line-dashboard"
	if strings.Join(got, " ") != want {
		t.Errorf("samples: got %v, want %s", got, want)
	}
}

// TestRepoSampleUnitDeploymentSelectsSampleUnits checks that the sample
// UnitDeployment gets an instance in the samples' units and that each of
// its overrides changes one of them: a renamed unit or label would leave
// the demo's UnitDeployment with nothing to show.
func TestRepoSampleUnitDeploymentSelectsSampleUnits(t *testing.T) {
	ms, err := loadSamples(filepath.Join("..", "..", "config", "samples"), controllers.Scheme())
	if err != nil {
		t.Fatal(err)
	}
	var (
		units []edgev1.EdgeUnit
		uds   []edgev1.UnitDeployment
	)
	for _, m := range ms {
		switch m.obj.GetKind() {
		case "EdgeUnit":
			var u edgev1.EdgeUnit
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.obj.Object, &u); err != nil {
				t.Fatal(err)
			}
			units = append(units, u)
		case "UnitDeployment":
			var ud edgev1.UnitDeployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.obj.Object, &ud); err != nil {
				t.Fatal(err)
			}
			uds = append(uds, ud)
		}
	}
	if len(uds) == 0 {
		t.Fatal("the samples have no UnitDeployment")
	}
	selected := func(sel edgev1.UnitSelector) []string {
		var out []string
		for _, u := range units {
			if unitdeployment.Selects(sel, u.Name, u.Labels) {
				out = append(out, u.Name)
			}
		}
		return out
	}
	for _, ud := range uds {
		if ud.Namespace == "" {
			t.Errorf("UnitDeployment %s has no namespace: `kubectl create` and the e2e suite need one", ud.Name)
		}
		picked := selected(ud.Spec.Units)
		if len(picked) == 0 {
			t.Errorf("UnitDeployment %s selects none of the sample units", ud.Name)
		}
		for i, o := range ud.Spec.Overrides {
			if !slices.ContainsFunc(selected(o.Units), func(u string) bool { return slices.Contains(picked, u) }) {
				t.Errorf("UnitDeployment %s: override %d changes none of its units %v", ud.Name, i, picked)
			}
		}
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
