//go:build linux

// Package testbed runs a cloud-edge cluster on one machine with real
// components: etcd and kube-apiserver (Node,RBAC authorization,
// NodeRestriction, the tunnel as its cluster egress), kube-controller-manager,
// kube-scheduler, the edgeunit manager and a tunnel-server as processes in
// the cloud (this machine's own namespaces), and edge nodes, each in a
// network and mount namespace and a cgroup tree of its own, running
// containerd (with runc and the CNI plugins) and a real kubelet.
//
// Binaries come from bin/ (hack/build-k8s.sh, hack/build-containerd.sh,
// hack/build-e2e.sh; `make e2e-deps` builds them all). Stop always removes
// what Start made: processes, mounts, namespaces, links, cgroups.
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Images the testbed imports into every node.
const (
	EdgeunitImage = "edgeunit.local/edgeunit:e2e"
	PauseImage    = "edgeunit.local/pause:e2e"
	TestAppImage  = "edgeunit.local/testapp:e2e"
)

// Options say what to run.
type Options struct {
	// Nodes are the edge nodes; at least one.
	Nodes []NodeSpec
	// Dir holds everything the testbed writes (required): node disks,
	// certificates, logs.
	Dir string
	// NodeMonitorGracePeriod is kube-controller-manager's
	// --node-monitor-grace-period; ToleratedSeconds the apiserver's
	// default not-ready/unreachable tolerationSeconds.
	NodeMonitorGracePeriod time.Duration
	ToleratedSeconds       int
}

// Testbed is a running cloud with its edge nodes.
type Testbed struct {
	// Dir holds the testbed's files; LogDir every process's log.
	Dir, LogDir string
	Cloud       *Cloud
	Nodes       []*Node

	opts       Options
	id         string
	assets     *assets
	cloudNet   *cloudNet
	nsDir      string
	cgroupBase string
	// cloudCgroup holds the cloud's processes, so that a killed run's are
	// found and ended by the next one.
	cloudCgroup *cgroup

	mu sync.Mutex
	// cleanups stop processes; teardowns, which run after every cleanup,
	// remove what they ran in (mounts, cgroups, links, namespaces). So
	// kube-apiserver stops while the nodes' links are still there, and
	// its connections to them end cleanly.
	cleanups, teardowns []cleanup
}

type cleanup struct {
	what string
	fn   func() error
}

// Start brings up the cloud and boots every node's containerd and
// kubelet (talking to the apiserver directly). On error everything
// started so far is stopped again.
func Start(ctx context.Context, o Options) (_ *Testbed, err error) {
	if len(o.Nodes) == 0 || o.Dir == "" {
		return nil, errors.New("testbed: at least one node and a directory are required")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("testbed: the real-node testbed needs root (network, mount and cgroup namespaces)")
	}
	if o.NodeMonitorGracePeriod == 0 {
		o.NodeMonitorGracePeriod = 40 * time.Second
	}
	if o.ToleratedSeconds == 0 {
		o.ToleratedSeconds = 300
	}
	tb := &Testbed{Dir: o.Dir, LogDir: filepath.Join(o.Dir, "logs"), opts: o, id: randomID()}
	defer func() {
		if err != nil {
			err = errors.Join(err, tb.Stop())
		}
	}()
	if tb.assets, err = findAssets(); err != nil {
		return nil, err
	}
	unlock, err := lockTestbed()
	if err != nil {
		return nil, err
	}
	tb.teardown("testbed lock", func() error { unlock(); return nil })
	if err := sweepStale(); err != nil {
		return nil, err
	}
	tb.teardown("record of mount points", forgetHostDirs)
	if err := tb.privateNSDir(); err != nil {
		return nil, err
	}
	tb.cgroupBase = filepath.Join(ownCgroupBase(), cgroupNamePrefix+tb.id)
	base, err := newCgroup(tb.cgroupBase)
	if base != nil {
		tb.teardown("testbed cgroups", func() error {
			return errors.Join(base.killAll(processKillBound), base.removeAll(processKillBound), base.removeCreatedParents())
		})
	}
	if err != nil {
		return nil, err
	}
	if tb.cloudCgroup, err = base.child("cloud"); err != nil {
		return nil, err
	}
	if tb.cloudNet, err = newCloudNet(tb.id); err != nil {
		return nil, err
	}
	tb.teardown("cloud bridge", tb.cloudNet.close)
	if tb.Cloud, err = tb.startCloud(ctx); err != nil {
		return nil, err
	}
	for i, spec := range o.Nodes {
		n, err := tb.newNode(spec, i)
		if err != nil {
			return nil, err
		}
		tb.Nodes = append(tb.Nodes, n)
		tb.cleanup("processes of node "+n.Name, n.stop)
	}
	for _, n := range tb.Nodes {
		if err := n.Boot(ctx); err != nil {
			return nil, err
		}
	}
	return tb, nil
}

// Node is the node named name, or nil.
func (tb *Testbed) Node(name string) *Node {
	for _, n := range tb.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (tb *Testbed) cleanup(what string, fn func() error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.cleanups = append(tb.cleanups, cleanup{what: what, fn: fn})
}

func (tb *Testbed) teardown(what string, fn func() error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.teardowns = append(tb.teardowns, cleanup{what: what, fn: fn})
}

// Stop undoes Start, last step first (processes before what they run
// in), running every step even when one fails.
func (tb *Testbed) Stop() error {
	tb.mu.Lock()
	cs := append(tb.teardowns, tb.cleanups...)
	tb.cleanups, tb.teardowns = nil, nil
	tb.mu.Unlock()
	var e errs
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i].fn(); err != nil {
			e.add(fmt.Errorf("cleaning up %s: %w", cs[i].what, err))
		}
	}
	return e.err()
}

// privateNSDir makes the directory that holds the nodes' mount namespace
// files: a bind mount of itself with private propagation, which a
// namespace file needs.
func (tb *Testbed) privateNSDir() error {
	tb.nsDir = filepath.Join(tb.Dir, "ns")
	if err := os.MkdirAll(tb.nsDir, 0o700); err != nil {
		return err
	}
	if _, err := run("mount", "--bind", tb.nsDir, tb.nsDir); err != nil {
		return err
	}
	tb.teardown("namespace directory", func() error {
		_, err := run("umount", tb.nsDir)
		return err
	})
	_, err := run("mount", "--make-private", tb.nsDir)
	return err
}

// ensureHostDir creates a mount point the nodes bind their own directory
// over, removing it at the end when the testbed created it.
func (tb *Testbed) ensureHostDir(d string) error {
	if _, err := os.Stat(d); err == nil {
		return nil
	}
	// Remove only what this call creates, top-down.
	top := d
	for p := filepath.Dir(d); p != "/"; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		top = p
	}
	if err := recordHostDir(top); err != nil {
		return err
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	tb.teardown("mount point "+d, func() error {
		// Empty directories only: a mount point nothing uses any more.
		err := removeEmptyTree(top)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	return nil
}

func removeEmptyTree(top string) error {
	entries, err := os.ReadDir(top)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			return fmt.Errorf("%s is not empty", top)
		}
		if err := removeEmptyTree(filepath.Join(top, e.Name())); err != nil {
			return err
		}
	}
	return os.Remove(top)
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Poll calls cond every 200 ms until it returns true or an error, or the
// timeout passes.
func Poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not done within %s: %w", timeout, ctx.Err())
		case <-t.C:
		}
	}
}

// StopOnInterrupt stops the testbed and exits when the process gets
// SIGINT or SIGTERM, for callers without a framework that cleans up on an
// interrupt (benchmarks): nothing is left behind by a Ctrl-C.
func (tb *Testbed) StopOnInterrupt() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "testbed: %s, stopping\n", s)
		if err := tb.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testbed:", err)
		}
		os.Exit(1)
	}()
}
