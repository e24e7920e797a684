package nodepool_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/edgeunit/edgeunit/test/bench/benchutil"
)

// Indexes into counts.
const (
	cGet = iota
	cList
	cWatch
	cPost
	cPut
	cPatch
	cDelete
	cNodeWrite       // writes to /api/v1/nodes/<name> (not status)
	cPoolWrite       // writes to nodepools/<name> (the finalizer)
	cPoolStatusWrite // writes to nodepools/<name>/status
	cEventWrite      // Events, either API group
	cOtherWrite      // anything else: should not happen
	cConflict        // 409 responses to any request
	cThrottled       // 429 responses (apiserver priority and fairness)
	cFailed          // other responses >= 400 and transport errors
	nCounters
)

// counts is a snapshot of a requestCounter; subtract two to get a window.
type counts [nCounters]int64

func (c counts) sub(o counts) counts {
	for i := range c {
		c[i] -= o[i]
	}
	return c
}

func (c counts) reads() int64  { return c[cGet] + c[cList] + c[cWatch] }
func (c counts) writes() int64 { return c[cPost] + c[cPut] + c[cPatch] + c[cDelete] }

func (c counts) String() string {
	return fmt.Sprintf("reads %d (get %d, list %d, watch %d); writes %d (post %d, put %d, patch %d, delete %d: node %d, pool %d, pool status %d, event %d, other %d); 409 %d, 429 %d, failed %d",
		c.reads(), c[cGet], c[cList], c[cWatch],
		c.writes(), c[cPost], c[cPut], c[cPatch], c[cDelete],
		c[cNodeWrite], c[cPoolWrite], c[cPoolStatusWrite], c[cEventWrite], c[cOtherWrite],
		c[cConflict], c[cThrottled], c[cFailed])
}

// requestCounter counts the requests a rest.Config's clients make, by verb,
// target and response status. Install it with rest.Config.WrapTransport.
type requestCounter struct {
	mu         sync.Mutex
	c          counts
	nodeWrites map[string]int // node name -> writes to it
	lastWrite  time.Time
	other      map[string]int // "METHOD path" of unexpected writes
	failures   map[string]int // "status METHOD path" of failed requests

	// Diagnostics from request bodies: the Ready condition each pool status
	// write sets, and the pools Events are about.
	lastReady      map[string]string // pool -> "status/reason/message" last written
	dupStatus      int               // status writes that repeat the pool's previous one
	eventsPerPool  map[string]int
	unparsedBodies int
}

func newRequestCounter() *requestCounter {
	return &requestCounter{nodeWrites: map[string]int{}, other: map[string]int{}, failures: map[string]int{}, lastReady: map[string]string{}, eventsPerPool: map[string]int{}}
}

// wrap is a rest.Config.WrapTransport.
func (rc *requestCounter) wrap(next http.RoundTripper) http.RoundTripper {
	return benchutil.WrapTransport(func(r benchutil.Request, status int, err error, body []byte) {
		rc.record(r.Method, r.Path, r.WatchParam, status, err != nil)
		if status/100 == 2 {
			rc.inspect(classify(r.Method, r.Path, ""), r.Path, body)
		}
	})(next)
}

func (rc *requestCounter) record(method, path, watch string, status int, failed bool) {
	t := classify(method, path, watch)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.c[t.verb]++
	if t.write {
		rc.c[t.target]++
		rc.lastWrite = time.Now()
		switch t.target {
		case cNodeWrite:
			rc.nodeWrites[t.name]++
		case cOtherWrite:
			rc.other[method+" "+path]++
		}
	}
	if failed || status >= 400 {
		rc.failures[fmt.Sprintf("%d %s %s", status, method, path)]++
	}
	switch {
	case status == http.StatusConflict:
		rc.c[cConflict]++
	case status == http.StatusTooManyRequests:
		rc.c[cThrottled]++
	case failed || status >= 400:
		rc.c[cFailed]++
	}
}

// inspect records what successful pool status and Event writes said.
func (rc *requestCounter) inspect(t request, path string, body []byte) {
	if !t.write || (t.target != cPoolStatusWrite && t.target != cEventWrite) {
		return
	}
	if t.target == cEventWrite {
		name := "?"
		obj, _, err := clientgoscheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
		switch ev := obj.(type) {
		case *eventsv1.Event:
			name = ev.Regarding.Name
		case *corev1.Event:
			name = ev.InvolvedObject.Name
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err != nil || name == "?" {
			rc.unparsedBodies++
			return
		}
		rc.eventsPerPool[name]++
		return
	}
	var obj struct {
		Status struct {
			Conditions []struct {
				Type, Status, Reason, Message string
			}
		}
	}
	err := json.Unmarshal(body, &obj)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		rc.unparsedBodies++
		return
	}
	pool := strings.Split(strings.TrimSuffix(path, "/status"), "/")
	name := pool[len(pool)-1]
	for _, c := range obj.Status.Conditions {
		if c.Type != "Ready" {
			continue
		}
		key := c.Status + "/" + c.Reason + "/" + c.Message
		if rc.lastReady[name] == key {
			rc.dupStatus++
		}
		rc.lastReady[name] = key
	}
}

// diagnostics returns the number of pool status writes that repeated the
// pool's previous Ready condition, the number of pools with more than one
// Event, and the bodies that did not parse.
func (rc *requestCounter) diagnostics() (dupStatus, poolsWithExtraEvents, unparsed int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.eventsPerPool {
		if n > 1 {
			poolsWithExtraEvents++
		}
	}
	return rc.dupStatus, poolsWithExtraEvents, rc.unparsedBodies
}

func (rc *requestCounter) snapshot() counts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.c
}

// perNode returns a copy of the writes per node so far.
func (rc *requestCounter) perNode() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int, len(rc.nodeWrites))
	for k, v := range rc.nodeWrites {
		out[k] = v
	}
	return out
}

func (rc *requestCounter) lastWriteAt() time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.lastWrite
}

// unexpected lists writes to unexpected paths and failed requests, with
// their numbers.
func (rc *requestCounter) unexpected() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for k, v := range rc.other {
		out = append(out, fmt.Sprintf("write %s x%d", k, v))
	}
	for k, v := range rc.failures {
		out = append(out, fmt.Sprintf("failed %s x%d", k, v))
	}
	slices.Sort(out)
	return out
}

// request is a classified API request.
type request struct {
	verb   int // cGet..cDelete
	write  bool
	target int // cNodeWrite..cOtherWrite, for writes
	name   string
}

// classify maps an API request to its verb and, for writes, what it wrote.
func classify(method, path, watch string) request {
	p := benchutil.ParseRequest(method, path, watch)
	r := request{verb: verbIndex[p.Verb], write: p.Write}
	if !r.write {
		return r
	}
	switch {
	case p.Group == "" && p.Resource == "nodes" && p.Name != "" && p.Sub == "":
		r.target, r.name = cNodeWrite, p.Name
	case p.Group == "edge.edgeunit.io" && p.Resource == "nodepools" && p.Name != "" && p.Sub == "":
		r.target = cPoolWrite
	case p.Group == "edge.edgeunit.io" && p.Resource == "nodepools" && p.Name != "" && p.Sub == "status":
		r.target = cPoolStatusWrite
	case p.Resource == "events" && (p.Group == "" || p.Group == "events.k8s.io"):
		r.target = cEventWrite
	default:
		r.target = cOtherWrite
	}
	return r
}

var verbIndex = map[string]int{
	benchutil.VerbGet: cGet, benchutil.VerbList: cList, benchutil.VerbWatch: cWatch,
	benchutil.VerbPost: cPost, benchutil.VerbPut: cPut, benchutil.VerbPatch: cPatch, benchutil.VerbDelete: cDelete,
}
