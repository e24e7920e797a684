package tunnelendpoint

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/conditions"
)

// Bounds of status.addresses, from the CRD.
const (
	maxAddresses     = 16
	maxAddressLength = 253
)

// ownedConditions are the condition types this controller writes.
var ownedConditions = []string{edgev1.ConditionServersReady, edgev1.ConditionCertificateReady, edgev1.ConditionReady}

// ownStatus is the part of TunnelEndpoint status this controller writes.
// connectedAgents and agents belong to the servers and are never sent.
type ownStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	ReadyServers       int32              `json:"readyServers"`
	Addresses          []string           `json:"addresses,omitempty"`
	DirectCIDRs        []string           `json:"directCIDRs,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// ownStatusOf extracts this controller's fields from a status.
func ownStatusOf(st edgev1.TunnelEndpointStatus) ownStatus {
	own := ownStatus{ObservedGeneration: st.ObservedGeneration, ReadyServers: st.ReadyServers, Addresses: st.Addresses, DirectCIDRs: st.DirectCIDRs}
	for _, c := range st.Conditions {
		if slices.Contains(ownedConditions, c.Type) {
			own.Conditions = append(own.Conditions, c)
		}
	}
	return own
}

func (s ownStatus) equal(o ownStatus) bool {
	norm := func(c []metav1.Condition) []metav1.Condition {
		c = slices.Clone(c)
		slices.SortFunc(c, func(a, b metav1.Condition) int { return strings.Compare(a.Type, b.Type) })
		return c
	}
	a, b := s, o
	a.Conditions, b.Conditions = norm(s.Conditions), norm(o.Conditions)
	if len(a.Addresses) == 0 {
		a.Addresses = nil
	}
	if len(b.Addresses) == 0 {
		b.Addresses = nil
	}
	if len(a.DirectCIDRs) == 0 {
		a.DirectCIDRs = nil
	}
	if len(b.DirectCIDRs) == 0 {
		b.DirectCIDRs = nil
	}
	return equality.Semantic.DeepEqual(a, b)
}

// observed is what one reconcile pass saw; a nil object was not reached.
type observed struct {
	service       *corev1.Service
	serviceErr    error
	cert          *certInfo
	egressCert    *certInfo
	certErr       error
	caHash        string
	deployment    *appsv1.Deployment
	deploymentErr error
	// direct are the CIDRs the servers dial themselves (observeEgress).
	direct []string
}

// agentAddresses are the host:port pairs agents dial, IPv6 in brackets:
// spec.service.addresses, then (LoadBalancer) the load balancer's ingress
// IPs and host names, all at the agent port, or for a NodePort Service
// spec.service.addresses at the agent port's node port (node addresses are
// not guessed: list the ones agents reach in spec.service.addresses).
func agentAddresses(te *edgev1.TunnelEndpoint, svc *corev1.Service) []string {
	port := portsOf(te).Agent
	typ := serviceTypeOf(te)
	if svc != nil {
		typ = svc.Spec.Type
	}
	if typ == corev1.ServiceTypeNodePort {
		port = 0
		if svc != nil {
			for _, p := range svc.Spec.Ports {
				if p.Name == PortAgent {
					port = p.NodePort
				}
			}
		}
		if port == 0 {
			return nil // Not allocated yet.
		}
	}
	var out []string
	add := func(host string) {
		host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(host), "["), "]")
		if host == "" {
			return
		}
		a := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if len(a) <= maxAddressLength && len(out) < maxAddresses && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, a := range te.Spec.Service.Addresses {
		add(a)
	}
	if typ == corev1.ServiceTypeLoadBalancer && svc != nil {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				add(in.IP)
			} else {
				add(in.Hostname)
			}
		}
	}
	return out
}

// serversCondition says whether every replica runs the current template
// and is available.
func serversCondition(te *edgev1.TunnelEndpoint, d *appsv1.Deployment, err error) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionServersReady, ObservedGeneration: te.Generation, Status: metav1.ConditionFalse}
	want := replicasOf(te)
	switch {
	case err != nil:
		c.Reason, c.Message = edgev1.ReasonSyncFailed, "Applying the Deployment failed: "+err.Error()
	case d == nil:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, edgev1.ReasonProgressing, "The Deployment was not applied yet"
	case d.Status.ObservedGeneration < d.Generation:
		c.Reason, c.Message = edgev1.ReasonProgressing, "Waiting for the Deployment controller to observe the current template"
	case d.Status.AvailableReplicas == 0:
		c.Reason, c.Message = edgev1.ReasonUnavailable, fmt.Sprintf("0 of %d servers available", want)
	case d.Status.AvailableReplicas < want || d.Status.UpdatedReplicas < want:
		c.Reason = edgev1.ReasonProgressing
		c.Message = fmt.Sprintf("%d of %d servers available, %d updated", d.Status.AvailableReplicas, want, d.Status.UpdatedReplicas)
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, edgev1.ReasonAvailable, fmt.Sprintf("All %d servers available", want)
	}
	return c
}

// certificateCondition says whether the serving certificate is current.
func certificateCondition(te *edgev1.TunnelEndpoint, ci *certInfo, err error) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionCertificateReady, ObservedGeneration: te.Generation}
	switch {
	case err != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, edgev1.ReasonIssueFailed, "Issuing the serving certificate failed: "+err.Error()
	case ci == nil:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, edgev1.ReasonProgressing, "The serving certificate was not checked yet"
	default:
		c.Status, c.Reason = metav1.ConditionTrue, edgev1.ReasonIssued
		c.Message = fmt.Sprintf("Serving certificate valid until %s, renewed after %s",
			ci.NotAfter.UTC().Format(time.RFC3339), ci.RenewAt.UTC().Format(time.RFC3339))
	}
	return c
}

// readyCondition summarises the others.
func readyCondition(te *edgev1.TunnelEndpoint, conds ...metav1.Condition) metav1.Condition {
	c := metav1.Condition{Type: edgev1.ConditionReady, ObservedGeneration: te.Generation}
	var notReady []string
	for _, d := range conds {
		if d.Status != metav1.ConditionTrue {
			notReady = append(notReady, d.Type+": "+d.Message)
		}
	}
	if len(notReady) == 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, edgev1.ReasonComponentsReady, "Servers and serving certificate are ready"
		return c
	}
	c.Status, c.Reason, c.Message = metav1.ConditionFalse, edgev1.ReasonNotReady, strings.Join(notReady, "; ")
	return c
}

// computeStatus derives this controller's status fields from what a pass
// observed. Pure. Conditions of parts a failed pass did not reach keep
// their last value; observedGeneration moves only when the pass succeeded.
func computeStatus(te *edgev1.TunnelEndpoint, obs observed, succeeded bool) ownStatus {
	prev := ownStatusOf(te.Status)
	st := ownStatus{ObservedGeneration: prev.ObservedGeneration, Conditions: slices.Clone(prev.Conditions)}
	if succeeded {
		st.ObservedGeneration = te.Generation
	}

	if obs.deployment != nil {
		st.ReadyServers = obs.deployment.Status.AvailableReplicas
	} else {
		st.ReadyServers = prev.ReadyServers
	}
	if obs.service != nil {
		st.Addresses = agentAddresses(te, obs.service)
	} else {
		st.Addresses = prev.Addresses
	}
	if obs.deployment != nil {
		// What the servers were started with.
		st.DirectCIDRs = obs.direct
	} else {
		st.DirectCIDRs = prev.DirectCIDRs
	}

	reached := func(t string, obj bool, err error) bool {
		return obj || err != nil || meta.FindStatusCondition(st.Conditions, t) == nil
	}
	if reached(edgev1.ConditionServersReady, obs.deployment != nil, obs.deploymentErr) {
		meta.SetStatusCondition(&st.Conditions, serversCondition(te, obs.deployment, obs.deploymentErr))
	}
	certErr := obs.certErr
	if certErr == nil && obs.cert == nil && obs.serviceErr != nil {
		// The certificate names the Service's addresses: it cannot be
		// checked without them.
		certErr = obs.serviceErr
	}
	if reached(edgev1.ConditionCertificateReady, obs.cert != nil, certErr) {
		meta.SetStatusCondition(&st.Conditions, certificateCondition(te, obs.cert, certErr))
	}
	meta.SetStatusCondition(&st.Conditions, readyCondition(te,
		conditions.Find(st.Conditions, edgev1.ConditionServersReady),
		conditions.Find(st.Conditions, edgev1.ConditionCertificateReady)))
	return st
}
