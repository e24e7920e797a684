package conversion

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/go-logr/logr"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
)

const testNode = "edge-1"

// fakeCloud is an apiserver for one node: its Node (Ready, with a
// heartbeat the test controls), its Lease, the unit it may be in, and the
// annotation patches it receives.
type fakeCloud struct {
	mu sync.Mutex
	// fresh: the node heartbeats now; else its last heartbeat is an hour
	// old (the kubelet cannot reach the apiserver).
	fresh      bool
	unitLabel  string
	unitExists bool
	unitGoing  bool
	patches    []map[string]any
}

func (f *fakeCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	beat := time.Now()
	if !f.fresh {
		beat = beat.Add(-time.Hour)
	}
	w.Header().Set("Content-Type", "application/json")
	write := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	switch {
	case r.URL.Path == "/api/v1/nodes/"+testNode && r.Method == http.MethodGet:
		write(&corev1.Node{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{Name: testNode, Labels: map[string]string{edgev1.LabelUnit: f.unitLabel}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(beat)}}},
		})
	case r.URL.Path == "/api/v1/nodes/"+testNode && r.Method == http.MethodPatch:
		var p map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &p)
		f.patches = append(f.patches, p)
		write(&corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: testNode}})
	case r.URL.Path == "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"+testNode:
		write(&coordinationv1.Lease{
			TypeMeta:   metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
			ObjectMeta: metav1.ObjectMeta{Name: testNode, Namespace: "kube-node-lease"},
			Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: beat}},
		})
	case strings.HasPrefix(r.URL.Path, "/apis/edge.edgeunit.io/v1alpha1/edgeunits/"):
		if !f.unitExists {
			w.WriteHeader(http.StatusNotFound)
			write(&metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404})
			return
		}
		meta := metav1.ObjectMeta{Name: strings.TrimPrefix(r.URL.Path, "/apis/edge.edgeunit.io/v1alpha1/edgeunits/")}
		if f.unitGoing {
			now := metav1.Now()
			meta.DeletionTimestamp = &now
		}
		write(map[string]any{"apiVersion": "edge.edgeunit.io/v1alpha1", "kind": "EdgeUnit", "metadata": meta})
	default:
		w.WriteHeader(http.StatusNotFound)
		write(&metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404})
	}
}

func (f *fakeCloud) set(fn func(*fakeCloud)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// countingRestarter counts restarts and fails when told to.
type countingRestarter struct {
	mu    sync.Mutex
	count int
	err   error
}

func (c *countingRestarter) Restart(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	return c.err
}

func (c *countingRestarter) restarts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

type rig struct {
	c         *Converter
	cloud     *fakeCloud
	restarter *countingRestarter
	original  []byte
	online    *bool
}

// newRig lays out a node: a kubeadm-style kubelet.conf pointing at the
// fake apiserver, the kubelet's credentials by absolute path, a hub whose
// /readyz says online, and a converter with short bounds.
func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	cloud := &fakeCloud{fresh: true, unitLabel: "factory", unitExists: true}
	api := httptest.NewServer(cloud)
	t.Cleanup(api.Close)
	online := true
	hubAdmin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if online {
			_, _ = io.WriteString(w, "ok (online)")
			return
		}
		_, _ = io.WriteString(w, "ok (offline, serving from cache)")
	}))
	t.Cleanup(hubAdmin.Close)

	kc := clientcmdapi.NewConfig()
	kc.Clusters["cloud"] = &clientcmdapi.Cluster{Server: api.URL, CertificateAuthorityData: []byte("ca")}
	kc.AuthInfos["node"] = &clientcmdapi.AuthInfo{Token: "node-token"}
	kc.Contexts["node"] = &clientcmdapi.Context{Cluster: "cloud", AuthInfo: "node"}
	kc.CurrentContext = "node"
	original, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "etc", "kubelet.conf")
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeconfig, original, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &countingRestarter{}
	c, err := New(Options{
		NodeName:          testNode,
		KubeletKubeconfig: kubeconfig,
		StateDir:          filepath.Join(dir, "state"),
		HubURL:            DefaultHubURL,
		HubAdminURL:       hubAdmin.URL,
		Timeout:           500 * time.Millisecond,
		PollInterval:      20 * time.Millisecond,
		RetryBackoff:      time.Hour,
		MaxRetryBackoff:   2 * time.Hour,
		Restarter:         r,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{c: c, cloud: cloud, restarter: r, original: original, online: &online}
}

func (r *rig) kubeconfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(r.c.o.KubeletKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *rig) state(t *testing.T) State {
	t.Helper()
	st, err := r.c.State()
	if err != nil || st == nil {
		t.Fatalf("State() = %v, %v", st, err)
	}
	return *st
}

func TestConvertKubeconfigChangesOnlyTheServer(t *testing.T) {
	r := newRig(t)
	out, err := convertKubeconfig(r.original, DefaultHubURL)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := clientcmd.Load(r.original)
	after, err := clientcmd.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Clusters["cloud"].Server; got != DefaultHubURL {
		t.Errorf("server = %q, want the hub", got)
	}
	after.Clusters["cloud"].Server = before.Clusters["cloud"].Server
	again, _ := clientcmd.Write(*after)
	if string(again) != string(r.original) {
		t.Errorf("conversion changed more than the server:\n%s\nwant\n%s", again, r.original)
	}
	if _, err := convertKubeconfig(out, DefaultHubURL); err == nil {
		t.Error("converting a converted kubeconfig succeeded")
	}
}

func TestConvertSwitchesAndKeepsTheOriginal(t *testing.T) {
	r := newRig(t)
	if err := r.c.Convert(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if conv, err := r.c.Converted(); err != nil || !conv {
		t.Fatalf("Converted() = %v, %v after Convert", conv, err)
	}
	orig, err := os.ReadFile(filepath.Join(r.c.o.StateDir, OriginalFile))
	if err != nil || string(orig) != string(r.original) {
		t.Fatalf("saved original = %q, %v", orig, err)
	}
	if st := r.state(t); st.Phase != edgev1.ConversionConverted || st.Failures != 0 {
		t.Errorf("state = %+v, want Converted", st)
	}
	if n := r.restarter.restarts(); n != 1 {
		t.Errorf("kubelet restarted %d times, want 1", n)
	}
	// Converting again changes nothing.
	if err := r.c.Convert(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if n := r.restarter.restarts(); n != 1 {
		t.Errorf("a second Convert restarted the kubelet (%d restarts)", n)
	}
}

func TestConvertWaitsForAnOnlineHubAndAReachableCloud(t *testing.T) {
	r := newRig(t)
	*r.online = false
	err := r.c.Convert(context.Background(), false)
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "not online") {
		t.Fatalf("Convert with the hub offline = %v, want ErrNotReady", err)
	}
	if string(r.kubeconfig(t)) != string(r.original) || r.restarter.restarts() != 0 {
		t.Fatal("Convert changed the node while the hub was offline")
	}
	if st, _ := r.c.State(); st != nil {
		t.Fatalf("state written while nothing changed: %+v", st)
	}
}

func TestConvertRollsBackWhenTheNodeIsNotReadyThroughTheHub(t *testing.T) {
	r := newRig(t)
	r.cloud.set(func(f *fakeCloud) { f.fresh = false })
	err := r.c.Convert(context.Background(), false)
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "heartbeat") {
		t.Fatalf("Convert = %v, want ErrRolledBack naming the missing heartbeat", err)
	}
	if string(r.kubeconfig(t)) != string(r.original) {
		t.Fatal("the original kubeconfig is not back after the rollback")
	}
	if n := r.restarter.restarts(); n != 2 {
		t.Errorf("kubelet restarted %d times, want 2 (switch and rollback)", n)
	}
	st := r.state(t)
	if st.Phase != edgev1.ConversionRolledBack || st.Failures != 1 || st.RetryAt.Sub(st.Since) != time.Hour {
		t.Errorf("state = %+v, want RolledBack, 1 failure, retry an hour later", st)
	}

	// Within the backoff nothing happens, unless forced.
	r.cloud.set(func(f *fakeCloud) { f.fresh = true })
	if err := r.c.Convert(context.Background(), false); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Convert within the backoff = %v, want ErrNotReady", err)
	}
	if err := r.c.Convert(context.Background(), true); err != nil {
		t.Fatalf("forced Convert = %v", err)
	}
	if st := r.state(t); st.Phase != edgev1.ConversionConverted {
		t.Errorf("state = %+v, want Converted", st)
	}
}

func TestConvertRollsBackWhenTheRestartFails(t *testing.T) {
	r := newRig(t)
	r.restarter.err = errors.New("no systemd")
	err := r.c.Convert(context.Background(), false)
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "restarting the kubelet") {
		t.Fatalf("Convert = %v, want a rollback for the failed restart", err)
	}
	if st := r.state(t); st.Phase != edgev1.ConversionRolledBack || !strings.Contains(st.Message, "restarting the kubelet failed") {
		t.Errorf("state = %+v, want RolledBack saying the kubelet was not restarted", st)
	}
	if string(r.kubeconfig(t)) != string(r.original) {
		t.Fatal("the original kubeconfig is not back")
	}
}

func TestConvertFinishesAfterACrash(t *testing.T) {
	for _, restarted := range []bool{false, true} {
		r := newRig(t)
		converted, err := convertKubeconfig(r.original, DefaultHubURL)
		if err != nil {
			t.Fatal(err)
		}
		// The crash: the original saved, the file switched, the state
		// Converting.
		if err := os.MkdirAll(r.c.o.StateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.c.o.StateDir, OriginalFile), r.original, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(r.c.o.KubeletKubeconfig, converted, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.c.writeState(State{Phase: edgev1.ConversionConverting, Since: time.Now(), Restarted: restarted}); err != nil {
			t.Fatal(err)
		}
		if err := r.c.Convert(context.Background(), false); err != nil {
			t.Fatalf("restarted=%v: Convert = %v", restarted, err)
		}
		want := 0
		if !restarted {
			want = 1
		}
		if n := r.restarter.restarts(); n != want {
			t.Errorf("restarted=%v: %d restarts, want %d", restarted, n, want)
		}
		if st := r.state(t); st.Phase != edgev1.ConversionConverted {
			t.Errorf("restarted=%v: state %+v, want Converted", restarted, st)
		}
	}
}

func TestRevert(t *testing.T) {
	r := newRig(t)
	// Never converted: nothing to do.
	if err := r.c.Revert(context.Background()); err != nil || r.restarter.restarts() != 0 {
		t.Fatalf("Revert of an unconverted node = %v with %d restarts", err, r.restarter.restarts())
	}
	if err := r.c.Convert(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Revert(context.Background()); err != nil {
		t.Fatal(err)
	}
	if string(r.kubeconfig(t)) != string(r.original) {
		t.Fatal("Revert did not restore the original kubeconfig")
	}
	if n := r.restarter.restarts(); n != 2 {
		t.Errorf("%d restarts, want 2", n)
	}
	if st := r.state(t); st.Phase != edgev1.ConversionReverted {
		t.Errorf("state = %+v, want Reverted", st)
	}

	// Pointing at the hub with no original: refuse, do not guess.
	converted, _ := convertKubeconfig(r.original, DefaultHubURL)
	if err := os.WriteFile(r.c.o.KubeletKubeconfig, converted, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.c.o.StateDir, OriginalFile)); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Revert(context.Background()); err == nil || !strings.Contains(err.Error(), "no original") {
		t.Fatalf("Revert without an original = %v", err)
	}
}

func TestMembership(t *testing.T) {
	tests := map[string]struct {
		set  func(*fakeCloud)
		want Membership
	}{
		"member":             {func(*fakeCloud) {}, Membership{Label: "factory", UnitLive: true}},
		"moved":              {func(f *fakeCloud) { f.unitLabel = "other" }, Membership{Label: "other", UnitLive: true}},
		"unit gone":          {func(f *fakeCloud) { f.unitExists = false }, Membership{Label: "factory"}},
		"unit being deleted": {func(f *fakeCloud) { f.unitGoing = true }, Membership{Label: "factory"}},
		"label removed":      {func(f *fakeCloud) { f.unitLabel = "" }, Membership{UnitLive: true}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			r.cloud.set(tt.set)
			got, err := r.c.Membership(context.Background(), "factory")
			if err != nil || got != tt.want {
				t.Fatalf("Membership = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// The installer, told to stop, reverts and uninstalls only when the node
// is out of every unit or its unit is going.
func TestInstallerStopping(t *testing.T) {
	tests := map[string]struct {
		set        func(*fakeCloud)
		mode       edgev1.NodeConversion
		wantRevert bool
	}{
		"a rollout":               {func(*fakeCloud) {}, edgev1.NodeConversionAutomatic, false},
		"moved to another unit":   {func(f *fakeCloud) { f.unitLabel = "other" }, edgev1.NodeConversionAutomatic, false},
		"left every unit":         {func(f *fakeCloud) { f.unitLabel = "" }, edgev1.NodeConversionAutomatic, true},
		"unit deleted":            {func(f *fakeCloud) { f.unitExists = false }, edgev1.NodeConversionAutomatic, true},
		"unit being deleted":      {func(f *fakeCloud) { f.unitGoing = true }, edgev1.NodeConversionAutomatic, true},
		"left, converted by hand": {func(f *fakeCloud) { f.unitLabel = "" }, edgev1.NodeConversionManual, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			if err := r.c.Convert(context.Background(), false); err != nil {
				t.Fatal(err)
			}
			r.cloud.set(tt.set)
			n := &installerNode{c: r.c, mode: tt.mode, unit: "factory", log: logr.Discard()}
			uninstall := n.Stopping(context.Background())
			reverted := string(r.kubeconfig(t)) == string(r.original)
			if uninstall != tt.wantRevert || reverted != tt.wantRevert {
				t.Fatalf("Stopping: uninstall %v, reverted %v; want both %v", uninstall, reverted, tt.wantRevert)
			}
			if tt.wantRevert {
				if st := r.state(t); st.Phase != edgev1.ConversionReverted {
					t.Errorf("state %+v, want Reverted", st)
				}
			}
		})
	}
}

// Two converters on one node take turns.
func TestConvertersTakeTurns(t *testing.T) {
	r := newRig(t)
	unlock, err := r.c.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.c.Convert(ctx, false); err == nil || !strings.Contains(err.Error(), "another edge-hub") {
		t.Fatalf("Convert while locked = %v", err)
	}
	unlock()
	if err := r.c.Convert(context.Background(), false); err != nil {
		t.Fatalf("Convert after unlock = %v", err)
	}
}

func TestReportAnnotatesTheNode(t *testing.T) {
	r := newRig(t)
	if err := r.c.Report(context.Background(), State{Phase: edgev1.ConversionRolledBack, Message: "no heartbeat"}); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Report(context.Background(), State{Phase: edgev1.ConversionConverted}); err != nil {
		t.Fatal(err)
	}
	r.cloud.mu.Lock()
	defer r.cloud.mu.Unlock()
	got, _ := json.Marshal(r.cloud.patches)
	want := `[{"metadata":{"annotations":{"edge.edgeunit.io/conversion":"RolledBack","edge.edgeunit.io/conversion-message":"no heartbeat"}}},` +
		`{"metadata":{"annotations":{"edge.edgeunit.io/conversion":"Converted","edge.edgeunit.io/conversion-message":null}}}]`
	if string(got) != want {
		t.Errorf("patches = %s\nwant %s", got, want)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{HubURL: "127.0.0.1:10261"}.Validate()
	for _, want := range []string{"--node-name", "--kubelet-kubeconfig", "--conversion-timeout", "--systemd-socket", "plain-HTTP listener"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
}

func TestPointsAt(t *testing.T) {
	for server, want := range map[string]bool{
		"http://127.0.0.1:10261":   true,
		"http://localhost:10261/":  true,
		"http://[::1]:10261":       true,
		"https://127.0.0.1:10268":  false,
		"https://10.0.0.1:6443":    false,
		"https://127.0.0.1:6444":   false,
		"http://192.168.1.1:10261": false,
	} {
		if got := pointsAt(server, DefaultHubURL); got != want {
			t.Errorf("pointsAt(%q) = %v, want %v", server, got, want)
		}
	}
}

// A kubeconfig switched by hand with another spelling of the hub is
// recognised: the original is never overwritten with it.
func TestConvertRecognisesAnotherSpellingOfTheHub(t *testing.T) {
	r := newRig(t)
	if err := r.c.Convert(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	b := strings.Replace(string(r.kubeconfig(t)), DefaultHubURL, "http://localhost:10261/", 1)
	if err := os.WriteFile(r.c.o.KubeletKubeconfig, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Convert(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(filepath.Join(r.c.o.StateDir, OriginalFile))
	if string(orig) != string(r.original) {
		t.Fatalf("the original was overwritten:\n%s", orig)
	}
}

// A rollback cut short after the kubelet ran on the hub (the original
// back on disk, the kubelet not restarted on it) is finished by the next
// run, and a revert never leaves such a kubelet on the hub.
func TestAnInterruptedRollbackIsFinished(t *testing.T) {
	for _, revert := range []bool{false, true} {
		r := newRig(t)
		if err := os.MkdirAll(r.c.o.StateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.c.o.StateDir, OriginalFile), r.original, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.c.writeState(State{Phase: edgev1.ConversionConverting, Since: time.Now(), Restarted: true, Message: "rolling back: no heartbeat"}); err != nil {
			t.Fatal(err)
		}
		var err error
		if revert {
			err = r.c.Revert(context.Background())
		} else {
			err = r.c.Convert(context.Background(), false)
		}
		if revert && err != nil || !revert && !errors.Is(err, ErrRolledBack) {
			t.Fatalf("revert=%v: %v", revert, err)
		}
		if n := r.restarter.restarts(); n != 1 {
			t.Errorf("revert=%v: %d restarts, want the kubelet restarted on the original once", revert, n)
		}
		want := edgev1.ConversionRolledBack
		if revert {
			want = edgev1.ConversionReverted
		}
		if st := r.state(t); st.Phase != want {
			t.Errorf("revert=%v: state %+v, want %s", revert, st, want)
		}
	}
}

// Told to stop while the kubelet restarts, the installer lets the restart
// finish: a stop is not a failed switch.
func TestAStopDuringTheRestartIsNotAFailure(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	r.c.o.Restarter = restartFunc(func(rctx context.Context) error {
		cancel()
		return rctx.Err()
	})
	err := r.c.Convert(ctx, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Convert = %v, want it stopped", err)
	}
	st := r.state(t)
	if st.Phase != edgev1.ConversionConverting || !st.Restarted || st.Failures != 0 {
		t.Fatalf("state %+v, want Converting, restarted, no failure", st)
	}
	// The next installer finishes the check.
	r.c.o.Restarter = r.restarter
	if err := r.c.Convert(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if st := r.state(t); st.Phase != edgev1.ConversionConverted {
		t.Fatalf("state %+v, want Converted", st)
	}
}

type restartFunc func(context.Context) error

func (f restartFunc) Restart(ctx context.Context) error { return f(ctx) }
