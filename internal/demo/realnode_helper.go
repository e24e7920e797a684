package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// realNodeStopTimeout bounds the helper's stop: its testbed stops the
// kubelet, containerd, the control plane and removes mounts, namespaces
// and cgroups.
const realNodeStopTimeout = 3 * time.Minute

// realNodeHelper is the process that runs the real edge node,
// `edgeunit-demo real-node run`.
type realNodeHelper struct {
	proc   *process
	socket string
	// ended says the helper's start has ended; up, that the node is up.
	ended, up bool
}

// running says whether the helper runs (or starts) a node that Stop stops.
func (h *realNodeHelper) running() bool { return h != nil && (h.up || !h.ended) }

// startRealNodeHelper starts the real node's helper when the options ask
// for a real node and the machine can run one; where it cannot, it prints
// one line saying why (or fails, with RealNodeOn). The helper starts its
// cluster while the demo starts its own; followRealNode prints what it
// did.
func (d *Demo) startRealNodeHelper() error {
	mode := d.opts.RealNode
	if mode == RealNodeOff || mode == "" {
		return nil
	}
	skip := func(reason string) error {
		if mode == RealNodeOn {
			return fmt.Errorf("no real edge node (--real-node=on): %s", reason)
		}
		d.printf("Real edge node: skipped: %s\n", reason)
		return nil
	}
	if reason := realNodeSkipReason(runtime.GOOS, os.Geteuid()); reason != "" {
		return skip(reason)
	}
	exe, err := os.Executable()
	if err != nil {
		return skip(fmt.Sprintf("cannot find this executable to run the real node's helper: %v", err))
	}
	root, err := repoRoot()
	if err != nil {
		return skip(fmt.Sprintf("it runs the binaries `make e2e-deps` builds into the repository's bin/: %v", err))
	}
	dir := filepath.Dir(d.opts.KubeconfigOut)
	h := &realNodeHelper{socket: filepath.Join(dir, realNodeSocketName)}
	if c, err := net.DialTimeout("unix", h.socket, time.Second); err == nil {
		_ = c.Close()
		return skip(fmt.Sprintf("another demo's real edge node serves %s", h.socket))
	}
	args := []string{"real-node", "run",
		"--repo-root", root,
		"--samples-dir", d.opts.SamplesDir,
		"--socket", h.socket,
		"--kubeconfig-out", filepath.Join(dir, realNodeKubeconfigName),
	}
	if d.opts.Kubectl != "" {
		args = append(args, "--kubectl", d.opts.Kubectl)
	}
	if h.proc, err = d.procs.start("real-node helper", exe, args, filepath.Join(d.WorkDir, "real-node.log")); err != nil {
		return err
	}
	h.proc.stopTimeout = realNodeStopTimeout
	d.realNode = h
	d.printf("Real edge node: starting in the background (%s real-node run, pid %d); what it does follows the summary\n", filepath.Base(exe), h.proc.PID)
	return nil
}

// followRealNode prints what the real node's helper printed so far and
// then as it goes, until its start has ended: with the node up, skipped
// (one line says why) or failed. Only with RealNodeOn is a skip or a
// failure an error; otherwise the demo runs on without the node.
func (d *Demo) followRealNode(ctx context.Context) error {
	h := d.realNode
	if h == nil {
		return nil
	}
	alive := func() error {
		if exited, _ := h.proc.Exited(); exited {
			return h.proc.exitError()
		}
		return nil
	}
	state, reason, err := followStartLog(ctx, h.socket, d.opts.Out, alive)
	if ctx.Err() != nil {
		return nil // interrupted: Run stops the demo
	}
	h.ended, h.up = true, err == nil && state == realNodeReady
	on := d.opts.RealNode == RealNodeOn
	switch {
	case err == nil && state == realNodeReady:
		return nil
	case err == nil && state == realNodeSkipped:
		if on {
			return fmt.Errorf("no real edge node (--real-node=on): %s", reason)
		}
		d.printf("Real edge node: skipped: %s\n", reason)
		return nil
	case err == nil:
		err = errors.New(reason)
	}
	if on {
		return fmt.Errorf("the real edge node: %w", err)
	}
	d.printf("Real edge node: failed: %v\nThe rest of the demo runs on without it.\n", err)
	return nil
}
