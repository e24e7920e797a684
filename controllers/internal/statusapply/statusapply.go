// Package statusapply is the server-side apply configuration of an
// edge.edgeunit.io object's status: the envelope (kind, name and, for a
// namespaced kind, namespace) around the part of the status a controller
// owns, S, whose fields say by their JSON tags what the apply sets.
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
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// New is the apply of status to the object of kind named name.
func New[S any](kind, name string, status S) *Apply[S] {
	return &Apply[S]{APIVersion: edgev1.GroupVersion.String(), Kind: kind, Metadata: Meta{Name: name}, Status: status}
}

// NewNamespaced is New for a namespaced object.
func NewNamespaced[S any](kind, namespace, name string, status S) *Apply[S] {
	a := New(kind, name, status)
	a.Metadata.Namespace = namespace
	return a
}

// IsApplyConfiguration marks Apply as an apply configuration.
func (*Apply[S]) IsApplyConfiguration() {}

// GetName, GetNamespace, GetKind and GetAPIVersion let controller-runtime
// route the apply.
func (a *Apply[S]) GetName() *string { return &a.Metadata.Name }
func (a *Apply[S]) GetNamespace() *string {
	if a.Metadata.Namespace == "" {
		return nil
	}
	return &a.Metadata.Namespace
}
func (a *Apply[S]) GetKind() *string       { return &a.Kind }
func (a *Apply[S]) GetAPIVersion() *string { return &a.APIVersion }
