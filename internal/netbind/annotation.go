package netbind

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// BackendDataAnnotation is where flannel publishes a node's VXLAN endpoint;
// other nodes program their forwarding entries from its VtepMAC.
const BackendDataAnnotation = "flannel.alpha.coreos.com/backend-data"

// backendDataPatch returns the merge patch that sets VtepMAC in the
// annotation's JSON, keeping flannel's other fields, or nil when the
// annotation already carries mac or is absent (flannel has not registered
// the node yet: it writes the annotation itself, and netbind checks again).
// The resourceVersion makes the patch fail with 409 rather than overwrite a
// concurrent write by flannel.
func backendDataPatch(annotations map[string]string, resourceVersion, mac string) ([]byte, error) {
	raw, ok := annotations[BackendDataAnnotation]
	if !ok {
		return nil, nil
	}
	data := map[string]any{}
	if strings.TrimSpace(raw) != "" {
		if err := json.Unmarshal([]byte(raw), &data); err != nil {
			return nil, fmt.Errorf("annotation %s is not JSON: %w", BackendDataAnnotation, err)
		}
	}
	if cur, _ := data["VtepMAC"].(string); strings.EqualFold(cur, mac) {
		return nil, nil
	}
	data["VtepMAC"] = mac
	value, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	patch := map[string]any{"metadata": map[string]any{
		"resourceVersion": resourceVersion,
		"annotations":     map[string]string{BackendDataAnnotation: string(value)},
	}}
	return json.Marshal(patch)
}

// annotator keeps the node's backend-data annotation equal to the bound
// MAC. It works while the apiserver answers; otherwise the pending flag
// stays set in the durable copy and it tries again on reconnect.
type annotator struct {
	api    *apiClient
	store  *Store
	node   string
	resync time.Duration
	log    logr.Logger
	// kick is signalled when the enforcer changed the device's MAC.
	kick        chan struct{}
	reconnected <-chan struct{}
	// followUp is how long after a device change the annotation is
	// checked again: flannel writes its own view when it starts, possibly
	// after netbind's patch.
	followUp time.Duration
}

func (a *annotator) run(ctx context.Context) {
	backoff := minBackoff
	var followUps int
	next := time.Now() // check once at start
	for {
		wait := time.Until(next)
		timer := time.NewTimer(max(wait, 0))
		changed := a.store.Changed()
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-changed:
			timer.Stop()
			if !a.store.Get().AnnotationPending {
				continue
			}
		case <-a.kick:
			timer.Stop()
			followUps = 2
		case <-a.reconnected:
			timer.Stop()
		}
		b := a.store.Get()
		if b.VTEPMAC == "" {
			next = time.Now().Add(a.resync)
			continue
		}
		done, err := a.ensure(ctx, b.VTEPMAC)
		switch {
		case err != nil:
			a.log.V(2).Info("Node annotation not updated yet, will retry", "node", a.node, "annotation", BackendDataAnnotation, "err", err.Error())
			next = time.Now().Add(backoff)
			backoff = min(backoff*2, 30*time.Second)
			continue
		case !done:
			// flannel has not written it yet.
			next = time.Now().Add(backoff)
			backoff = min(backoff*2, a.resync)
			continue
		}
		backoff = minBackoff
		if b.AnnotationPending {
			if err := a.store.Update(func(nb *Bindings) {
				if nb.VTEPMAC == b.VTEPMAC {
					nb.AnnotationPending = false
				}
			}); err != nil {
				a.log.Error(err, "Recording the annotation as done failed")
			}
		}
		if followUps > 0 {
			followUps--
			next = time.Now().Add(a.followUp)
		} else {
			next = time.Now().Add(a.resync)
		}
	}
}

// ensure checks the annotation and patches it when it differs. done is
// false when the annotation does not exist yet.
func (a *annotator) ensure(ctx context.Context, mac string) (done bool, err error) {
	meta, err := a.api.getNodeMeta(ctx, a.node)
	if err != nil {
		return false, err
	}
	if _, ok := meta.Metadata.Annotations[BackendDataAnnotation]; !ok {
		return false, nil
	}
	patch, err := backendDataPatch(meta.Metadata.Annotations, meta.Metadata.ResourceVersion, mac)
	if err != nil || patch == nil {
		return err == nil, err
	}
	if err := a.api.patchNode(ctx, a.node, patch); err != nil {
		return false, fmt.Errorf("patching Node %s: %w", a.node, err)
	}
	a.log.V(2).Info("Node annotation set to the bound MAC", "node", a.node, "annotation", BackendDataAnnotation, "vtepMAC", mac)
	return true, nil
}
