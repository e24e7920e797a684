package netbind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netns"
)

// Service runs netbind's parts for one node.
type Service struct {
	cfg   Config
	log   logr.Logger
	store *Store
	api   *apiClient
	ln    net.Listener
	ns    netns.NsHandle
	enf   *enforcer
}

// New opens the durable copy and the listener; Run does the rest. A corrupt
// copy is logged and replaced at the next sync.
func New(cfg Config, log logr.Logger) (*Service, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, ns: netns.None()}
	store, err := OpenStore(cfg.StateFile)
	if store == nil {
		return nil, err
	}
	if err != nil {
		log.Error(err, "Starting without bindings until the next sync")
	}
	if b := store.Get(); b.Node != "" && (b.Node != cfg.NodeName || (cfg.Unit != "" && b.Unit != cfg.Unit)) {
		// A copy for another node or unit (the node moved) binds nothing.
		log.Info("Discarding bindings of another node or unit", "node", b.Node, "unit", b.Unit)
		if err := store.Update(func(nb *Bindings) { *nb = Bindings{Node: cfg.NodeName, Unit: cfg.Unit} }); err != nil {
			return nil, err
		}
	}
	s.store = store
	if cfg.REST != nil {
		if s.api, err = newAPIClient(cfg.REST); err != nil {
			return nil, err
		}
	}
	if cfg.NetNS != "" {
		if s.ns, err = netns.GetFromPath(cfg.NetNS); err != nil {
			return nil, fmt.Errorf("netbind: opening network namespace %s: %w", cfg.NetNS, err)
		}
	}
	if cfg.Listen != "" {
		if s.ln, err = Listen(cfg.Listen); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// Store is the durable copy of the bindings.
func (s *Service) Store() *Store { return s.store }

// Addr is the server's address (useful with port 0), or nil.
func (s *Service) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// MACsSet is how many times the VTEP MAC was set.
func (s *Service) MACsSet() int {
	if s.enf == nil {
		return 0
	}
	return s.enf.Applied()
}

func (s *Service) close() {
	if s.ns.IsOpen() {
		_ = s.ns.Close()
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
}

// Run works until ctx ends. It returns an error only when the server fails.
func (s *Service) Run(ctx context.Context) error {
	defer s.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	reconnected := make(chan struct{}, 1)
	kick := make(chan struct{}, 1)
	if s.api != nil {
		sy := &syncer{api: s.api, store: s.store, unit: s.cfg.Unit, node: s.cfg.NodeName, resync: s.cfg.ResyncInterval,
			log: s.log, reconnected: reconnected}
		wg.Go(func() { sy.run(ctx) })
	}
	if s.cfg.StableVTEPMAC {
		changed := func() {
			if err := s.store.Update(func(b *Bindings) { b.AnnotationPending = true }); err != nil {
				s.log.Error(err, "Recording the pending annotation failed")
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}
		s.enf = newEnforcer(s.cfg.VTEPDevice, s.store, s.cfg.ResyncInterval, s.ns, changed, s.log)
		wg.Go(func() { s.enf.run(ctx) })
		if s.api != nil {
			an := &annotator{api: s.api, store: s.store, node: s.cfg.NodeName, resync: s.cfg.AnnotationResync,
				log: s.log, kick: kick, reconnected: reconnected, followUp: 15 * time.Second}
			wg.Go(func() { an.run(ctx) })
		}
	}
	if s.ln != nil {
		err := serve(ctx, s.ln, Handler(s.store, s.cfg.StablePodIPs), s.log)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
	<-ctx.Done()
	return nil
}
