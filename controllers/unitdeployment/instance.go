package unitdeployment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers/internal/applied"
)

// Unit is what an instance needs to know about its EdgeUnit.
type Unit struct {
	// Name of the EdgeUnit.
	Name string
	// Labels of the EdgeUnit, for override selectors.
	Labels map[string]string
	// Taints the unit's pools put on its nodes: the instance tolerates
	// them.
	Taints []edgev1.NodePoolTaint
}

// InstanceName is the name of ud's instance for unit.
func InstanceName(ud *edgev1.UnitDeployment, unit string) string {
	return ud.Name + "-" + unit
}

// selectorLabels select the pods of ud's instance for unit.
func selectorLabels(ud *edgev1.UnitDeployment, unit string) map[string]string {
	return map[string]string{edgev1.LabelUnitDeployment: ud.Name, edgev1.LabelUnit: unit}
}

// Revision is the hash of what makes instances differ between revisions:
// the template and the overrides. Every instance rendered from the same
// spec carries the same revision, whatever its unit.
func Revision(spec *edgev1.UnitDeploymentSpec) string {
	return applied.Hash(struct {
		Template  edgev1.InstanceTemplate `json:"template"`
		Overrides []edgev1.UnitOverride   `json:"overrides,omitempty"`
	}{spec.Template, spec.Overrides})
}

// Selects reports whether sel picks the unit. A selector that does not
// parse selects nothing (the webhook refuses it at admission).
func Selects(sel edgev1.UnitSelector, unit string, unitLabels map[string]string) bool {
	if sel.Selector == nil {
		return slices.Contains(sel.Names, unit)
	}
	s, err := metav1.LabelSelectorAsSelector(sel.Selector)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(unitLabels))
}

// Instance renders ud's Deployment for unit at revision rev: the template
// with the controller's labels, selector, node selector and tolerations,
// then every override that selects the unit, in order, patches last. It is
// pure; an error says which override breaks the instance.
func Instance(ud *edgev1.UnitDeployment, unit Unit, rev string) (*appsv1.Deployment, error) {
	t := ud.Spec.Template
	sel := selectorLabels(ud, unit.Name)
	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: appsv1.SchemeGroupVersion.String(), Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        InstanceName(ud, unit.Name),
			Namespace:   ud.Namespace,
			Labels:      merged(t.Metadata.Labels, sel),
			Annotations: merged(t.Metadata.Annotations, map[string]string{edgev1.AnnotationRevision: rev}),
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:                t.Spec.Replicas,
			Selector:                &metav1.LabelSelector{MatchLabels: sel},
			Template:                *t.Spec.Template.DeepCopy(),
			Strategy:                *t.Spec.Strategy.DeepCopy(),
			MinReadySeconds:         t.Spec.MinReadySeconds,
			RevisionHistoryLimit:    t.Spec.RevisionHistoryLimit,
			ProgressDeadlineSeconds: t.Spec.ProgressDeadlineSeconds,
		},
	}
	pod := &d.Spec.Template
	pod.Labels = merged(pod.Labels, sel)
	pod.Spec.NodeSelector = merged(pod.Spec.NodeSelector, map[string]string{edgev1.LabelUnit: unit.Name})
	for _, taint := range unit.Taints {
		tol := corev1.Toleration{Key: taint.Key, Operator: corev1.TolerationOpEqual, Value: taint.Value, Effect: corev1.TaintEffect(taint.Effect)}
		if !slices.ContainsFunc(pod.Spec.Tolerations, func(t corev1.Toleration) bool { return t.MatchToleration(&tol) }) {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, tol)
		}
	}
	for i, o := range ud.Spec.Overrides {
		if !Selects(o.Units, unit.Name, unit.Labels) {
			continue
		}
		if err := applyOverride(d, o); err != nil {
			return nil, fmt.Errorf("spec.overrides[%d]: %w", i, err)
		}
		// Only patches can break what the controller derived.
		if len(o.Patches) > 0 {
			if err := checkInvariants(d, ud, unit.Name); err != nil {
				return nil, fmt.Errorf("spec.overrides[%d]: %w", i, err)
			}
		}
	}
	return d, nil
}

func applyOverride(d *appsv1.Deployment, o edgev1.UnitOverride) error {
	if o.Replicas != nil {
		d.Spec.Replicas = ptr.To(*o.Replicas)
	}
	for i, co := range o.Containers {
		c := container(&d.Spec.Template.Spec, co.Name)
		if c == nil {
			return fmt.Errorf("containers[%d]: the pod template has no container %q", i, co.Name)
		}
		if co.Image != "" {
			c.Image = co.Image
		}
		for _, env := range co.Env {
			if j := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == env.Name }); j >= 0 {
				c.Env[j] = *env.DeepCopy()
			} else {
				c.Env = append(c.Env, *env.DeepCopy())
			}
		}
		if co.Resources != nil {
			c.Resources = *co.Resources.DeepCopy()
		}
	}
	if len(o.Patches) == 0 {
		return nil
	}
	return applyPatches(d, o.Patches)
}

func container(spec *corev1.PodSpec, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// applyPatches runs the RFC 6902 operations on d as JSON and decodes the
// result strictly: a patch that leaves something that is not a Deployment
// (an unknown field, a wrong type) is an error, not silently dropped.
func applyPatches(d *appsv1.Deployment, ops []edgev1.JSONPatch) error {
	raw, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encoding patches: %w", err)
	}
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return fmt.Errorf("patches: %w", err)
	}
	doc, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding the instance: %w", err)
	}
	out, err := patch.Apply(doc)
	if err != nil {
		return fmt.Errorf("patches: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	patched := &appsv1.Deployment{}
	if err := dec.Decode(patched); err != nil {
		return fmt.Errorf("patches: the patched instance is not a Deployment: %w", err)
	}
	*d = *patched
	return nil
}

// checkInvariants refuses an instance whose patches moved it out of the
// controller's reach: a renamed or moved instance would be orphaned, and
// one whose selector or pod labels changed would not be this unit's.
func checkInvariants(d *appsv1.Deployment, ud *edgev1.UnitDeployment, unit string) error {
	sel := selectorLabels(ud, unit)
	var errs []error
	if d.APIVersion != appsv1.SchemeGroupVersion.String() || d.Kind != "Deployment" {
		errs = append(errs, fmt.Errorf("the patches change apiVersion or kind"))
	}
	if d.Name != InstanceName(ud, unit) || d.Namespace != ud.Namespace {
		errs = append(errs, fmt.Errorf("the patches change the instance's name or namespace"))
	}
	if !equality.Semantic.DeepEqual(d.Spec.Selector, &metav1.LabelSelector{MatchLabels: sel}) {
		errs = append(errs, fmt.Errorf("the patches change spec.selector, which the controller owns"))
	}
	for k, v := range sel {
		if d.Spec.Template.Labels[k] != v || d.Labels[k] != v {
			errs = append(errs, fmt.Errorf("the patches change label %s, which the controller owns", k))
		}
	}
	if d.Spec.Template.Spec.NodeSelector[edgev1.LabelUnit] != unit {
		errs = append(errs, fmt.Errorf("the patches change the node selector %s, which pins the instance to its unit", edgev1.LabelUnit))
	}
	if d.Spec.Paused {
		errs = append(errs, fmt.Errorf("the patches pause the instance; use spec.rollout.paused"))
	}
	if len(d.OwnerReferences) > 0 || len(d.Finalizers) > 0 || d.Status.Replicas != 0 || len(d.Status.Conditions) > 0 {
		errs = append(errs, fmt.Errorf("the patches set owner references, finalizers or status"))
	}
	return errors.Join(errs...)
}

// instanceApply is the apply configuration of d, controlled by ud, with the
// hash of its content in applied.Annotation.
func instanceApply(ud *edgev1.UnitDeployment, d *appsv1.Deployment) (*appsv1ac.DeploymentApplyConfiguration, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encoding instance %s: %w", d.Name, err)
	}
	ac := &appsv1ac.DeploymentApplyConfiguration{}
	if err := json.Unmarshal(raw, ac); err != nil {
		return nil, fmt.Errorf("encoding instance %s: %w", d.Name, err)
	}
	ac.Status = nil
	ac.CreationTimestamp = nil
	ac.WithOwnerReferences(ownerRef(ud))
	ac.WithAnnotations(map[string]string{applied.Annotation: applied.Hash(ac)})
	return ac, nil
}

// Service is the Service in front of every instance of ud, which must have
// spec.service set. Its topology annotation has each node's edge hub keep
// only the endpoints in the client's unit.
func Service(ud *edgev1.UnitDeployment) *corev1ac.ServiceApplyConfiguration {
	svc := corev1ac.Service(ud.Name, ud.Namespace).
		WithLabels(map[string]string{edgev1.LabelUnitDeployment: ud.Name}).
		WithAnnotations(map[string]string{edgev1.AnnotationTopology: "unit"}).
		WithOwnerReferences(ownerRef(ud))
	spec := corev1ac.ServiceSpec().WithSelector(map[string]string{edgev1.LabelUnitDeployment: ud.Name})
	for _, p := range ud.Spec.Service.Ports {
		port := corev1ac.ServicePort().WithPort(p.Port).WithProtocol(protocolOr(p.Protocol)).WithTargetPort(p.TargetPort)
		if p.Name != "" {
			port.WithName(p.Name)
		}
		if p.AppProtocol != nil {
			port.WithAppProtocol(*p.AppProtocol)
		}
		if p.TargetPort.IntVal == 0 && p.TargetPort.StrVal == "" {
			port.TargetPort = nil
		}
		spec.WithPorts(port)
	}
	svc.WithSpec(spec)
	svc.WithAnnotations(map[string]string{applied.Annotation: applied.Hash(svc)})
	return svc
}

func protocolOr(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// ownerRef makes ud the instance's controller: the garbage collector
// deletes instances with their UnitDeployment.
func ownerRef(ud *edgev1.UnitDeployment) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(edgev1.GroupVersion.String()).WithKind("UnitDeployment").
		WithName(ud.Name).WithUID(ud.UID).
		WithController(true).WithBlockOwnerDeletion(true)
}

func merged(base, ours map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(ours))
	maps.Copy(out, base)
	maps.Copy(out, ours)
	return out
}
