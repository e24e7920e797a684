// Package conversion points a node's kubelet at the edge hub and back: node
// conversion.
//
// # What changes on the node
//
// Converting rewrites one field of one file, the kubelet's kubeconfig
// (/etc/kubernetes/kubelet.conf on a kubeadm node): the server of its
// current context's cluster becomes the hub's loopback listener
// (http://127.0.0.1:10261). Everything else stays, the kubelet's own client
// certificate above all: the hub proxies with the credentials this file
// names (and the apiserver's CA it holds), and the kubelet goes on
// rotating them. The hub takes the apiserver's address from the original.
// Before the first byte is written, the original is saved under the state
// directory (kubelet.conf.orig), and the conversion's progress is recorded
// next to it (state.json), both written atomically, so a crash at any
// point leaves either the original or the converted file in place and a
// record of which, and the next run finishes or undoes the switch.
//
// # How the kubelet is restarted
//
// Through the host's systemd, over its private D-Bus socket
// (/run/systemd/private): RestartUnit of kubelet.service, waiting for the
// job to finish. It is the interface every systemd host has, it needs no
// host PID namespace and no binaries from the host, and the same code
// serves the installer DaemonSet (which mounts /run/systemd) and a person
// or cloud-init running `edge-hub convert` on the node. Restarting the
// kubelet does not restart pods: containers keep running under the
// container runtime and the new kubelet adopts them.
//
// # How a switch is judged, and undone
//
// The switch counts only when the apiserver itself shows it worked: the
// node's Ready condition True with a heartbeat, and its Lease renewed,
// both after the kubelet restarted through the hub. That is read directly
// from the apiserver with the kubelet's original credentials, not through
// the hub, which would answer from its cache while offline. A switch is
// only started while the hub reports it is online and the apiserver
// answers directly. If the node is not Ready through the hub within the
// timeout, the original kubeconfig goes back, the kubelet is restarted
// again, and the state says RolledBack with the reason and when to try
// again.
package conversion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/internal/hubinstall"
)

// Files in the state directory.
const (
	// OriginalFile is the kubelet's kubeconfig as it was before the switch.
	OriginalFile = "kubelet.conf.orig"
	// StateFile records the conversion's phase (State, JSON).
	StateFile = "state.json"
)

// Defaults of Options.
const (
	DefaultKubeletKubeconfig = "/etc/kubernetes/kubelet.conf"
	DefaultStateDir          = "/var/lib/edgeunit/conversion"
	DefaultHubURL            = "http://127.0.0.1:10261"
	DefaultHubAdminURL       = "http://127.0.0.1:10267"
	DefaultSystemdSocket     = "/run/systemd/private"
	DefaultKubeletUnit       = "kubelet.service"
	DefaultTimeout           = 2 * time.Minute
)

// Options of a conversion.
type Options struct {
	// NodeName is the node's name (the kubelet's identity).
	NodeName string
	// KubeletKubeconfig is the kubelet's kubeconfig, the file switched.
	KubeletKubeconfig string
	// StateDir keeps the original kubeconfig and the state.
	StateDir string
	// HubURL is the hub's local listener the kubelet is pointed at.
	HubURL string
	// HubAdminURL serves the hub's /readyz.
	HubAdminURL string
	// SystemdSocket is systemd's private D-Bus socket.
	SystemdSocket string
	// KubeletUnit is the kubelet's systemd unit.
	KubeletUnit string
	// Timeout bounds how long the node has to be Ready through the hub
	// after the kubelet restarted.
	Timeout time.Duration
	// PollInterval between checks of the node; 2 s when zero.
	PollInterval time.Duration
	// RetryBackoff is the wait after a rollback before the next attempt;
	// it doubles per failed attempt up to MaxRetryBackoff. Zero means
	// Timeout and 30 minutes.
	RetryBackoff, MaxRetryBackoff time.Duration

	// Restarter restarts the kubelet; systemd over SystemdSocket when nil.
	Restarter Restarter
	// OnState, when set, is called with every state recorded, so the
	// installer reports Converting before the check starts.
	OnState func(State)
}

// BindFlags registers the options on fs with their defaults.
func (o *Options) BindFlags(fs interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME; convert and revert fall back to the host name)")
	fs.StringVar(&o.KubeletKubeconfig, "kubelet-kubeconfig", DefaultKubeletKubeconfig, "the kubelet's kubeconfig, the file switched to the hub")
	fs.StringVar(&o.StateDir, "conversion-state-dir", DefaultStateDir, "where the original kubeconfig and the conversion state are kept")
	fs.StringVar(&o.HubURL, "hub-url", DefaultHubURL, "the hub's local listener the kubelet is pointed at")
	fs.StringVar(&o.HubAdminURL, "hub-admin-url", DefaultHubAdminURL, "the hub's admin listener (its /readyz)")
	fs.StringVar(&o.SystemdSocket, "systemd-socket", DefaultSystemdSocket, "systemd's private D-Bus socket, through which the kubelet is restarted")
	fs.StringVar(&o.KubeletUnit, "kubelet-unit", DefaultKubeletUnit, "the kubelet's systemd unit")
	fs.DurationVar(&o.Timeout, "conversion-timeout", DefaultTimeout, "how long the node has to be Ready through the hub before the switch is undone")
}

// Validate reports missing or invalid options.
func (o Options) Validate() error {
	var errs []error
	for flagName, v := range map[string]string{
		"--node-name": o.NodeName, "--kubelet-kubeconfig": o.KubeletKubeconfig, "--conversion-state-dir": o.StateDir,
		"--hub-url": o.HubURL, "--hub-admin-url": o.HubAdminURL,
	} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flagName))
		}
	}
	if o.Restarter == nil && (o.SystemdSocket == "" || o.KubeletUnit == "") {
		errs = append(errs, errors.New("--systemd-socket and --kubelet-unit are required"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, errors.New("--conversion-timeout must be positive"))
	}
	// Plain HTTP only: the kubeconfig keeps the apiserver's CA, which
	// could not verify the hub's own certificate.
	if u, err := url.Parse(o.HubURL); o.HubURL != "" && (err != nil || u.Scheme != "http" || u.Port() == "") {
		errs = append(errs, fmt.Errorf("--hub-url %q must be the hub's plain-HTTP listener, http://<loopback>:<port>", o.HubURL))
	}
	return errors.Join(errs...)
}

func (o Options) pollInterval() time.Duration {
	if o.PollInterval > 0 {
		return o.PollInterval
	}
	return 2 * time.Second
}

func (o Options) restarter() Restarter {
	if o.Restarter != nil {
		return o.Restarter
	}
	return Systemd{Socket: o.SystemdSocket, Unit: o.KubeletUnit}
}

// State is what StateFile records.
type State struct {
	// Phase is the last phase reached.
	Phase edgev1.ConversionPhase `json:"phase"`
	// Since is when the kubelet was restarted through the hub (Converting,
	// Converted) or when the phase was reached.
	Since time.Time `json:"since"`
	// Message says why, for a rollback.
	Message string `json:"message,omitempty"`
	// Restarted says the kubelet was restarted with the converted
	// kubeconfig (Converting): before that, heartbeats still come from the
	// old kubelet, straight to the apiserver, and prove nothing.
	Restarted bool `json:"restarted,omitempty"`
	// Failures counts consecutive rollbacks.
	Failures int `json:"failures,omitempty"`
	// RetryAt is when a rolled-back node is converted again.
	RetryAt time.Time `json:"retryAt,omitzero"`
}

// ErrNotReady is returned when a conversion cannot start yet (hub offline,
// apiserver unreachable, kubeconfig missing, a rollback's backoff): nothing
// was changed; try again later.
var ErrNotReady = errors.New("not ready to convert")

// ErrRolledBack is returned when a switch failed and was undone.
var ErrRolledBack = errors.New("conversion rolled back")

// Converter converts and reverts one node.
type Converter struct {
	o   Options
	now func() time.Time
}

// New checks o and returns a Converter.
func New(o Options) (*Converter, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Converter{o: o, now: time.Now}, nil
}

// Options returns the converter's options.
func (c *Converter) Options() Options { return c.o }

// State reads the recorded state; a node never converted has none (nil).
func (c *Converter) State() (*State, error) {
	b, err := os.ReadFile(filepath.Join(c.o.StateDir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", StateFile, err)
	}
	return &s, nil
}

func (c *Converter) writeState(s State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.o.StateDir, 0o700); err != nil {
		return err
	}
	if _, err = hubinstall.WriteFileAtomic(filepath.Join(c.o.StateDir, StateFile), b, 0o600); err != nil {
		return err
	}
	if c.o.OnState != nil {
		c.o.OnState(s)
	}
	return nil
}

// Converted says whether the kubelet's kubeconfig points at the hub.
func (c *Converter) Converted() (bool, error) {
	cfg, err := clientcmd.LoadFromFile(c.o.KubeletKubeconfig)
	if err != nil {
		return false, err
	}
	cl, err := currentCluster(cfg)
	if err != nil {
		return false, fmt.Errorf("%s: %w", c.o.KubeletKubeconfig, err)
	}
	return pointsAt(cl.Server, c.o.HubURL), nil
}

// pointsAt says whether server names the listener at hubURL: the same
// port on the same host, any spelling of loopback counting as one host
// ("localhost", 127.0.0.1, [::1]), a trailing slash ignored.
func pointsAt(server, hubURL string) bool {
	s, err1 := url.Parse(server)
	h, err2 := url.Parse(hubURL)
	if err1 != nil || err2 != nil || s.Port() != h.Port() || s.Port() == "" {
		return false
	}
	loopback := func(host string) bool {
		ip := net.ParseIP(host)
		return host == "localhost" || (ip != nil && ip.IsLoopback())
	}
	return s.Hostname() == h.Hostname() || (loopback(s.Hostname()) && loopback(h.Hostname()))
}

// Convert points the kubelet at the hub and checks the node stays Ready,
// or finishes a conversion a crash interrupted. With force it ignores a
// rollback's backoff. It returns nil once the node is converted,
// ErrNotReady (wrapped) when it cannot start now, ErrRolledBack (wrapped)
// when the switch failed and was undone.
func (c *Converter) Convert(ctx context.Context, force bool) error {
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := c.State()
	if err != nil {
		return err
	}
	converted, err := c.Converted()
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist yet (the node has not joined the cluster)", ErrNotReady, c.o.KubeletKubeconfig)
	}
	if err != nil {
		return err
	}
	if converted {
		if st != nil && st.Phase == edgev1.ConversionConverting {
			if !st.Restarted {
				// A crash between the switch and the restart.
				return c.restartAndVerify(ctx, *st)
			}
			// A crash while the switch was being checked: finish the check
			// against the same deadline.
			return c.verifyOrRollBack(ctx, *st)
		}
		if st == nil || st.Phase != edgev1.ConversionConverted {
			if _, err := os.Stat(filepath.Join(c.o.StateDir, OriginalFile)); err != nil {
				return fmt.Errorf("%s points at the hub but no original is saved in %s: it was switched by something else; restore it by hand", c.o.KubeletKubeconfig, c.o.StateDir)
			}
			// Switched, but nothing here checked it (the state was lost,
			// or the file was put back by hand): check it now, from a
			// restart, as a fresh switch is.
			next := State{Phase: edgev1.ConversionConverting, Since: c.now()}
			if st != nil {
				next.Failures = st.Failures
			}
			if err := c.writeState(next); err != nil {
				return err
			}
			return c.restartAndVerify(ctx, next)
		}
		return nil
	}
	if st != nil && st.Phase == edgev1.ConversionConverting && st.Restarted {
		// The kubelet ran on the hub and the file is direct again: a
		// rollback was cut short. Finish it: the kubelet on the original.
		if err := c.restoreOriginal(ctx, true); err != nil {
			return fmt.Errorf("finishing an interrupted rollback: %w", err)
		}
		return c.rolledBack(*st, strings.TrimPrefix(st.Message, "rolling back: "))
	}
	if st != nil && st.Phase == edgev1.ConversionRolledBack && !force && c.now().Before(st.RetryAt) {
		return fmt.Errorf("%w: the last switch was rolled back (%s); next attempt at %s", ErrNotReady, st.Message, st.RetryAt.Format(time.RFC3339))
	}
	if err := c.hubOnline(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	original, err := os.ReadFile(c.o.KubeletKubeconfig)
	if err != nil {
		return err
	}
	cs, err := clientsetFrom(original, c.o.KubeletKubeconfig)
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, c.o.NodeName, metav1.GetOptions{}); err != nil {
		return fmt.Errorf("%w: reading Node %s from the apiserver with the kubelet's credentials: %v", ErrNotReady, c.o.NodeName, err)
	}
	switched, err := convertKubeconfig(original, c.o.HubURL)
	if err != nil {
		return fmt.Errorf("%s: %w", c.o.KubeletKubeconfig, err)
	}
	if err := os.MkdirAll(c.o.StateDir, 0o700); err != nil {
		return err
	}
	// The kubeconfig as it is now is the direct one: keep it, whatever an
	// earlier conversion saved (an upgrade may have rewritten it since).
	if _, err := hubinstall.WriteFileAtomic(filepath.Join(c.o.StateDir, OriginalFile), original, 0o600); err != nil {
		return err
	}
	failures := 0
	if st != nil {
		failures = st.Failures
	}
	next := State{Phase: edgev1.ConversionConverting, Since: c.now(), Failures: failures}
	if err := c.writeState(next); err != nil {
		return err
	}
	if err := c.writeKubeconfig(switched); err != nil {
		return c.rollBack(ctx, next, fmt.Sprintf("writing the converted kubeconfig: %v", err))
	}
	return c.restartAndVerify(ctx, next)
}

// restartAndVerify restarts the kubelet on the converted kubeconfig and
// checks the switch from then on.
func (c *Converter) restartAndVerify(ctx context.Context, st State) error {
	// Not cut short by the installer stopping: a restart interrupted
	// would count as a failed switch. The check is what stops with it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	err := c.o.restarter().Restart(rctx)
	cancel()
	if err != nil {
		return c.rollBack(ctx, st, fmt.Sprintf("restarting the kubelet: %v", err))
	}
	// From here on heartbeats can only come from the restarted kubelet,
	// through the hub; the timeout counts from here too.
	st.Since = c.now()
	st.Restarted = true
	if err := c.writeState(st); err != nil {
		return c.rollBack(ctx, st, fmt.Sprintf("recording the switch: %v", err))
	}
	return c.verifyOrRollBack(ctx, st)
}

// verifyOrRollBack waits until the apiserver shows the node Ready through
// the hub, or until st.Since + Timeout, and then rolls back.
func (c *Converter) verifyOrRollBack(ctx context.Context, st State) error {
	original, err := os.ReadFile(filepath.Join(c.o.StateDir, OriginalFile))
	if err != nil {
		return fmt.Errorf("reading the saved original kubeconfig: %w", err)
	}
	cs, err := clientsetFrom(original, c.o.KubeletKubeconfig)
	if err != nil {
		return c.rollBack(ctx, st, err.Error())
	}
	deadline := st.Since.Add(c.o.Timeout)
	t := time.NewTicker(c.o.pollInterval())
	defer t.Stop()
	var last error
	for {
		last = c.readyThroughHub(ctx, cs, st.Since)
		if last == nil {
			return c.writeState(State{Phase: edgev1.ConversionConverted, Since: st.Since})
		}
		if !c.now().Before(deadline) {
			return c.rollBack(ctx, st, fmt.Sprintf("the node was not Ready through the hub within %s: %v", c.o.Timeout, last))
		}
		select {
		case <-ctx.Done():
			// Stopped mid-check: the state says Converting, the next run
			// finishes the check against the same deadline.
			return ctx.Err()
		case <-t.C:
		}
	}
}

// readyThroughHub is nil when the apiserver shows the node Ready, with a
// heartbeat and a Lease renewal both after since.
func (c *Converter) readyThroughHub(ctx context.Context, cs kubernetes.Interface, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, c.o.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	// Heartbeats have a resolution of a second.
	after := since.Truncate(time.Second)
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status != corev1.ConditionTrue {
				return fmt.Errorf("node Ready is %s (%s)", cond.Status, cond.Message)
			}
			if cond.LastHeartbeatTime.Time.Before(after) {
				return fmt.Errorf("no node status heartbeat since the switch (last %s)", cond.LastHeartbeatTime.Format(time.RFC3339))
			}
			ready = true
		}
	}
	if !ready {
		return errors.New("the node has no Ready condition")
	}
	var lease *coordinationv1.Lease
	if lease, err = cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, c.o.NodeName, metav1.GetOptions{}); err != nil {
		return err
	}
	if lease.Spec.RenewTime == nil || lease.Spec.RenewTime.Time.Before(since) {
		return errors.New("the node's Lease was not renewed since the switch")
	}
	return nil
}

// rollBack puts the original kubeconfig back, restarts the kubelet, and
// records why and when to try again.
func (c *Converter) rollBack(ctx context.Context, st State, why string) error {
	// The rollback must happen even when the caller is stopping.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// Recorded first: a rollback cut short (the original not written back,
	// or the kubelet not restarted on it) is finished by the next run,
	// which finds this state with the kubeconfig direct or not.
	undoing := st
	undoing.Phase, undoing.Message = edgev1.ConversionConverting, "rolling back: "+why
	if err := c.writeState(undoing); err != nil {
		return err
	}
	if err := c.restoreOriginal(ctx, st.Restarted); err != nil {
		if !errors.Is(err, errRestart) || st.Restarted {
			return fmt.Errorf("rolling back (%s) failed, the next run tries again: %w", why, err)
		}
		// The kubelet was never restarted onto the hub, and the original
		// is on disk: the kubelet takes it when it next restarts.
		why += "; " + err.Error()
	}
	return c.rolledBack(st, why)
}

// rolledBack records a finished rollback and when to try again.
func (c *Converter) rolledBack(st State, why string) error {
	failures := st.Failures + 1
	next := State{Phase: edgev1.ConversionRolledBack, Since: c.now(), Message: why, Failures: failures}
	next.RetryAt = next.Since.Add(c.backoff(failures))
	if err := c.writeState(next); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", ErrRolledBack, why)
}

func (c *Converter) backoff(failures int) time.Duration {
	base, maxWait := c.o.RetryBackoff, c.o.MaxRetryBackoff
	if base <= 0 {
		base = c.o.Timeout
	}
	if maxWait <= 0 {
		maxWait = 30 * time.Minute
	}
	d := base
	for i := 1; i < failures && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}

// restoreOriginal writes the saved kubeconfig back when the current one
// differs, and restarts the kubelet when it wrote or when restart says the
// running kubelet may still use the hub.
func (c *Converter) restoreOriginal(ctx context.Context, restart bool) error {
	original, err := os.ReadFile(filepath.Join(c.o.StateDir, OriginalFile))
	if err != nil {
		return fmt.Errorf("reading the saved original kubeconfig: %w", err)
	}
	wrote, err := hubinstall.WriteFileAtomic(c.o.KubeletKubeconfig, original, c.kubeconfigMode())
	if err != nil {
		return err
	}
	if !wrote && !restart {
		return nil
	}
	if err := c.o.restarter().Restart(ctx); err != nil {
		return fmt.Errorf("%w: %w", errRestart, err)
	}
	return nil
}

// errRestart marks a failed kubelet restart after the kubeconfig was
// written.
var errRestart = errors.New("the original kubeconfig is back, but restarting the kubelet failed")

// Revert points the kubelet at the apiserver again, from the saved
// original. A node that was never converted is left alone; one that points
// at the hub with no original saved is an error.
func (c *Converter) Revert(ctx context.Context) error {
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	converted, err := c.Converted()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_, origErr := os.Stat(filepath.Join(c.o.StateDir, OriginalFile))
	if converted && origErr != nil {
		return fmt.Errorf("%s points at the hub but no original is saved in %s: restore it by hand", c.o.KubeletKubeconfig, c.o.StateDir)
	}
	st, err := c.State()
	if err != nil {
		return err
	}
	// A kubelet restarted onto the hub whose kubeconfig was put back
	// without a restart since (a rollback cut short) may still use it.
	pending := st != nil && st.Phase == edgev1.ConversionConverting && st.Restarted
	if origErr == nil && (converted || pending) {
		if err := c.restoreOriginal(ctx, pending); err != nil {
			return err
		}
	}
	if st == nil {
		return nil
	}
	return c.writeState(State{Phase: edgev1.ConversionReverted, Since: c.now()})
}

// lock serialises the converters of one node (the installer, a person's
// edge-hub convert or revert, the installers of two units while a pool
// moves between them): an exclusive flock on the state directory's .lock,
// waited for until ctx ends.
func (c *Converter) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(c.o.StateDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(c.o.StateDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("another edge-hub is converting or reverting this node: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Converter) kubeconfigMode() os.FileMode {
	if st, err := os.Stat(c.o.KubeletKubeconfig); err == nil {
		return st.Mode().Perm()
	}
	return 0o600
}

func (c *Converter) writeKubeconfig(b []byte) error {
	_, err := hubinstall.WriteFileAtomic(c.o.KubeletKubeconfig, b, c.kubeconfigMode())
	return err
}

// hubOnline is nil when the hub serves and is online.
func (c *Converter) hubOnline(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.o.HubAdminURL, "/")+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the hub does not answer: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the hub is not ready: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if !strings.Contains(string(body), "(online)") {
		return fmt.Errorf("the hub is not online: %s", strings.TrimSpace(string(body)))
	}
	return nil
}

// convertKubeconfig returns kubeconfig with its current cluster's server
// set to hubURL. The cluster's CA stays: the hub reads it (a client ignores
// it for a plain-HTTP server).
func convertKubeconfig(kubeconfig []byte, hubURL string) ([]byte, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, err
	}
	cl, err := currentCluster(cfg)
	if err != nil {
		return nil, err
	}
	if pointsAt(cl.Server, hubURL) {
		return nil, errors.New("already points at the hub")
	}
	cl.Server = hubURL
	return clientcmd.Write(*cfg)
}

func currentCluster(cfg *clientcmdapi.Config) (*clientcmdapi.Cluster, error) {
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return nil, fmt.Errorf("current context %q not found", cfg.CurrentContext)
	}
	cl := cfg.Clusters[ctx.Cluster]
	if cl == nil {
		return nil, fmt.Errorf("cluster %q of context %q not found", ctx.Cluster, cfg.CurrentContext)
	}
	return cl, nil
}

// clientsetFrom builds a client from kubeconfig bytes, resolving relative
// paths against the directory of path (where the kubeconfig lives).
func clientsetFrom(kubeconfig []byte, path string) (*kubernetes.Clientset, error) {
	cfg, err := RESTConfig(kubeconfig, path)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// RESTConfig is the client configuration of kubeconfig, whose relative
// paths are relative to the directory of path.
func RESTConfig(kubeconfig []byte, path string) (*rest.Config, error) {
	raw, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := clientcmd.ResolveLocalPaths(raw); err != nil {
		return nil, err
	}
	dir, _ := filepath.Abs(filepath.Dir(path))
	for _, a := range raw.AuthInfos {
		a.ClientCertificate = absIn(dir, a.ClientCertificate)
		a.ClientKey = absIn(dir, a.ClientKey)
		a.TokenFile = absIn(dir, a.TokenFile)
	}
	for _, cl := range raw.Clusters {
		cl.CertificateAuthority = absIn(dir, cl.CertificateAuthority)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 15 * time.Second
	cfg.UserAgent = "edge-hub-conversion"
	return cfg, nil
}

func absIn(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Report writes the state onto the Node (AnnotationConversion and
// AnnotationConversionMessage), with the kubelet's original credentials,
// for the EdgeUnit controller to count.
func (c *Converter) Report(ctx context.Context, st State) error {
	cs, err := c.directClient()
	if err != nil {
		return err
	}
	msg := st.Message
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]any{
		edgev1.AnnotationConversion:        string(st.Phase),
		edgev1.AnnotationConversionMessage: nilIfEmpty(msg),
	}}}
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = cs.CoreV1().Nodes().Patch(ctx, c.o.NodeName, types.MergePatchType, b, metav1.PatchOptions{})
	return err
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// directClient talks to the apiserver with the kubelet's credentials: the
// kubeconfig as it is, or the saved original while the kubeconfig names
// the hub.
func (c *Converter) directClient() (*kubernetes.Clientset, error) {
	path := c.o.KubeletKubeconfig
	if converted, err := c.Converted(); err == nil && converted {
		path = filepath.Join(c.o.StateDir, OriginalFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return clientsetFrom(b, c.o.KubeletKubeconfig)
}

// Membership is where the node stands, read directly from the apiserver.
type Membership struct {
	// Label is the node's edge.edgeunit.io/unit label ("" for none).
	Label string
	// UnitLive says the unit asked about exists and is not being deleted.
	UnitLive bool
}

// Membership reads the node's unit label, and whether unit is live.
func (c *Converter) Membership(ctx context.Context, unit string) (Membership, error) {
	var m Membership
	cs, err := c.directClient()
	if err != nil {
		return m, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, c.o.NodeName, metav1.GetOptions{})
	if err != nil {
		return m, err
	}
	m.Label = node.Labels[edgev1.LabelUnit]
	var u struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	raw, err := cs.RESTClient().Get().AbsPath("/apis", edgev1.GroupVersion.Group, edgev1.GroupVersion.Version, "edgeunits", unit).DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		return m, err
	}
	m.UnitLive = u.Metadata.DeletionTimestamp == nil
	return m, nil
}

// Restarter restarts the kubelet and returns once it was restarted.
type Restarter interface {
	Restart(ctx context.Context) error
}

// Systemd restarts a unit through systemd's private D-Bus socket.
type Systemd struct {
	Socket string
	Unit   string
}

// DialSystemd connects to systemd's private D-Bus socket as systemd's own
// tools do: EXTERNAL authentication as our uid, no Hello (there is no
// bus). opts go to every connection (go-systemd opens two).
func DialSystemd(ctx context.Context, socket string, opts ...godbus.ConnOption) (*sddbus.Conn, error) {
	return sddbus.NewConnection(func() (*godbus.Conn, error) {
		c, err := godbus.Dial("unix:path="+socket, append([]godbus.ConnOption{godbus.WithContext(ctx)}, opts...)...)
		if err != nil {
			return nil, err
		}
		if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	})
}

// Restart runs RestartUnit and waits for the job's result.
func (s Systemd) Restart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := DialSystemd(ctx, s.Socket)
	if err != nil {
		return fmt.Errorf("connecting to systemd at %s: %w", s.Socket, err)
	}
	defer conn.Close()
	done := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, s.Unit, "replace", done); err != nil {
		return fmt.Errorf("restarting %s: %w", s.Unit, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("restarting %s: job %s", s.Unit, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("restarting %s: %w", s.Unit, ctx.Err())
	}
}
