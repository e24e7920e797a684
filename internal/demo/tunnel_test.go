package demo

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestTunnelPending(t *testing.T) {
	te := func(nodes ...string) *edgev1.TunnelEndpoint {
		e := &edgev1.TunnelEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "tunnel"}}
		for _, n := range nodes {
			e.Status.Agents = append(e.Status.Agents, edgev1.ConnectedAgent{Node: n, Servers: 1})
		}
		e.Status.ConnectedAgents = int32(len(nodes))
		return e
	}
	unit := func(status metav1.ConditionStatus) edgev1.EdgeUnit {
		u := edgev1.EdgeUnit{ObjectMeta: metav1.ObjectMeta{Name: "factory"}}
		if status != "" {
			u.Status.Conditions = []metav1.Condition{{Type: edgev1.ConditionTunnelConnected, Status: status, Message: "m"}}
		}
		return u
	}
	tests := map[string]struct {
		te    *edgev1.TunnelEndpoint
		units []edgev1.EdgeUnit
		want  []string
	}{
		"connected": {
			te:    te("a", "b"),
			units: []edgev1.EdgeUnit{unit(metav1.ConditionTrue)},
		},
		"an agent missing": {
			te:    te("a"),
			units: []edgev1.EdgeUnit{unit(metav1.ConditionFalse)},
			want:  []string{"TunnelEndpoint tunnel does not list the agents of b (connectedAgents 1)", "EdgeUnit factory: TunnelConnected is False: m"},
		},
		"unit not reconciled yet": {
			te:    te("a", "b"),
			units: []edgev1.EdgeUnit{unit("")},
			want:  []string{"EdgeUnit factory has no TunnelConnected condition yet"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tunnelPending(tc.te, tc.units, []string{"a", "b"})
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("tunnelPending() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRenderBinding checks the tunnel-server's binding is rendered as
// config/default renders it, from the repository's file.
func TestRenderBinding(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := readDocuments(filepath.Join(root, "config", tunnelServerRBACFile))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.GetKind() != "ClusterRoleBinding" {
			continue
		}
		found = true
		if err := renderBinding(u); err != nil {
			t.Fatal(err)
		}
		var b rbacv1.ClusterRoleBinding
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
			t.Fatal(err)
		}
		if b.RoleRef.Name != "edgeunit-tunnel-server" {
			t.Errorf("roleRef %q, want edgeunit-tunnel-server", b.RoleRef.Name)
		}
		want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "edgeunit-tunnel-server", Namespace: "edgeunit-system"}
		if len(b.Subjects) != 1 || b.Subjects[0] != want {
			t.Errorf("subjects %+v, want [%+v]", b.Subjects, want)
		}
	}
	if !found {
		t.Fatal("no ClusterRoleBinding in the tunnel-server's RBAC")
	}
}

// TestStartTunnelFails gives the demo a tunnel-agent that fails at once
// and checks that Start reports it and stops the tunnel-server it had
// started, the manager and the control plane.
func TestStartTunnelFails(t *testing.T) {
	ctx := testContext(t)
	bin := t.TempDir()
	if err := os.Symlink(filepath.Join(testBinDir, "tunnel-server"), filepath.Join(bin, "tunnel-server")); err != nil {
		t.Fatal(err)
	}
	agent := "#!/bin/sh\necho 'simulated agent failure' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(bin, "tunnel-agent"), []byte(agent), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := testOptions(t, &out)
	o.BinDir = bin
	d, err := Start(ctx, o)
	if err == nil {
		_ = d.Stop()
		t.Fatal("Start succeeded with a tunnel-agent that fails")
	}
	for _, want := range []string{"tunnel-agent factory-a-", "exit status 3", "simulated agent failure"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if d == nil || d.Tunnel == nil || d.Tunnel.Server == nil {
		t.Fatalf("Start failed before the tunnel-server ran: %v\noutput:\n%s", err, out.String())
	}
	if exited, _ := d.Tunnel.Server.Exited(); !exited {
		t.Errorf("tunnel-server (pid %d) still runs after Start failed", d.Tunnel.Server.PID)
	}
	assertStopped(t, d)
}
