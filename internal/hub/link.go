package hub

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// link tracks whether the apiserver is reachable.
type link struct {
	mu      sync.Mutex
	online  bool
	since   time.Time
	epoch   context.Context // canceled when the link goes offline
	cancel  context.CancelFunc
	backCh  chan struct{} // closed when the link comes back online
	downCh  chan struct{} // closed when the link goes offline
	probeCh chan struct{} // asks the prober for an immediate probe

	offlineTotal time.Duration
	log          logr.Logger
	onChange     func(online bool)
}

func newLink(log logr.Logger, online bool) *link {
	l := &link{log: log, online: online, since: time.Now(), backCh: make(chan struct{}), downCh: make(chan struct{}), probeCh: make(chan struct{}, 1)}
	l.epoch, l.cancel = context.WithCancel(context.Background())
	if !online {
		l.cancel()
	}
	return l
}

// state returns whether the link is up, its epoch context (canceled when it
// next goes down) and channels closed at the next transition.
func (l *link) state() (online bool, epoch context.Context, back, down <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.online, l.epoch, l.backCh, l.downCh
}

func (l *link) Online() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.online
}

// offlineFor is how long the link has been down (0 while up).
func (l *link) offlineFor() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.online {
		return 0
	}
	return time.Since(l.since)
}

// offlineSeconds is the total time spent offline since start.
func (l *link) offlineSeconds() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.offlineTotal
	if !l.online {
		t += time.Since(l.since)
	}
	return t.Seconds()
}

func (l *link) markOffline(reason string) {
	l.mu.Lock()
	if !l.online {
		l.mu.Unlock()
		return
	}
	l.online, l.since = false, time.Now()
	l.cancel()
	close(l.downCh)
	l.downCh = make(chan struct{})
	cb := l.onChange
	l.mu.Unlock()
	l.log.Info("Cloud link down, serving from cache", "reason", reason)
	if cb != nil {
		cb(false)
	}
}

func (l *link) markOnline() {
	l.mu.Lock()
	if l.online {
		l.mu.Unlock()
		return
	}
	down := time.Since(l.since)
	l.offlineTotal += down
	l.online, l.since = true, time.Now()
	l.epoch, l.cancel = context.WithCancel(context.Background())
	close(l.backCh)
	l.backCh = make(chan struct{})
	cb := l.onChange
	l.mu.Unlock()
	l.log.Info("Cloud link up", "offlineFor", down.String())
	if cb != nil {
		cb(true)
	}
}

// suspect asks for an immediate probe.
func (l *link) suspect() {
	select {
	case l.probeCh <- struct{}{}:
	default:
	}
}

// probeLoop checks the apiserver's /readyz until ctx ends, flipping the
// state after the configured number of consecutive results.
func (h *Hub) probeLoop(ctx context.Context) {
	fails, oks := 0, 0
	t := time.NewTicker(h.cfg.ProbeInterval.Duration)
	defer t.Stop()
	for {
		ok := h.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if ok {
			fails, oks = 0, oks+1
			if !h.link.Online() && oks >= h.cfg.SuccessThreshold {
				h.link.markOnline()
			}
		} else {
			oks, fails = 0, fails+1
			if h.link.Online() && fails >= h.cfg.FailureThreshold {
				h.link.markOffline("health probe failed")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.link.probeCh:
		}
	}
}

func (h *Hub) probe(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ProbeTimeout.Duration)
	defer cancel()
	req := h.up.request(ctx, http.MethodGet, "/readyz", "", nil)
	req.Header.Set("User-Agent", "edge-hub/probe")
	resp, err := h.up.rt.RoundTrip(req)
	if err != nil {
		h.log.V(4).Info("Probe failed", "err", err.Error())
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
