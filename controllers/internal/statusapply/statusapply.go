// Package statusapply is the server-side apply configuration of a
// cluster-scoped edge.edgeunit.io object's status: the envelope (kind,
// name) around the part of the status a controller owns, S, whose fields
// say by their JSON tags what the apply sets.
package statusapply

import (
	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// Apply is applied with client.Status().Apply.
type Apply[S any] struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   Meta   `json:"metadata"`
	Status     S      `json:"status"`
}

// Meta names the object.
type Meta struct {
	Name string `json:"name"`
}

// New is the apply of status to the object of kind named name.
func New[S any](kind, name string, status S) *Apply[S] {
	return &Apply[S]{APIVersion: edgev1.GroupVersion.String(), Kind: kind, Metadata: Meta{Name: name}, Status: status}
}

// IsApplyConfiguration marks Apply as an apply configuration.
func (*Apply[S]) IsApplyConfiguration() {}

// GetName, GetNamespace, GetKind and GetAPIVersion let controller-runtime
// route the apply.
func (a *Apply[S]) GetName() *string       { return &a.Metadata.Name }
func (a *Apply[S]) GetNamespace() *string  { return nil }
func (a *Apply[S]) GetKind() *string       { return &a.Kind }
func (a *Apply[S]) GetAPIVersion() *string { return &a.APIVersion }
