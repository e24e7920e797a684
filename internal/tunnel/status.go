package tunnel

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

// MaxListedAgents bounds status.agents (the API's limit).
const MaxListedAgents = 256

// MergeInput is what one replica knows when it reports.
type MergeInput struct {
	// Current is status.agents as read from the API.
	Current []edgev1.ConnectedAgent
	// Local are the agents connected to this replica now.
	Local []AgentInfo
	// Gone are nodes whose agent left this replica while it said this was
	// its only replica: no other replica will refresh them.
	Gone []string
	Now  time.Time
	// Refresh: an entry seen more recently than this is not rewritten, so
	// lastSeen has this resolution and steady state costs one write per
	// replica per Refresh.
	Refresh time.Duration
	// TTL: an entry no replica refreshed for this long is dropped.
	TTL time.Duration
}

// MergeAgents merges one replica's view into the agents other replicas
// reported. Entries are keyed by node; lastSeen only moves forward; entries
// expire when no replica refreshes them within TTL. Every replica applying
// this to the latest status converges on the union of their agents, which
// is why replicas can share the list without owning entries. It returns the
// list to write (most recently seen first, at most MaxListedAgents) and the
// number of connected agents (the union, which may exceed the list).
func MergeAgents(in MergeInput) ([]edgev1.ConnectedAgent, int32) {
	now := metav1.NewTime(in.Now.Truncate(time.Second))
	byNode := make(map[string]edgev1.ConnectedAgent, len(in.Current)+len(in.Local))
	for _, e := range in.Current {
		if in.Now.Sub(e.LastSeen.Time) <= in.TTL {
			byNode[e.Node] = e
		}
	}
	for _, n := range in.Gone {
		delete(byNode, n)
	}
	refreshAll := false
	for _, l := range in.Local {
		e, ok := byNode[l.Node]
		if !ok || in.Now.Sub(e.LastSeen.Time) >= in.Refresh || e.Servers != max(l.Servers, 1) {
			refreshAll = true
			break
		}
	}
	for _, l := range in.Local {
		e := byNode[l.Node]
		e.Node = l.Node
		e.Servers = max(l.Servers, 1)
		if refreshAll || e.LastSeen.IsZero() {
			// Refresh every local entry together: one write covers them all.
			if e.LastSeen.Before(&now) {
				e.LastSeen = now
			}
		}
		byNode[l.Node] = e
	}
	out := make([]edgev1.ConnectedAgent, 0, len(byNode))
	for _, e := range byNode {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(&out[j].LastSeen) {
			return out[j].LastSeen.Before(&out[i].LastSeen)
		}
		return out[i].Node < out[j].Node
	})
	count := int32(len(out))
	if len(out) > MaxListedAgents {
		out = out[:MaxListedAgents]
	}
	return out, count
}

func sameAgents(a, b []edgev1.ConnectedAgent) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(l []edgev1.ConnectedAgent) map[string]edgev1.ConnectedAgent {
		m := make(map[string]edgev1.ConnectedAgent, len(l))
		for _, e := range l {
			m[e.Node] = e
		}
		return m
	}
	ma, mb := key(a), key(b)
	for n, ea := range ma {
		eb, ok := mb[n]
		if !ok || ea.Servers != eb.Servers || !ea.LastSeen.Equal(&eb.LastSeen) {
			return false
		}
	}
	return true
}

// AgentLister lists the agents of one replica.
type AgentLister interface {
	Agents() []AgentInfo
}

// Reporter writes a replica's agents into a TunnelEndpoint's status in
// batches: at most one write per Interval, and none when nothing changed but
// the age of lastSeen (refreshed every Refresh).
//
// Several replicas write the same list. Each merges its own agents into the
// list it just read (MergeAgents) and sends a JSON merge patch of the status
// subresource carrying only connectedAgents and agents plus the
// resourceVersion it read: the API server rejects the patch with a conflict
// if another replica wrote in between, and the reporter merges again. So no
// replica drops another's agents, and no other status field is touched.
type Reporter struct {
	Client client.Client
	// Name of the TunnelEndpoint.
	Name                   string
	Agents                 AgentLister
	Log                    logr.Logger
	Now                    func() time.Time
	Interval, Refresh, TTL time.Duration

	lastServers map[string]int32
	pendingGone []string
	// Writes counts status writes, for tests and metrics.
	Writes int
}

// Run reports every Interval until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Interval <= 0 {
		r.Interval = 10 * time.Second
	}
	if r.Refresh <= 0 {
		r.Refresh = time.Minute
	}
	if r.TTL <= 0 {
		r.TTL = 3 * r.Refresh
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		if err := r.ReportOnce(ctx); err != nil && ctx.Err() == nil {
			r.Log.Info("Reporting connected agents", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ReportOnce merges and, if anything changed, patches the status; it retries
// a few times on conflicts.
func (r *Reporter) ReportOnce(ctx context.Context) error {
	local := r.Agents.Agents()
	cur := map[string]int32{}
	for _, a := range local {
		cur[a.Node] = a.Servers
	}
	for n, s := range r.lastServers {
		if _, ok := cur[n]; !ok && s <= 1 {
			r.pendingGone = append(r.pendingGone, n)
		}
	}
	r.lastServers = cur
	var err error
	for range 3 {
		if err = r.patch(ctx, local); err == nil {
			r.pendingGone = nil
			return nil
		}
		if !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

func (r *Reporter) patch(ctx context.Context, local []AgentInfo) error {
	var te edgev1.TunnelEndpoint
	if err := r.Client.Get(ctx, types.NamespacedName{Name: r.Name}, &te); err != nil {
		return fmt.Errorf("getting TunnelEndpoint %s: %w", r.Name, err)
	}
	// Nodes that came back since they left are not gone.
	gone := r.pendingGone[:0:0]
	for _, n := range r.pendingGone {
		if _, back := r.lastServers[n]; !back {
			gone = append(gone, n)
		}
	}
	agents, count := MergeAgents(MergeInput{
		Current: te.Status.Agents, Local: local, Gone: gone,
		Now: r.Now(), Refresh: r.Refresh, TTL: r.TTL,
	})
	if count == te.Status.ConnectedAgents && sameAgents(agents, te.Status.Agents) {
		return nil
	}
	// A merge patch replaces lists whole; the resourceVersion makes it
	// conditional on the list we merged into.
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": te.ResourceVersion},
		"status":   map[string]any{"connectedAgents": count, "agents": agents},
	})
	if err != nil {
		return err
	}
	if err := r.Client.Status().Patch(ctx, &te, client.RawPatch(types.MergePatchType, body)); err != nil {
		return fmt.Errorf("patching TunnelEndpoint %s status: %w", r.Name, err)
	}
	r.Writes++
	return nil
}
