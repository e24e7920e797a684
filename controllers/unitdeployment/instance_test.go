package unitdeployment

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/applied"
)

func testUD() *edgev1.UnitDeployment {
	return &edgev1.UnitDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shops", UID: "uid-1"},
		Spec: edgev1.UnitDeploymentSpec{
			Units: edgev1.UnitSelector{Names: []string{"north", "south"}},
			Template: edgev1.InstanceTemplate{
				Metadata: edgev1.InstanceMetadata{Labels: map[string]string{"app": "web"}},
				Spec: edgev1.InstanceSpec{
					Replicas: ptr.To[int32](2),
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
						Spec: corev1.PodSpec{Containers: []corev1.Container{{
							Name: "web", Image: "web:1",
							Env: []corev1.EnvVar{{Name: "MODE", Value: "shop"}, {Name: "KEEP", Value: "1"}},
						}}},
					},
				},
			},
		},
	}
}

func patch(op, path, value string) edgev1.JSONPatch {
	p := edgev1.JSONPatch{Op: edgev1.PatchOp(op), Path: path}
	if value != "" {
		p.Value = &apiextensionsv1.JSON{Raw: []byte(value)}
	}
	return p
}

func TestInstance(t *testing.T) {
	north := Unit{Name: "north", Labels: map[string]string{"tier": "flagship"}, Taints: []edgev1.NodePoolTaint{{Key: "example.com/edge", Value: "true", Effect: "NoSchedule"}}}
	tests := map[string]struct {
		overrides []edgev1.UnitOverride
		check     func(t *testing.T, d *appsv1.Deployment)
		wantErr   string
	}{
		"template only: pinned, selected, tolerating the pools' taints": {
			check: func(t *testing.T, d *appsv1.Deployment) {
				sel := map[string]string{edgev1.LabelUnitDeployment: "web", edgev1.LabelUnit: "north"}
				if d.Name != "web-north" || d.Namespace != "shops" {
					t.Errorf("name %s/%s, want shops/web-north", d.Namespace, d.Name)
				}
				if !equality.Semantic.DeepEqual(d.Spec.Selector, &metav1.LabelSelector{MatchLabels: sel}) {
					t.Errorf("selector %v", d.Spec.Selector)
				}
				want := map[string]string{"app": "web", edgev1.LabelUnitDeployment: "web", edgev1.LabelUnit: "north"}
				if !equality.Semantic.DeepEqual(d.Spec.Template.Labels, want) || !equality.Semantic.DeepEqual(d.Labels, want) {
					t.Errorf("labels %v / pod labels %v, want %v", d.Labels, d.Spec.Template.Labels, want)
				}
				if d.Spec.Template.Spec.NodeSelector[edgev1.LabelUnit] != "north" {
					t.Errorf("node selector %v", d.Spec.Template.Spec.NodeSelector)
				}
				wantTol := []corev1.Toleration{{Key: "example.com/edge", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
				if !equality.Semantic.DeepEqual(d.Spec.Template.Spec.Tolerations, wantTol) {
					t.Errorf("tolerations %v, want %v", d.Spec.Template.Spec.Tolerations, wantTol)
				}
				if d.Annotations[edgev1.AnnotationRevision] != "rev1" || *d.Spec.Replicas != 2 {
					t.Errorf("revision %q replicas %d", d.Annotations[edgev1.AnnotationRevision], *d.Spec.Replicas)
				}
			},
		},
		"overrides in order, by name and by selector, later wins": {
			overrides: []edgev1.UnitOverride{
				{Units: edgev1.UnitSelector{Names: []string{"north"}}, Replicas: ptr.To[int32](4), Containers: []edgev1.ContainerOverride{{
					Name: "web", Image: "web:2", Env: []corev1.EnvVar{{Name: "MODE", Value: "flagship"}, {Name: "NEW", Value: "x"}},
					Resources: &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}},
				}}},
				{Units: edgev1.UnitSelector{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "flagship"}}}, Replicas: ptr.To[int32](6)},
				{Units: edgev1.UnitSelector{Names: []string{"south"}}, Replicas: ptr.To[int32](1)},
			},
			check: func(t *testing.T, d *appsv1.Deployment) {
				c := d.Spec.Template.Spec.Containers[0]
				wantEnv := []corev1.EnvVar{{Name: "MODE", Value: "flagship"}, {Name: "KEEP", Value: "1"}, {Name: "NEW", Value: "x"}}
				if *d.Spec.Replicas != 6 || c.Image != "web:2" || !equality.Semantic.DeepEqual(c.Env, wantEnv) || c.Resources.Limits.Cpu().String() != "500m" {
					t.Errorf("replicas %d image %s env %v resources %v", *d.Spec.Replicas, c.Image, c.Env, c.Resources)
				}
			},
		},
		"patches apply last": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"north"}}, Patches: []edgev1.JSONPatch{
				patch("add", "/spec/template/spec/hostNetwork", "true"),
				patch("add", "/metadata/annotations/example.com~1shop", `"north"`),
			}}},
			check: func(t *testing.T, d *appsv1.Deployment) {
				if !d.Spec.Template.Spec.HostNetwork || d.Annotations["example.com/shop"] != "north" {
					t.Errorf("hostNetwork %v annotations %v", d.Spec.Template.Spec.HostNetwork, d.Annotations)
				}
			},
		},
		"an override for another unit changes nothing": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"south"}}, Patches: []edgev1.JSONPatch{patch("replace", "/spec/selector", `{}`)}}},
			check: func(t *testing.T, d *appsv1.Deployment) {
				if *d.Spec.Replicas != 2 {
					t.Errorf("replicas %d", *d.Spec.Replicas)
				}
			},
		},
		"a patch may not change the selector": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"north"}}, Patches: []edgev1.JSONPatch{patch("replace", "/spec/selector/matchLabels", `{"a":"b"}`)}}},
			wantErr:   "spec.overrides[0]: the patches change spec.selector",
		},
		"a patch may not unpin the instance": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"north"}}, Patches: []edgev1.JSONPatch{patch("remove", "/spec/template/spec/nodeSelector", "")}}},
			wantErr:   "the patches change the node selector",
		},
		"a patch may not rename the instance": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"north"}}, Patches: []edgev1.JSONPatch{patch("replace", "/metadata/name", `"other"`)}}},
			wantErr:   "the patches change the instance's name or namespace",
		},
		"a patch that leaves no Deployment is refused": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"north"}}, Patches: []edgev1.JSONPatch{patch("add", "/spec/bogus", `1`)}}},
			wantErr:   "the patched instance is not a Deployment",
		},
		"a patch whose path does not exist is refused": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"north"}}, Patches: []edgev1.JSONPatch{patch("replace", "/spec/template/spec/containers/3/image", `"x"`)}}},
			wantErr:   "spec.overrides[0]: patches",
		},
		"a container override must name a container": {
			overrides: []edgev1.UnitOverride{{Units: edgev1.UnitSelector{Names: []string{"north"}}, Containers: []edgev1.ContainerOverride{{Name: "sidecar", Image: "x"}}}},
			wantErr:   `spec.overrides[0]: containers[0]: the pod template has no container "sidecar"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ud := testUD()
			ud.Spec.Overrides = tc.overrides
			before := ud.DeepCopy()
			d, err := Instance(ud, north, "rev1")
			if !equality.Semantic.DeepEqual(before, ud) {
				t.Fatalf("Instance changed the UnitDeployment")
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, d)
		})
	}
}

func TestRevisionIgnoresUnitsServiceAndRollout(t *testing.T) {
	a := testUD()
	b := a.DeepCopy()
	b.Spec.Units = edgev1.UnitSelector{Names: []string{"east"}}
	b.Spec.Rollout.MaxUnavailableUnits = 5
	b.Spec.Service = &edgev1.UnitServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}
	if Revision(&a.Spec) != Revision(&b.Spec) {
		t.Errorf("revision changed with units, rollout or service")
	}
	b.Spec.Template.Spec.Template.Spec.Containers[0].Image = "web:2"
	if Revision(&a.Spec) == Revision(&b.Spec) {
		t.Errorf("revision did not change with the template")
	}
}

func TestInstanceApplyHashIsStable(t *testing.T) {
	ud := testUD()
	d1, _ := Instance(ud, Unit{Name: "north"}, "r")
	d2, _ := Instance(ud, Unit{Name: "north"}, "r")
	a1, err := instanceApply(ud, d1)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := instanceApply(ud, d2)
	if a1.Annotations[applied.Annotation] != a2.Annotations[applied.Annotation] || a1.Status != nil || a1.CreationTimestamp != nil {
		t.Errorf("apply configurations differ or carry status: %v %v", a1.Annotations, a2.Annotations)
	}
	if ref := a1.OwnerReferences[0]; *ref.Kind != "UnitDeployment" || !*ref.Controller || *ref.UID != "uid-1" {
		t.Errorf("owner reference %+v", ref)
	}
}
