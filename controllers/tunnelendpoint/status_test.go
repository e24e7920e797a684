package tunnelendpoint

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

func TestAgentAddresses(t *testing.T) {
	many := make([]string, 0, 8)
	for i := range 8 {
		many = append(many, fmt.Sprintf("198.51.100.%d", i))
	}
	manyIngress := make([]corev1.LoadBalancerIngress, 0, 12)
	for i := range 12 {
		manyIngress = append(manyIngress, corev1.LoadBalancerIngress{IP: fmt.Sprintf("203.0.113.%d", i)})
	}
	tests := map[string]struct {
		exposure edgev1.TunnelExposure
		svc      *corev1.Service
		want     []string
	}{
		"ClusterIP: spec addresses at the agent port": {
			exposure: edgev1.TunnelExposure{Type: "ClusterIP", Addresses: []string{"127.0.0.1", "tunnel.example.com", "2001:db8::1"}},
			svc:      &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.1"}},
			want:     []string{"127.0.0.1:10262", "tunnel.example.com:10262", "[2001:db8::1]:10262"},
		},
		"LoadBalancer: spec addresses then ingress": {
			exposure: edgev1.TunnelExposure{Type: "LoadBalancer", Addresses: []string{"tunnel.example.com"}},
			svc: &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}, Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{
				Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.9"}, {Hostname: "lb.example.net"}},
			}}},
			want: []string{"tunnel.example.com:10262", "203.0.113.9:10262", "lb.example.net:10262"},
		},
		"LoadBalancer pending": {
			exposure: edgev1.TunnelExposure{Type: "LoadBalancer"},
			svc:      &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}},
			want:     nil,
		},
		"NodePort: spec addresses at the node port": {
			exposure: edgev1.TunnelExposure{Type: "NodePort", Addresses: []string{"192.0.2.10"}},
			svc: &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{
				{Name: PortConnect, Port: 10263, NodePort: 31001}, {Name: PortAgent, Port: 10262, NodePort: 31000},
			}}},
			want: []string{"192.0.2.10:31000"},
		},
		"NodePort not allocated yet": {
			exposure: edgev1.TunnelExposure{Type: "NodePort", Addresses: []string{"192.0.2.10"}},
			svc:      &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}},
			want:     nil,
		},
		"bounded to 16, duplicates dropped": {
			exposure: edgev1.TunnelExposure{Type: "LoadBalancer", Addresses: append(many, "203.0.113.0")},
			svc:      &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}, Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: manyIngress}}},
			want: func() []string {
				var w []string
				for _, a := range many {
					w = append(w, a+":10262")
				}
				for i := range 8 {
					w = append(w, fmt.Sprintf("203.0.113.%d:10262", i))
				}
				return w[:16]
			}(),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			te := endpoint("tunnel", func(te *edgev1.TunnelEndpoint) { te.Spec.Service = tc.exposure })
			if got := agentAddresses(te, tc.svc); !slices.Equal(got, tc.want) {
				t.Errorf("addresses =\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

func deployment(gen, observedGen int64, available, updated int32) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	d.Generation = gen
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: observedGen, AvailableReplicas: available, UpdatedReplicas: updated, Replicas: updated}
	return d
}

func TestServersCondition(t *testing.T) {
	tests := map[string]struct {
		d          *appsv1.Deployment
		err        error
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		"apply failed":      {err: errors.New("boom"), wantStatus: metav1.ConditionFalse, wantReason: edgev1.ReasonSyncFailed},
		"not observed yet":  {d: deployment(2, 1, 2, 2), wantStatus: metav1.ConditionFalse, wantReason: edgev1.ReasonProgressing},
		"none available":    {d: deployment(1, 1, 0, 2), wantStatus: metav1.ConditionFalse, wantReason: edgev1.ReasonUnavailable},
		"some available":    {d: deployment(1, 1, 1, 2), wantStatus: metav1.ConditionFalse, wantReason: edgev1.ReasonProgressing},
		"rollout under way": {d: deployment(1, 1, 2, 1), wantStatus: metav1.ConditionFalse, wantReason: edgev1.ReasonProgressing},
		"all available":     {d: deployment(1, 1, 2, 2), wantStatus: metav1.ConditionTrue, wantReason: edgev1.ReasonAvailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := serversCondition(endpoint("tunnel"), tc.d, tc.err)
			if c.Status != tc.wantStatus || c.Reason != tc.wantReason || c.ObservedGeneration != 3 || c.Message == "" {
				t.Errorf("condition = %+v, want %s/%s", c, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

func TestComputeStatus(t *testing.T) {
	renew := time.Date(2026, 5, 2, 4, 0, 0, 0, time.UTC)
	okCert := &certInfo{NotAfter: renew.Add(8 * time.Hour), RenewAt: renew}
	lbService := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}, Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{
		Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.9"}},
	}}}
	prevReady := []metav1.Condition{
		{Type: edgev1.ConditionServersReady, Status: metav1.ConditionTrue, Reason: edgev1.ReasonAvailable, Message: "All 2 servers available", ObservedGeneration: 2, LastTransitionTime: metav1.Now()},
		{Type: edgev1.ConditionCertificateReady, Status: metav1.ConditionTrue, Reason: edgev1.ReasonIssued, Message: "old", ObservedGeneration: 2, LastTransitionTime: metav1.Now()},
		{Type: edgev1.ConditionReady, Status: metav1.ConditionTrue, Reason: edgev1.ReasonComponentsReady, ObservedGeneration: 2, LastTransitionTime: metav1.Now()},
	}
	tests := map[string]struct {
		prev      edgev1.TunnelEndpointStatus
		obs       observed
		succeeded bool

		wantObserved  int64
		wantReady     metav1.ConditionStatus
		wantServers   metav1.ConditionStatus
		wantCert      metav1.ConditionStatus
		wantReadyN    int32
		wantAddresses []string
	}{
		"everything ready": {
			obs:          observed{service: lbService, cert: okCert, deployment: deployment(1, 1, 2, 2)},
			succeeded:    true,
			wantObserved: 3, wantReady: metav1.ConditionTrue, wantServers: metav1.ConditionTrue, wantCert: metav1.ConditionTrue,
			wantReadyN: 2, wantAddresses: []string{"203.0.113.9:10262"},
		},
		"servers coming up": {
			obs:          observed{service: lbService, cert: okCert, deployment: deployment(1, 1, 0, 2)},
			succeeded:    true,
			wantObserved: 3, wantReady: metav1.ConditionFalse, wantServers: metav1.ConditionFalse, wantCert: metav1.ConditionTrue,
			wantAddresses: []string{"203.0.113.9:10262"},
		},
		"issuing failed: observedGeneration kept, servers condition kept": {
			prev:         edgev1.TunnelEndpointStatus{ObservedGeneration: 2, ReadyServers: 2, Addresses: []string{"old:1"}, Conditions: prevReady},
			obs:          observed{service: lbService, certErr: errors.New("CA unusable")},
			wantObserved: 2, wantReady: metav1.ConditionFalse, wantServers: metav1.ConditionTrue, wantCert: metav1.ConditionFalse,
			wantReadyN: 2, wantAddresses: []string{"203.0.113.9:10262"},
		},
		"service failed: certificate cannot be checked": {
			prev:         edgev1.TunnelEndpointStatus{ObservedGeneration: 2, ReadyServers: 2, Addresses: []string{"old:1"}, Conditions: prevReady},
			obs:          observed{serviceErr: errors.New("forbidden")},
			wantObserved: 2, wantReady: metav1.ConditionFalse, wantServers: metav1.ConditionTrue, wantCert: metav1.ConditionFalse,
			wantReadyN: 2, wantAddresses: []string{"old:1"},
		},
		"first pass failed early": {
			obs:          observed{serviceErr: errors.New("forbidden")},
			wantObserved: 0, wantReady: metav1.ConditionFalse, wantServers: metav1.ConditionUnknown, wantCert: metav1.ConditionFalse,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			te := endpoint("tunnel")
			te.Status = tc.prev
			te.Status.ConnectedAgents = 7
			st := computeStatus(te, tc.obs, tc.succeeded)
			if st.ObservedGeneration != tc.wantObserved {
				t.Errorf("observedGeneration = %d, want %d", st.ObservedGeneration, tc.wantObserved)
			}
			if st.ReadyServers != tc.wantReadyN {
				t.Errorf("readyServers = %d, want %d", st.ReadyServers, tc.wantReadyN)
			}
			if !slices.Equal(st.Addresses, tc.wantAddresses) {
				t.Errorf("addresses = %v, want %v", st.Addresses, tc.wantAddresses)
			}
			for typ, want := range map[string]metav1.ConditionStatus{
				edgev1.ConditionReady: tc.wantReady, edgev1.ConditionServersReady: tc.wantServers, edgev1.ConditionCertificateReady: tc.wantCert,
			} {
				c := meta.FindStatusCondition(st.Conditions, typ)
				if c == nil || c.Status != want {
					t.Errorf("%s = %+v, want %s", typ, c, want)
				}
			}
			if len(st.Conditions) != 3 {
				t.Errorf("conditions = %+v", st.Conditions)
			}
			// Pure and stable: the same input gives an equal status, so an
			// unchanged endpoint is not written again.
			te.Status.ObservedGeneration, te.Status.ReadyServers, te.Status.Addresses, te.Status.Conditions = st.ObservedGeneration, st.ReadyServers, st.Addresses, st.Conditions
			if again := computeStatus(te, tc.obs, tc.succeeded); !again.equal(st) {
				t.Errorf("second pass differs:\n%+v\n%+v", again, st)
			}
		})
	}
}

func TestOwnStatusLeavesAgentsOut(t *testing.T) {
	st := edgev1.TunnelEndpointStatus{
		ConnectedAgents: 3,
		Agents:          []edgev1.ConnectedAgent{{Node: "n1"}},
		Conditions:      []metav1.Condition{{Type: "SomeoneElses", Status: metav1.ConditionTrue}, {Type: edgev1.ConditionReady, Status: metav1.ConditionTrue}},
	}
	own := ownStatusOf(st)
	if len(own.Conditions) != 1 || own.Conditions[0].Type != edgev1.ConditionReady {
		t.Errorf("own conditions = %+v", own.Conditions)
	}
}
