// Package applied holds what the controllers share to write their children
// by server-side apply: the hash that lets them skip a write that would
// change nothing, and an apply that returns the object the server holds.
package applied

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// Annotation on a child is the Hash of what its controller last applied:
// a child whose annotation matches is not applied again, so a steady state
// costs no writes.
const Annotation = edgev1.Prefix + "applied-hash"

// Hash is a short stable hash of v's JSON (map keys are sorted).
func Hash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// API types, apply configurations and string maps always marshal.
		panic(fmt.Sprintf("hashing %T: %v", v, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// Apply server-side applies ac under owner, taking ownership of its
// fields, and decodes the object the server returned into out.
func Apply(ctx context.Context, c client.Client, ac runtime.ApplyConfiguration, out client.Object, owner string) error {
	if err := c.Apply(ctx, ac, client.FieldOwner(owner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %T: %w", out, err)
	}
	// Apply fills ac from the response.
	raw, err := json.Marshal(ac)
	if err != nil {
		return fmt.Errorf("encoding applied %T: %w", out, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding applied %T: %w", out, err)
	}
	return nil
}
