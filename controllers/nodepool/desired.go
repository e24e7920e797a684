package nodepool

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// desiredKeys is what a node should carry because of its pool.
type desiredKeys struct {
	pool        string
	labels      map[string]string
	annotations map[string]string
	taints      []corev1.Taint
}

// managedRecord is stored in edgev1.AnnotationManaged on each node: the keys
// this controller set, so it removes exactly those later.
type managedRecord struct {
	Pool        string     `json:"pool,omitempty"`
	Labels      []string   `json:"labels,omitempty"`
	Annotations []string   `json:"annotations,omitempty"`
	Taints      []taintKey `json:"taints,omitempty"`
}

type taintKey struct {
	Key    string             `json:"key"`
	Effect corev1.TaintEffect `json:"effect"`
}

func (r managedRecord) empty() bool {
	return len(r.Labels) == 0 && len(r.Annotations) == 0 && len(r.Taints) == 0
}

// desiredForPool returns the keys a member of pool should carry. A nil pool
// (gone or being deleted) wants nothing. unit is the EdgeUnit owning the
// pool, if any: its nodes carry the unit label and, for service topology,
// the unit as their topology zone.
func desiredForPool(pool *edgev1.NodePool, unit string) desiredKeys {
	if pool == nil || !pool.DeletionTimestamp.IsZero() {
		return desiredKeys{}
	}
	d := desiredKeys{
		pool:        pool.Name,
		labels:      maps.Clone(pool.Spec.Labels),
		annotations: maps.Clone(pool.Spec.Annotations),
	}
	if d.labels == nil {
		d.labels = map[string]string{}
	}
	if d.annotations == nil {
		d.annotations = map[string]string{}
	}
	typ := pool.Spec.Type
	if typ == "" {
		typ = edgev1.NodePoolEdge
	}
	d.labels[edgev1.LabelPoolType] = strings.ToLower(string(typ))
	if a := pool.Spec.Autonomy; a != nil && a.Enabled {
		d.labels[edgev1.LabelAutonomy] = "true"
		d.annotations[edgev1.AnnotationAutonomyDuration] = edgev1.AutonomyUnbounded
		if a.Duration != nil {
			d.annotations[edgev1.AnnotationAutonomyDuration] = a.Duration.Duration.String()
		}
	}
	if unit != "" {
		d.labels[edgev1.LabelUnit] = unit
		d.labels[corev1.LabelTopologyZone] = unit
	}
	for _, t := range pool.Spec.Taints {
		d.taints = append(d.taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	return d
}

// readRecord parses the node's managed-keys annotation. A record that does
// not parse is treated as empty: the keys it named are then left alone
// rather than guessed at.
func readRecord(node *corev1.Node) (managedRecord, error) {
	raw, ok := node.Annotations[edgev1.AnnotationManaged]
	if !ok || raw == "" {
		return managedRecord{}, nil
	}
	var rec managedRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return managedRecord{}, fmt.Errorf("parsing annotation %s: %w", edgev1.AnnotationManaged, err)
	}
	return rec, nil
}

// nodePlan is the change that brings a node to its desired keys.
type nodePlan struct {
	// labels and annotations to set; a nil value removes the key.
	labels      map[string]*string
	annotations map[string]*string
	// taints is the node's whole new taint list when it changes.
	taints        []corev1.Taint
	taintsChanged bool
	// conflicts are keys another writer holds with a different value.
	conflicts []string
}

func (p nodePlan) empty() bool {
	return len(p.labels) == 0 && len(p.annotations) == 0 && !p.taintsChanged
}

// planNode compares a node with what its pool wants and what the controller
// set before. Keys the controller did not set and that already hold another
// value are conflicts: reported, never overwritten. Keys under the project
// prefix are always the controller's.
func planNode(node *corev1.Node, want desiredKeys, prev managedRecord) nodePlan {
	plan := nodePlan{labels: map[string]*string{}, annotations: map[string]*string{}}
	next := managedRecord{Pool: want.pool}

	next.Labels = planMap("label", node.Labels, want.labels, prev.Labels, plan.labels, &plan.conflicts)
	// The record annotation itself is handled below, never as a pool key.
	annotations := node.Annotations
	if _, ok := annotations[edgev1.AnnotationManaged]; ok {
		annotations = maps.Clone(annotations)
		delete(annotations, edgev1.AnnotationManaged)
	}
	next.Annotations = planMap("annotation", annotations, want.annotations, prev.Annotations, plan.annotations, &plan.conflicts)
	plan.taints, next.Taints, plan.taintsChanged = planTaints(node.Spec.Taints, want.taints, prev.Taints, &plan.conflicts)

	if next.empty() {
		next.Pool = ""
	}
	cur, hasCur := node.Annotations[edgev1.AnnotationManaged]
	switch {
	case next.empty() && hasCur:
		plan.annotations[edgev1.AnnotationManaged] = nil
	case !next.empty():
		raw := encodeRecord(next)
		if !hasCur || cur != raw {
			plan.annotations[edgev1.AnnotationManaged] = &raw
		}
	}
	sort.Strings(plan.conflicts)
	return plan
}

func encodeRecord(r managedRecord) string {
	// Sorted keys keep the encoding stable, so an unchanged record is never
	// rewritten.
	slices.Sort(r.Labels)
	slices.Sort(r.Annotations)
	slices.SortFunc(r.Taints, func(a, b taintKey) int {
		return strings.Compare(a.Key+"\x00"+string(a.Effect), b.Key+"\x00"+string(b.Effect))
	})
	raw, _ := json.Marshal(r) // Only strings: cannot fail.
	return string(raw)
}

// planMap plans one of labels/annotations and returns the keys the
// controller holds afterwards.
func planMap(kind string, have, want map[string]string, owned []string, out map[string]*string, conflicts *[]string) []string {
	var held []string
	for k, v := range want {
		cur, exists := have[k]
		mine := slices.Contains(owned, k) || strings.HasPrefix(k, edgev1.Prefix)
		switch {
		case !exists:
			out[k] = &v
			held = append(held, k)
		case mine:
			if cur != v {
				out[k] = &v
			}
			held = append(held, k)
		case cur != v:
			*conflicts = append(*conflicts, fmt.Sprintf("%s %s", kind, k))
		}
	}
	for _, k := range owned {
		if _, wanted := want[k]; wanted {
			continue
		}
		if _, exists := have[k]; exists {
			out[k] = nil
		}
	}
	return held
}

func planTaints(have, want []corev1.Taint, owned []taintKey, conflicts *[]string) ([]corev1.Taint, []taintKey, bool) {
	key := func(t corev1.Taint) taintKey { return taintKey{Key: t.Key, Effect: t.Effect} }
	wanted := map[taintKey]corev1.Taint{}
	for _, t := range want {
		wanted[key(t)] = t
	}
	var (
		next    []corev1.Taint
		held    []taintKey
		changed bool
		present = map[taintKey]bool{}
	)
	for _, t := range have {
		k := key(t)
		present[k] = true
		w, isWanted := wanted[k]
		mine := slices.Contains(owned, k)
		switch {
		case isWanted && mine:
			held = append(held, k)
			if t.Value != w.Value {
				t.Value = w.Value
				changed = true
			}
		case isWanted && t.Value != w.Value:
			*conflicts = append(*conflicts, fmt.Sprintf("taint %s:%s", k.Key, k.Effect))
		case !isWanted && mine:
			changed = true
			continue
		}
		next = append(next, t)
	}
	for _, t := range want {
		k := key(t)
		if present[k] {
			continue
		}
		next = append(next, corev1.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect})
		held = append(held, k)
		changed = true
	}
	return next, held, changed
}

// mergePatch renders a plan as a JSON merge patch. A changed taint list is
// sent whole (Node taints are an atomic list), so the patch then carries the
// resourceVersion it was computed from and the apiserver rejects it if
// another writer changed the node in between.
func (p nodePlan) mergePatch(resourceVersion string) ([]byte, error) {
	meta := map[string]any{}
	if len(p.labels) > 0 {
		meta["labels"] = p.labels
	}
	if len(p.annotations) > 0 {
		meta["annotations"] = p.annotations
	}
	patch := map[string]any{}
	if p.taintsChanged {
		meta["resourceVersion"] = resourceVersion
		var taints any
		if len(p.taints) > 0 {
			taints = p.taints
		}
		patch["spec"] = map[string]any{"taints": taints}
	}
	patch["metadata"] = meta
	return json.Marshal(patch)
}
