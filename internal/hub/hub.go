package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"

	"github.com/edgeunit/edgeunit/internal/hub/store"
	"github.com/edgeunit/edgeunit/internal/netbind"
)

// Hub is one node's edge hub.
type Hub struct {
	cfg   Config
	log   logr.Logger
	up    *upstream
	store *store.Store
	link  *link
	rec   *recorder
	topo  *topology
	// inCluster serves pods on a link-local address; nil when off.
	inCluster *inCluster
	metrics   *metrics
	proxy     *httputil.ReverseProxy

	cached, filtered map[string]bool
	journalDepth     atomic.Int64
	replayKick       chan struct{}
	// writeMu orders local writes against replay: while the journal is
	// not empty, new writes join it instead of overtaking it.
	writeMu sync.Mutex

	ready atomic.Bool
	// hasCache: the store holds something to answer from (found at start,
	// or recorded since).
	hasCache atomic.Bool
	// Addresses the listeners got (useful with port 0).
	HTTPAddr, HTTPSAddr, AdminAddr string
	listening                      chan struct{}
}

// New opens the store and prepares the hub; Run serves.
func New(cfg Config, log logr.Logger) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	up, err := newUpstream(cfg)
	if err != nil {
		return nil, err
	}
	h := &Hub{
		cfg: cfg, log: log, up: up,
		cached: set(cfg.CacheClients), filtered: set(cfg.TopologyClients),
		replayKick: make(chan struct{}, 1),
		listening:  make(chan struct{}),
	}
	// Start offline: the first probe (or request) decides. Serving from
	// disk at once is what lets a node reboot while cut off.
	h.link = newLink(log, false)
	st, res, err := store.Open(cfg.StorePath(), 5*time.Second, log)
	if err != nil {
		return nil, err
	}
	h.store = st
	h.metrics = newMetrics(h)
	if res.Quarantined != "" {
		h.metrics.quarantined.Inc()
	}
	log.Info("Store opened", "path", st.Path(), "values", res.Verified, "quarantinedAs", res.Quarantined)
	h.hasCache.Store(res.Verified > 0)
	h.journalDepth.Store(int64(st.JournalDepth()))
	h.rec = newRecorder(h)
	h.topo = newTopology(h)
	if cfg.ListenInCluster != "" {
		if h.inCluster, err = newInCluster(h); err != nil {
			_ = st.Close()
			return nil, err
		}
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up.base)
			pr.Out.Host = up.base.Host
			up.authorize(pr.Out)
		},
		Transport:     proxyTransport{h: h},
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if h.inCluster != nil {
				h.inCluster.callers.learnFromTokenRequest(resp)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if isLinkError(r.Context().Err(), err) {
				h.link.markOffline("request failed: " + err.Error())
			}
			writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "edge-hub: the apiserver could not be reached: "+err.Error())
		},
	}
	h.link.onChange = func(online bool) {
		if online {
			h.kickReplay()
		}
	}
	return h, nil
}

// proxyTransport sends upgrades over HTTP/1.1 and the rest over HTTP/2,
// as the node or as the in-cluster client the request came from.
type proxyTransport struct{ h *Hub }

func (t proxyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.h.up.roundTrip(r)
}

func set(l []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range l {
		m[s] = true
	}
	return m
}

// Run serves until ctx ends, then stops gracefully.
func (h *Hub) Run(ctx context.Context) error {
	defer func() { _ = h.store.Close() }()
	stop := make(chan struct{})
	recDone := make(chan struct{})
	go func() { defer close(recDone); h.rec.run(stop) }()

	bg, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var servers []*http.Server
	serving := false
	// One way down, from wherever starting stopped: the listeners stop
	// (gracefully once serving), the background loops end, then the
	// recorder drains what they queued.
	defer func() {
		h.ready.Store(false)
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		for _, srv := range servers {
			if serving {
				_ = srv.Shutdown(sctx)
			}
			_ = srv.Close()
		}
		wg.Wait()
		close(stop)
		<-recDone
		if serving {
			h.log.Info("Edge hub stopped")
		}
	}()
	wg.Go(func() { h.probeLoop(bg) })
	wg.Go(func() { h.replayLoop(bg) })
	wg.Go(func() { h.topo.run(bg) })

	errCh := make(chan error, 4)
	serve := func(addr string, handler http.Handler, tlsCfg *tls.Config, dst *string) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		*dst = ln.Addr().String()
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg, ErrorLog: nil}
		servers = append(servers, srv)
		go func() {
			var err error
			if tlsCfg != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errCh <- err
			}
		}()
		return nil
	}
	var tlsCfg *tls.Config
	if h.cfg.ListenHTTPS != "" {
		var err error
		if tlsCfg, err = h.servingTLS(); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		addr string
		h    http.Handler
		tls  *tls.Config
		dst  *string
	}{{h.cfg.ListenHTTP, h, nil, &h.HTTPAddr}, {h.cfg.ListenHTTPS, h, tlsCfg, &h.HTTPSAddr}, {h.cfg.ListenAdmin, h.adminHandler(), nil, &h.AdminAddr}} {
		if err := serve(s.addr, s.h, s.tls, s.dst); err != nil {
			return err
		}
	}
	if h.cfg.NetBind.Enabled {
		if err := h.startNetBind(bg, &wg, errCh); err != nil {
			return err
		}
	}
	if h.inCluster != nil {
		wg.Go(func() { h.inCluster.run(bg) })
	}
	serving = true
	h.ready.Store(true)
	close(h.listening)
	h.log.Info("Edge hub serving", "http", h.HTTPAddr, "https", h.HTTPSAddr, "admin", h.AdminAddr, "node", h.cfg.NodeName, "upstream", h.up.base.String())

	select {
	case <-ctx.Done():
		return nil
	case err := <-errCh:
		return err
	}
}

// Listening is closed once the listeners are up.
func (h *Hub) Listening() <-chan struct{} { return h.listening }

func (h *Hub) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	// Ready when it can answer: online, or offline with a cache to serve
	// from. A new hub whose first probe has not passed yet, with nothing
	// recorded, is not: every read would get 503.
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		state := "online"
		if !h.link.Online() {
			if !h.hasCache.Load() {
				http.Error(w, "offline with nothing cached yet", http.StatusServiceUnavailable)
				return
			}
			state = "offline, serving from cache"
		}
		_, _ = fmt.Fprintf(w, "ok (%s)", state)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(h.metrics.reg, promhttp.HandlerOpts{}))
	if h.cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// servingTLS loads or generates the HTTPS serving certificate and the
// client-certificate verification.
func (h *Hub) servingTLS() (*tls.Config, error) {
	certFile, keyFile := h.cfg.ServingCertFile, h.cfg.ServingKeyFile
	if certFile == "" {
		var err error
		if certFile, keyFile, err = ensureServingCert(h.cfg.DataDir, time.Now()); err != nil {
			return nil, err
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}}
	if h.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(h.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("client CA: no certificate found")
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// startNetBind runs the node's network-binding enforcer. It reads the
// unit's bindings through this hub's own listener, with the node's
// credentials, but never from the hub's cache: netbind keeps its own
// durable copy, updated by its watch, and enforces from it while offline.
// A GET recorded earlier by the proxy can be older than that copy, and
// answering it after a restart offline would roll the copy back.
func (h *Hub) startNetBind(ctx context.Context, wg *sync.WaitGroup, errCh chan<- error) error {
	if h.HTTPAddr == "" {
		return errors.New("netbind needs the hub's plain HTTP listener (--listen-http)")
	}
	cfg, err := netbind.ConfigFor(h.cfg.NodeName, h.cfg.DataDir, h.cfg.NetBind,
		&rest.Config{Host: "http://" + h.HTTPAddr, UserAgent: netbind.UserAgent})
	if err != nil {
		return err
	}
	nb, err := netbind.New(cfg, h.log.WithName("netbind"))
	if err != nil {
		return fmt.Errorf("starting netbind: %w", err)
	}
	wg.Go(func() {
		if err := nb.Run(ctx); err != nil && ctx.Err() == nil {
			errCh <- fmt.Errorf("netbind: %w", err)
		}
	})
	return nil
}
