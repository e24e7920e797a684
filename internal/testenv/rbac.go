package testenv

import (
	"context"
	"fmt"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WaitAllowed waits until kube-apiserver's authorizer allows user (in
// groups) what attrs describes. RBAC objects take effect when the
// authorizer's informers see them, a moment after they are created: a
// request made at once can still be forbidden.
func WaitAllowed(ctx context.Context, c client.Client, user string, groups []string, attrs authorizationv1.ResourceAttributes, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "not asked yet"
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups, ResourceAttributes: &attrs,
		}}
		err := c.Create(ctx, sar)
		switch {
		case err == nil && sar.Status.Allowed:
			return nil
		case err == nil:
			last = fmt.Sprintf("denied: %s", sar.Status.Reason)
		default:
			last = err.Error()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%s may not %s %s/%s after %s: %s", user, attrs.Verb, attrs.Group, attrs.Resource, timeout, last)
		}
	}
}
