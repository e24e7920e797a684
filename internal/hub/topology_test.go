package hub

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/edgeunit/edgeunit/internal/hub/hubtest"
)

// logLines collects what a logger prints at the default verbosity.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

// TestTopologyRefusalLogged: a topology list the apiserver refuses (the
// Node authorizer without the node-reader grant) is logged at the default
// level once when it starts, however often it is retried, and once when it
// ends.
func TestTopologyRefusalLogged(t *testing.T) {
	var refused atomic.Bool
	refused.Store(true)
	var lists, watches atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", mediaJSON)
		switch {
		case r.URL.Query().Get("watch") == "true":
			watches.Add(1)
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case refused.Load():
			lists.Add(1)
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,` +
				`"message":"nodes is forbidden: User \"system:node:n1\" cannot list resource \"nodes\""}`))
		default:
			lists.Add(1)
			_, _ = w.Write([]byte(`{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"7"},"items":[]}`))
		}
	}))
	t.Cleanup(up.Close)
	h := offlineHubFor(t, "n1", up.URL)
	logs := &logLines{}
	h.log = funcr.New(func(prefix, args string) {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		logs.lines = append(logs.lines, args)
	}, funcr.Options{})
	h.link.markOnline()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.topo.sync(ctx, topoSources[0]) }()
	t.Cleanup(func() { cancel(); <-done })

	wait := func(what string, fn func() bool) {
		t.Helper()
		if err := hubtest.WaitFor(10*time.Second, 20*time.Millisecond, func() error {
			if !fn() {
				return fmt.Errorf("not yet")
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wait("three refused lists", func() bool { return lists.Load() >= 3 })
	if n := logs.count("Topology watch refused"); n != 1 {
		t.Fatalf("refusal logged %d times over %d lists, want once:\n%v", n, lists.Load(), logs)
	}
	if n := logs.count(`cannot list resource \"nodes\"`); n != 1 {
		t.Fatalf("the apiserver's reason is not in the log:\n%v", logs)
	}
	refused.Store(false)
	wait("the watch after the grant", func() bool { return watches.Load() >= 1 })
	if n := logs.count("Topology watch allowed again"); n != 1 {
		t.Fatalf("the end of the refusal logged %d times, want once:\n%v", n, logs)
	}
}
