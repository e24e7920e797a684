package conversion

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/hubinstall"
)

// InstallerMain is `edge-hub install`, the installer DaemonSet's container:
// it installs the hub's files (package hubinstall) and, in Automatic mode,
// converts the node once the hub is online; told to stop, it reverts the
// node and removes the hub if the node left the unit (or the unit is being
// deleted), and leaves both alone on a rollout.
func InstallerMain(ctx context.Context, args []string, log logr.Logger) error {
	var (
		io   hubinstall.Options
		co   Options
		mode string
		unit string
	)
	fs := flag.NewFlagSet("edge-hub install", flag.ContinueOnError)
	io.BindFlags(fs)
	co.BindFlags(fs)
	fs.StringVar(&mode, "node-conversion", string(edgev1.NodeConversionAutomatic), "Automatic: point the kubelet at the hub, and back when the node leaves the unit; Manual: leave the kubelet alone")
	fs.StringVar(&unit, "unit", "", "the EdgeUnit this installer belongs to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	switch edgev1.NodeConversion(mode) {
	case edgev1.NodeConversionAutomatic, edgev1.NodeConversionManual:
	default:
		errs = append(errs, fmt.Errorf("--node-conversion must be Automatic or Manual, not %q", mode))
	}
	if unit == "" {
		errs = append(errs, errors.New("--unit is required"))
	}
	if err := errors.Join(append(errs, io.Validate())...); err != nil {
		return err
	}
	node := &installerNode{mode: edgev1.NodeConversion(mode), unit: unit, log: log}
	// Every phase reaches the Node as it is recorded: Converting before
	// the check, which may take the whole timeout.
	co.OnState = func(State) { node.report(context.WithoutCancel(ctx)) }
	c, err := New(co)
	if err != nil {
		return err
	}
	node.c = c
	return hubinstall.Run(ctx, io, node, log)
}

// installerNode converts the node after each sync and decides what to do
// when the installer stops.
type installerNode struct {
	c    *Converter
	mode edgev1.NodeConversion
	unit string
	log  logr.Logger
	// reported is the state last written onto the Node; lastMsg the last
	// reason a conversion could not start, logged once.
	reported *State
	lastMsg  string
}

func (n *installerNode) AfterSync(ctx context.Context) {
	automatic := n.mode == edgev1.NodeConversionAutomatic
	if !automatic {
		// A switch started by hand, or before the unit turned Manual, is
		// still finished or rolled back.
		st, err := n.c.State()
		automatic = err == nil && st != nil && st.Phase == edgev1.ConversionConverting
	}
	if automatic {
		err := n.c.Convert(ctx, false)
		switch {
		case err == nil:
		case errors.Is(err, ErrNotReady):
			if err.Error() != n.lastMsg {
				n.log.Info("Not converting the node yet", "reason", err.Error())
			}
			n.lastMsg = err.Error()
		case errors.Is(err, ErrRolledBack):
			n.log.Error(err, "Node conversion failed and was rolled back: the kubelet talks to the apiserver directly")
		case ctx.Err() != nil:
			return
		default:
			n.log.Error(err, "Node conversion failed")
		}
	}
	n.report(ctx)
}

// report writes the recorded state onto the Node when it changed since it
// was last written; a failed write is tried again after the next sync.
func (n *installerNode) report(ctx context.Context) {
	st, err := n.c.State()
	if err != nil || st == nil {
		return
	}
	if n.reported != nil && n.reported.Phase == st.Phase && n.reported.Message == st.Message {
		return
	}
	if err := n.c.Report(ctx, *st); err != nil {
		n.log.Error(err, "Reporting the node conversion on the Node failed, will retry", "phase", st.Phase)
		return
	}
	if n.reported == nil || n.reported.Phase != st.Phase {
		n.log.Info("Node conversion", "phase", st.Phase, "message", st.Message)
	}
	n.reported = st
}

// Stopping decides what the node's removal from the DaemonSet means:
// still in this live unit, a rollout or an eviction (nothing to do); moved
// straight into another unit, whose installer takes the hub over (nothing
// to do either); out of every unit, or this unit deleted: revert the node
// and remove the hub.
func (n *installerNode) Stopping(ctx context.Context) bool {
	m, err := n.c.Membership(ctx, n.unit)
	if err != nil {
		n.log.Error(err, "Cannot tell whether the node left the unit; leaving the kubelet and the hub as they are")
		return false
	}
	switch {
	case m.Label == n.unit && m.UnitLive:
		return false
	case m.Label != "" && m.Label != n.unit:
		// Moved straight into another unit: its installer takes the hub
		// over, if that unit is live.
		other, err := n.c.Membership(ctx, m.Label)
		if err != nil {
			n.log.Error(err, "Cannot tell whether the node's new unit is live; leaving the kubelet and the hub as they are", "unit", m.Label)
			return false
		}
		if other.UnitLive {
			n.log.Info("The node moved to another unit, whose installer takes the hub over", "unit", m.Label)
			return false
		}
	}
	converted, err := n.c.Converted()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Error(err, "Reading the kubelet's kubeconfig failed; leaving the kubelet and the hub as they are")
		return false
	}
	if st, err := n.c.State(); err == nil && st != nil && st.Phase == edgev1.ConversionConverting {
		// Mid-switch or mid-rollback: Revert finishes it on the original.
		converted = true
	}
	if converted && n.mode == edgev1.NodeConversionManual {
		n.log.Info("The node left the unit but was converted by hand: the hub stays; run `edge-hub revert` on the node, then remove " + hubinstall.KeyManifest + " from the kubelet's manifest directory")
		return false
	}
	if converted {
		start := time.Now()
		if err := n.c.Revert(ctx); err != nil {
			n.log.Error(err, "Reverting the node failed; the hub stays so the kubelet keeps working")
			return false
		}
		n.log.Info("Reverted the node: the kubelet talks to the apiserver again", "took", time.Since(start).Round(time.Millisecond))
	}
	n.report(ctx)
	return true
}

// CommandMain is `edge-hub convert` and `edge-hub revert` (verb), for
// provisioning scripts and people on the node: the same switch the
// installer makes. convert waits up to --wait for the hub to be online
// (cloud-init may run it before the installer has put the hub there).
func CommandMain(ctx context.Context, verb string, args []string, log logr.Logger) error {
	var (
		co   Options
		wait time.Duration
	)
	fs := flag.NewFlagSet("edge-hub "+verb, flag.ContinueOnError)
	co.BindFlags(fs)
	if verb == "convert" {
		fs.DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the hub to be online and the apiserver reachable before giving up")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if co.NodeName == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-name is not set and the host name is unknown: %w", err)
		}
		co.NodeName = host
	}
	c, err := New(co)
	if err != nil {
		return err
	}
	switch verb {
	case "convert":
		err = convertWaiting(ctx, c, wait, log)
	case "revert":
		err = c.Revert(ctx)
	default:
		return fmt.Errorf("unknown command %q", verb)
	}
	if st, serr := c.State(); serr == nil && st != nil {
		if rerr := c.Report(ctx, *st); rerr != nil {
			log.Error(rerr, "Reporting the node conversion on the Node failed", "phase", st.Phase)
		}
	}
	if err == nil {
		log.Info("Done", "command", verb, "node", co.NodeName)
	}
	return err
}

// convertWaiting converts, retrying while the conversion cannot start,
// until wait has passed.
func convertWaiting(ctx context.Context, c *Converter, wait time.Duration, log logr.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, wait+c.Options().Timeout+2*time.Minute)
	defer cancel()
	deadline := time.Now().Add(wait)
	t := time.NewTicker(c.Options().pollInterval())
	defer t.Stop()
	var last string
	for {
		err := c.Convert(ctx, true)
		if !errors.Is(err, ErrNotReady) || !time.Now().Before(deadline) {
			return err
		}
		if err.Error() != last {
			log.Info("Waiting to convert", "reason", err.Error())
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}
