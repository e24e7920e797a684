//go:build !linux

package netbind

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netns"
)

// enforcer needs netlink: off Linux it only says so, and the rest of
// netbind (the durable copy, the binding server) still works.
type enforcer struct{ log logr.Logger }

func newEnforcer(_ string, _ *Store, _ time.Duration, _ netns.NsHandle, _ func(), log logr.Logger) *enforcer {
	return &enforcer{log: log}
}

func (e *enforcer) Applied() int { return 0 }

func (e *enforcer) run(ctx context.Context) {
	e.log.Info("The VTEP MAC is enforced on Linux only")
	<-ctx.Done()
}
