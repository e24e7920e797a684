package topology

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestDesiredDistribution(t *testing.T) {
	tests := map[string]struct {
		annotations map[string]string
		want        *string
		wantErr     bool
	}{
		"no annotation": {},
		"unit":          {annotations: map[string]string{edgev1.AnnotationTopology: "unit"}, want: ptr.To("PreferSameZone")},
		"node":          {annotations: map[string]string{edgev1.AnnotationTopology: "node"}, want: ptr.To("PreferSameNode")},
		"invalid":       {annotations: map[string]string{edgev1.AnnotationTopology: "Unit"}, wantErr: true},
		"empty":         {annotations: map[string]string{edgev1.AnnotationTopology: ""}, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := desiredDistribution(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: tt.annotations}})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !ptr.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", ptr.Deref(got, "<nil>"), ptr.Deref(tt.want, "<nil>"))
			}
		})
	}
}

func TestOwnsDistribution(t *testing.T) {
	entry := func(manager string, op metav1.ManagedFieldsOperationType, raw string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, FieldsV1: &metav1.FieldsV1{Raw: []byte(raw)}}
	}
	ours := `{"f:spec":{"f:trafficDistribution":{}}}`
	tests := map[string]struct {
		managed []metav1.ManagedFieldsEntry
		want    bool
	}{
		"none":                 {},
		"ours":                 {managed: []metav1.ManagedFieldsEntry{entry("kubectl", metav1.ManagedFieldsOperationUpdate, `{"f:spec":{"f:ports":{}}}`), entry(FieldOwner, metav1.ManagedFieldsOperationApply, ours)}, want: true},
		"someone else's":       {managed: []metav1.ManagedFieldsEntry{entry("kubectl", metav1.ManagedFieldsOperationApply, ours)}},
		"our update, no apply": {managed: []metav1.ManagedFieldsEntry{entry(FieldOwner, metav1.ManagedFieldsOperationUpdate, ours)}},
		"ours, other field":    {managed: []metav1.ManagedFieldsEntry{entry(FieldOwner, metav1.ManagedFieldsOperationApply, `{"f:spec":{"f:sessionAffinity":{}}}`)}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ownsDistribution(tt.managed, FieldOwner)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
