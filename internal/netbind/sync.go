package netbind

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

const (
	defaultRequestTimeout = 10 * time.Second
	watchTimeoutSeconds   = 300
	minBackoff            = time.Second
)

// bindingsFor extracts node's entry from the unit's status. A unit without
// an entry for the node binds nothing.
func bindingsFor(u *edgev1.EdgeUnit, node string) Bindings {
	b := Bindings{Unit: u.Name, Node: node, ResourceVersion: u.ResourceVersion}
	for _, nb := range u.Status.Bindings {
		if nb.Node != node {
			continue
		}
		b.VTEPMAC = strings.ToLower(nb.VTEPMAC)
		b.VTEPIP = nb.VTEPIP
		if len(nb.Pods) > 0 {
			b.Pods = make(map[string]string, len(nb.Pods))
			for _, p := range nb.Pods {
				b.Pods[p.Pod] = p.IP
			}
		}
		break
	}
	return b
}

// syncer keeps the durable copy equal to the EdgeUnit's status: a GET,
// then a watch of that one object; on any failure it keeps the copy and
// tries again with backoff.
type syncer struct {
	api    *apiClient
	store  *Store
	unit   string
	node   string
	resync time.Duration
	log    logr.Logger
	// online is true while the last request to the apiserver succeeded.
	online atomic.Bool
	// reconnected is signalled when a request succeeds after a failure.
	reconnected chan struct{}
}

func (s *syncer) run(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		rv, err := s.refresh(ctx)
		if err == nil {
			s.setOnline(true)
			backoff = minBackoff
			err = s.api.watchUnit(ctx, s.unit, rv, watchTimeoutSeconds, s.apply)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if s.online.Load() {
				s.log.V(2).Info("Bindings unreachable, serving the durable copy", "unit", s.unit, "err", err.Error())
			}
			s.setOnline(false)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, s.resync)
		}
	}
}

func (s *syncer) setOnline(on bool) {
	if was := s.online.Swap(on); on && !was {
		select {
		case s.reconnected <- struct{}{}:
		default:
		}
	}
}

// refresh reads the unit and stores this node's bindings.
func (s *syncer) refresh(ctx context.Context) (string, error) {
	u, err := s.api.getUnit(ctx, s.unit)
	if isStatus(err, 404) {
		// The unit is gone: nothing is bound any more.
		return "", s.apply("DELETED", nil)
	}
	if err != nil {
		return "", err
	}
	return u.ResourceVersion, s.apply("ADDED", u)
}

func (s *syncer) apply(typ string, u *edgev1.EdgeUnit) error {
	next := Bindings{Unit: s.unit, Node: s.node}
	if typ != "DELETED" {
		next = bindingsFor(u, s.node)
	}
	cur := s.store.Get()
	if next.Equal(cur) {
		// Status changes of other nodes: nothing to write (the copy is
		// fsynced, and a large unit's status changes often).
		return nil
	}
	err := s.store.Update(func(b *Bindings) {
		pending := b.AnnotationPending || (next.VTEPMAC != b.VTEPMAC && next.VTEPMAC != "")
		*b = next
		b.AnnotationPending = pending
		b.Synced = time.Now()
	})
	if err == nil {
		s.log.V(2).Info("Bindings updated", "unit", s.unit, "vtepMAC", next.VTEPMAC, "pods", len(next.Pods), "resourceVersion", next.ResourceVersion)
	}
	return err
}
