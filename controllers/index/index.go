// Package index holds the cache indexes controllers share, and the rule that
// decides which EdgeUnit owns a NodePool.
package index

import (
	"context"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

const (
	// UnitByPool indexes EdgeUnits by the pools they list.
	UnitByPool = "edgeunit.unit.pools"
	// NodeByPool indexes Nodes by their pool label.
	NodeByPool = "edgeunit.node.pool"
	// NodeByUnit indexes Nodes by their unit label.
	NodeByUnit = "edgeunit.node.unit"
)

var (
	mu         sync.Mutex
	registered = map[ctrl.Manager]bool{}
)

// Register adds the shared indexes to the manager's cache, once per manager.
func Register(ctx context.Context, mgr ctrl.Manager) error {
	mu.Lock()
	defer mu.Unlock()
	if registered[mgr] {
		return nil
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &edgev1.EdgeUnit{}, UnitByPool, func(o client.Object) []string {
		u, ok := o.(*edgev1.EdgeUnit)
		if !ok {
			return nil
		}
		return u.Spec.NodePools
	}); err != nil {
		return fmt.Errorf("indexing EdgeUnits by pool: %w", err)
	}
	if err := idx.IndexField(ctx, &corev1.Node{}, NodeByPool, func(o client.Object) []string {
		if p := o.GetLabels()[edgev1.LabelNodePool]; p != "" {
			return []string{p}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing nodes by pool: %w", err)
	}
	if err := idx.IndexField(ctx, &corev1.Node{}, NodeByUnit, func(o client.Object) []string {
		if u := o.GetLabels()[edgev1.LabelUnit]; u != "" {
			return []string{u}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing nodes by unit: %w", err)
	}
	registered[mgr] = true
	return nil
}

// OwnerOf returns the EdgeUnit that owns pool among the units listing it,
// or nil. A pool belongs to at most one unit (the webhook refuses a second
// claim); if two claim it anyway, the older unit (then the smaller name)
// keeps it, so every controller agrees.
func OwnerOf(units []edgev1.EdgeUnit, pool string) *edgev1.EdgeUnit {
	var owner *edgev1.EdgeUnit
	for i := range units {
		u := &units[i]
		if !u.DeletionTimestamp.IsZero() || !slices.Contains(u.Spec.NodePools, pool) {
			continue
		}
		if owner == nil || older(u, owner) {
			owner = u
		}
	}
	return owner
}

func older(a, b *edgev1.EdgeUnit) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// UnitOfPool looks up the owning unit of a pool through the index.
func UnitOfPool(ctx context.Context, c client.Reader, pool string) (*edgev1.EdgeUnit, error) {
	var units edgev1.EdgeUnitList
	if err := c.List(ctx, &units, client.MatchingFields{UnitByPool: pool}); err != nil {
		return nil, fmt.Errorf("listing EdgeUnits of NodePool %s: %w", pool, err)
	}
	return OwnerOf(units.Items, pool), nil
}
