package topology

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// topologyChanged passes Services with the annotation or a
// trafficDistribution (one the controller may have to withdraw), and
// changes to either.
var topologyChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool {
		svc, ok := e.Object.(*corev1.Service)
		return ok && relevant(svc)
	},
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Service)
		n, ok2 := e.ObjectNew.(*corev1.Service)
		if !ok1 || !ok2 {
			return false
		}
		ov, oHas := o.Annotations[edgev1.AnnotationTopology]
		nv, nHas := n.Annotations[edgev1.AnnotationTopology]
		return ov != nv || oHas != nHas || !ptr.Equal(o.Spec.TrafficDistribution, n.Spec.TrafficDistribution)
	},
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func relevant(svc *corev1.Service) bool {
	_, has := svc.Annotations[edgev1.AnnotationTopology]
	return has || svc.Spec.TrafficDistribution != nil
}
