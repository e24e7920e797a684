package demo

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// udFixture is a settled cluster: UnitDeployment default/web selects units
// a (2 nodes, instance web-a at revision r1) and b (no nodes, instance
// web-b at r1), with its Service programmed.
func udFixture() *udCluster {
	ud := edgev1.UnitDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "ud-uid", Generation: 2},
		Spec: edgev1.UnitDeploymentSpec{
			Service: &edgev1.UnitServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		},
		Status: edgev1.UnitDeploymentStatus{
			ObservedGeneration: 2, UpdateRevision: "r1", Units: 2, UpdatedUnits: 2,
			Replicas: 5,
			Instances: []edgev1.UnitInstanceStatus{
				{Unit: "a", Nodes: 2, Replicas: 4, Revision: "r1"},
				{Unit: "b", Replicas: 1, Revision: "r1"},
			},
			Conditions: []metav1.Condition{
				{Type: edgev1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: edgev1.ReasonRollingOut, Message: "Revision r1 is rolling out"},
				{Type: edgev1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: edgev1.ReasonUnavailable, Message: "Not every replica is available in a"},
				{Type: edgev1.ConditionReady, Status: metav1.ConditionFalse, Reason: edgev1.ReasonUnavailable, Message: "Not every replica is available in a"},
			},
		},
	}
	owner := []metav1.OwnerReference{{APIVersion: edgev1.GroupVersion.String(), Kind: "UnitDeployment", Name: "web", UID: "ud-uid", Controller: ptr.To(true)}}
	instance := func(unit string, replicas int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "default", Name: "web-" + unit, OwnerReferences: owner,
				Labels:      map[string]string{edgev1.LabelUnitDeployment: "web", edgev1.LabelUnit: unit},
				Annotations: map[string]string{edgev1.AnnotationRevision: "r1"},
			},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(replicas),
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					NodeSelector: map[string]string{edgev1.LabelUnit: unit},
					Tolerations:  []corev1.Toleration{{Key: "example.com/edge", Operator: corev1.TolerationOpEqual, Value: unit, Effect: corev1.TaintEffectNoSchedule}},
				}},
			},
		}
	}
	node := func(name, unit string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{edgev1.LabelUnit: unit}}}
	}
	return &udCluster{
		uds: []edgev1.UnitDeployment{ud},
		instances: map[types.NamespacedName]*appsv1.Deployment{
			{Namespace: "default", Name: "web-a"}: instance("a", 4),
			{Namespace: "default", Name: "web-b"}: instance("b", 1),
		},
		services: map[types.NamespacedName]*corev1.Service{
			{Namespace: "default", Name: "web"}: {
				ObjectMeta: metav1.ObjectMeta{
					Namespace: "default", Name: "web", OwnerReferences: owner,
					Annotations: map[string]string{edgev1.AnnotationTopology: "unit"},
					ManagedFields: []metav1.ManagedFieldsEntry{
						{Manager: "edgeunit-unitdeployment", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:ports":{}}}`)}},
						{Manager: "edgeunit-topology", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:trafficDistribution":{}}}`)}},
					},
				},
				Spec: corev1.ServiceSpec{
					Ports:               []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
					TrafficDistribution: ptr.To(corev1.ServiceTrafficDistributionPreferSameZone),
				},
			},
		},
		nodes: []corev1.Node{node("a-1", "a"), node("a-2", "a"), node("x-1", "x")},
	}
}

func TestUnsettled(t *testing.T) {
	tests := map[string]struct {
		change func(cl *udCluster)
		want   []string
	}{
		"settled": {
			change: func(*udCluster) {},
		},
		"status for an older generation": {
			change: func(cl *udCluster) { cl.uds[0].Generation = 3 },
			want:   []string{"UnitDeployment default/web: status is for generation 2, spec is at 3"},
		},
		"no Ready condition": {
			change: func(cl *udCluster) { cl.uds[0].Status.Conditions = cl.uds[0].Status.Conditions[:2] },
			want:   []string{"UnitDeployment default/web has no Ready condition yet"},
		},
		"a node joined the unit since": {
			change: func(cl *udCluster) {
				cl.nodes = append(cl.nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "b-1", Labels: map[string]string{edgev1.LabelUnit: "b"}}})
			},
			want: []string{"UnitDeployment default/web counts 0 nodes in unit b, which has 1"},
		},
		"a listed instance is gone": {
			change: func(cl *udCluster) { delete(cl.instances, types.NamespacedName{Namespace: "default", Name: "web-b"}) },
			want:   []string{"UnitDeployment default/web lists instance web-b, which does not exist"},
		},
		"an instance someone else controls is not the UnitDeployment's": {
			change: func(cl *udCluster) {
				cl.instances[types.NamespacedName{Namespace: "default", Name: "web-b"}].OwnerReferences = nil
			},
			want: []string{"UnitDeployment default/web lists instance web-b, which does not exist"},
		},
		"a conflicting instance listed without a revision is settled": {
			change: func(cl *udCluster) {
				cl.instances[types.NamespacedName{Namespace: "default", Name: "web-b"}].OwnerReferences = nil
				cl.uds[0].Status.Instances[1].Revision = ""
			},
		},
		"an instance at another revision": {
			change: func(cl *udCluster) {
				cl.instances[types.NamespacedName{Namespace: "default", Name: "web-a"}].Annotations[edgev1.AnnotationRevision] = "r2"
			},
			want: []string{`UnitDeployment default/web lists instance web-a at revision "r1", which is at "r2"`},
		},
		"no Service yet": {
			change: func(cl *udCluster) { cl.services = map[types.NamespacedName]*corev1.Service{} },
			want:   []string{"UnitDeployment default/web: Service default/web does not exist yet"},
		},
		"Service not programmed yet": {
			change: func(cl *udCluster) {
				cl.services[types.NamespacedName{Namespace: "default", Name: "web"}].Spec.TrafficDistribution = nil
			},
			want: []string{"Service default/web: the topology controller has not set its trafficDistribution yet"},
		},
		"no Service asked for": {
			change: func(cl *udCluster) {
				cl.uds[0].Spec.Service = nil
				cl.services = map[types.NamespacedName]*corev1.Service{}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cl := udFixture()
			tc.change(cl)
			if got := unsettled(cl); !slices.Equal(got, tc.want) {
				t.Errorf("unsettled() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWriteUnitDeployments(t *testing.T) {
	tests := map[string]struct {
		change func(cl *udCluster)
		want   []string
		absent []string
	}{
		"instances not ready: says why": {
			change: func(*udCluster) {},
			want: []string{
				"UnitDeployment default/web, revision r1: units selected 2, updated 2, ready 0. Its instances,\n",
				"  UNIT  NODES  INSTANCE          REPLICAS  READY  UPDATED  REVISION\n" +
					"  a     2      deployment/web-a  4         0      0        r1\n" +
					"  b     0      deployment/web-b  1         0      0        r1\n",
				"  deployment/web-a: 4 replicas; nodeSelector edge.edgeunit.io/unit=a; tolerates example.com/edge=a:NoSchedule\n",
				"  service/web: ports 80/TCP; edge.edgeunit.io/topology=unit; trafficDistribution PreferSameZone (set by edgeunit-topology)\n",
				"  Progressing=True (RollingOut): Revision r1 is rolling out\n",
				"  Ready=False (Unavailable): Not every replica is available in a\n",
				"  Why no replica is ready: no kube-controller-manager runs in this cluster",
			},
		},
		"every replica ready: no excuse printed": {
			change: func(cl *udCluster) {
				for i := range cl.uds[0].Status.Instances {
					is := &cl.uds[0].Status.Instances[i]
					is.ReadyReplicas, is.UpdatedReplicas = is.Replicas, is.Replicas
				}
			},
			want:   []string{"  a     2      deployment/web-a  4         4      4        r1\n"},
			absent: []string{"Why no replica is ready"},
		},
		"unreachable unit and a conflicting instance": {
			change: func(cl *udCluster) {
				cl.uds[0].Status.Instances[0].Unreachable = true
				cl.instances[types.NamespacedName{Namespace: "default", Name: "web-b"}].OwnerReferences = nil
				cl.uds[0].Status.Instances[1] = edgev1.UnitInstanceStatus{Unit: "b"}
			},
			want: []string{
				"  a     2      deployment/web-a  4         0      0        r1  (every node of the unit is unreachable)\n",
				"  b     0      (none)            0         0      0        -\n",
			},
			absent: []string{"deployment/web-b:"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cl := udFixture()
			tc.change(cl)
			var b bytes.Buffer
			if err := writeUnitDeployments(&b, cl); err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.want {
				if !strings.Contains(b.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, b.String())
				}
			}
			for _, absent := range tc.absent {
				if strings.Contains(b.String(), absent) {
					t.Errorf("output has %q:\n%s", absent, b.String())
				}
			}
		})
	}
}
