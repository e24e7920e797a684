package tunnel

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NodePodCIDRs holds the pod CIDRs of the agent's node, as its Node object
// says (spec.podCIDRs, or spec.podCIDR). Empty until the Node has been read:
// an agent that cannot read it refuses every pod rather than wait.
type NodePodCIDRs struct {
	cidrs atomic.Pointer[[]netip.Prefix]
}

// Get returns the pod CIDRs known now; nil while none are. It is the
// Policy's PodCIDRs.
func (n *NodePodCIDRs) Get() []netip.Prefix {
	if p := n.cidrs.Load(); p != nil {
		return *p
	}
	return nil
}

// Run keeps the CIDRs current from the Node named node until ctx ends,
// reading it again with backoff while kube-apiserver (or the hub) cannot be
// reached. Only that one Node is listed and watched, as the Node authorizer
// lets a node do.
func (n *NodePodCIDRs) Run(ctx context.Context, client kubernetes.Interface, node string, log logr.Logger) {
	inf := coreinformers.NewFilteredNodeInformer(client, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", node).String()
	})
	_ = inf.SetTransform(func(obj any) (any, error) {
		// Only the CIDRs matter; a Node is big.
		if nd, ok := obj.(*corev1.Node); ok {
			return &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: nd.Name, ResourceVersion: nd.ResourceVersion},
				Spec:       corev1.NodeSpec{PodCIDR: nd.Spec.PodCIDR, PodCIDRs: nd.Spec.PodCIDRs},
			}, nil
		}
		return obj, nil
	})
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			cache.DefaultWatchErrorHandler(ctx, r, err)
			return
		}
		log.V(2).Info("Cannot read this node's Node; keeping the pod CIDRs last read", "podCIDRs", n.Get(), "error", err.Error())
	})
	// The selector already narrows the watch; the name is checked again so
	// that no other Node's CIDRs can ever be taken for this node's.
	own := func(obj any) (*corev1.Node, bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		nd, ok := obj.(*corev1.Node)
		return nd, ok && nd.Name == node
	}
	set := func(obj any) {
		if nd, ok := own(obj); ok {
			n.set(podCIDRsOfNode(nd, log), log)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if _, ok := own(obj); ok {
				n.set(nil, log)
			}
		},
	})
	inf.RunWithContext(ctx)
}

func (n *NodePodCIDRs) set(cidrs []netip.Prefix, log logr.Logger) {
	old := n.Get()
	if slices.Equal(old, cidrs) {
		return
	}
	n.cidrs.Store(&cidrs)
	log.V(2).Info("Pod CIDRs of this node changed", "podCIDRs", cidrs, "previous", old)
}

// podCIDRsOfNode parses a Node's pod CIDRs; one that does not parse is
// skipped (and logged), so it never widens what the agent opens.
func podCIDRsOfNode(nd *corev1.Node, log logr.Logger) []netip.Prefix {
	list := nd.Spec.PodCIDRs
	if len(list) == 0 && nd.Spec.PodCIDR != "" {
		list = []string{nd.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			log.Info("Ignoring a pod CIDR of this node that does not parse", "podCIDR", s, "error", err.Error())
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}
