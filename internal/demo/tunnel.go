package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/wait"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	edgev1 "github.com/edgeunit/edgeunit/api/v1alpha1"
	"github.com/edgeunit/edgeunit/controllers"
	"github.com/edgeunit/edgeunit/controllers/tunnelendpoint"
	"github.com/edgeunit/edgeunit/internal/certs"
	"github.com/edgeunit/edgeunit/internal/certs/csr"
)

// Bounds of the tunnel's setup steps; the final wait for connected agents
// is bounded by Options.ReadyTimeout.
const (
	servingSecretTimeout = 30 * time.Second
	identityTimeout      = 30 * time.Second
	serverReadyTimeout   = 20 * time.Second
	httpProbeTimeout     = 2 * time.Second
)

// Settings of the demo's tunnel processes that differ from the binaries'
// defaults: status is reported every second instead of every ten so the
// demo converges quickly; heartbeats and reconnects are quicker so that
// pausing an agent shows within seconds.
const (
	demoStatusInterval    = "1s"
	demoHeartbeatInterval = "2s"
	demoBackoffMax        = "5s"
	demoServerID          = "demo-0"
)

// Paths of the tunnel-server's RBAC in the config directory, and the
// namePrefix config/default gives it.
const (
	tunnelServerRBACFile = "rbac/tunnel_server.yaml"
	deployNamePrefix     = "edgeunit-"
)

// nodeCSRRole lets nodes request their certificates, which the Node
// authorizer grants on a real cluster; the demo's apiserver runs RBAC only.
const nodeCSRRole = "edgeunit-demo:node-csr"

// Tunnel is the tunnel the demo runs on this machine: one tunnel-server
// process for a TunnelEndpoint and a tunnel-agent process per node of the
// EdgeUnits that use it.
type Tunnel struct {
	// Endpoint is the TunnelEndpoint the server reports into.
	Endpoint string
	// Units are the EdgeUnits whose agents dial it.
	Units []string
	// Dir holds certificates, kubeconfig and logs of the processes.
	Dir string
	// Binaries is where tunnel-server and tunnel-agent came from.
	Binaries string
	// ServingSecret is the Secret (namespace/name) the server's certificate
	// comes from.
	ServingSecret string
	// Listeners of the server.
	AgentAddress, ConnectSocket, PassthroughAddress, HealthAddress string
	// AllowedPorts are the node ports the agents may open.
	AllowedPorts []int32
	Server       *process
	Agents       []*TunnelAgent
}

// TunnelAgent is one agent process and the identity it holds.
type TunnelAgent struct {
	Node string
	// CertFile holds the node's tunnel-agent certificate and key, issued
	// through the CSR API.
	CertFile string
	Process  *process
}

// tunnelPlan is what the samples ask for: which endpoint, for which units
// and nodes.
type tunnelPlan struct {
	endpoint     string
	units        []string
	nodes        []string
	allowedPorts []int32
}

// planTunnel picks the TunnelEndpoint that the first EdgeUnit with a tunnel
// uses (by name), every unit using it and their nodes. ok is false when no
// unit has a tunnel or its endpoint does not exist.
func planTunnel(ctx context.Context, c client.Reader) (tunnelPlan, bool, error) {
	var units edgev1.EdgeUnitList
	if err := c.List(ctx, &units); err != nil {
		return tunnelPlan{}, false, fmt.Errorf("listing EdgeUnits: %w", err)
	}
	slices.SortFunc(units.Items, func(a, b edgev1.EdgeUnit) int { return strings.Compare(a.Name, b.Name) })
	var p tunnelPlan
	var pools []string
	for _, u := range units.Items {
		if u.Spec.Tunnel == nil || (p.endpoint != "" && u.Spec.Tunnel.Endpoint != p.endpoint) {
			continue
		}
		p.endpoint = u.Spec.Tunnel.Endpoint
		p.units = append(p.units, u.Name)
		pools = append(pools, u.Spec.NodePools...)
		for _, port := range u.Spec.Tunnel.AllowedPorts {
			if !slices.Contains(p.allowedPorts, port) {
				p.allowedPorts = append(p.allowedPorts, port)
			}
		}
	}
	if p.endpoint == "" || len(pools) == 0 {
		return p, false, nil
	}
	if err := c.Get(ctx, client.ObjectKey{Name: p.endpoint}, &edgev1.TunnelEndpoint{}); apierrors.IsNotFound(err) {
		return p, false, nil
	} else if err != nil {
		return p, false, fmt.Errorf("getting TunnelEndpoint %s: %w", p.endpoint, err)
	}
	if len(p.allowedPorts) == 0 {
		p.allowedPorts = []int32{10250}
	}
	slices.Sort(p.allowedPorts)
	req, err := labels.NewRequirement(edgev1.LabelNodePool, selection.In, pools)
	if err != nil {
		return p, false, err
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes, client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*req)}); err != nil {
		return p, false, fmt.Errorf("listing the units' nodes: %w", err)
	}
	for _, n := range nodes.Items {
		p.nodes = append(p.nodes, n.Name)
	}
	slices.Sort(p.nodes)
	return p, len(p.nodes) > 0, nil
}

// startTunnel runs the tunnel for the samples' first EdgeUnit with a
// tunnel: the server with the serving certificate the manager issued, an
// agent per node with an identity from the CSR API, and waits until the
// TunnelEndpoint lists every agent and the units say TunnelConnected. It
// returns nil, nil when the samples ask for no tunnel.
func (d *Demo) startTunnel(ctx context.Context) (*Tunnel, error) {
	plan, ok, err := planTunnel(ctx, d.Client)
	if err != nil || !ok {
		return nil, err
	}
	t := &Tunnel{Endpoint: plan.endpoint, Units: plan.units, AllowedPorts: plan.allowedPorts, Dir: filepath.Join(d.WorkDir, "tunnel")}
	if err := os.Mkdir(t.Dir, 0o700); err != nil {
		return nil, err
	}
	bins, err := findBinaries(ctx, d.opts.BinDir, filepath.Join(d.WorkDir, "bin"), func(msg string) { d.printf("%s\n", msg) })
	if err != nil {
		return nil, err
	}
	t.Binaries = fmt.Sprintf("%s (%s)", bins.Dir, bins.Source)

	serverDir := filepath.Join(t.Dir, "server")
	if err := os.Mkdir(serverDir, 0o700); err != nil {
		return nil, err
	}
	secret := client.ObjectKey{Namespace: controllers.DefaultNamespace, Name: tunnelendpoint.SecretName(plan.endpoint)}
	t.ServingSecret = secret.String()
	crt, key, ca, err := d.writeServingSecret(ctx, secret, serverDir)
	if err != nil {
		return nil, err
	}
	serverKubeconfig, err := d.tunnelServerCredentials(ctx, serverDir)
	if err != nil {
		return nil, err
	}

	// The identities are issued while the server starts.
	var (
		wg       sync.WaitGroup
		certErr  error
		certFile map[string]string
	)
	wg.Go(func() { certFile, certErr = d.issueAgentIdentities(ctx, plan.nodes, t.Dir) })
	err = d.startTunnelServer(ctx, t, bins, serverKubeconfig, crt, key, ca)
	wg.Wait()
	if err := errors.Join(err, certErr); err != nil {
		return t, err
	}
	d.printf("Issued tunnel-agent identities for %s through the CSR API: requested as system:node:<node>, approved and signed by the manager\n", strings.Join(plan.nodes, ", "))

	for _, node := range plan.nodes {
		a, err := d.startTunnelAgent(t, bins, node, certFile[node], ca)
		if err != nil {
			return t, err
		}
		t.Agents = append(t.Agents, a)
	}
	pids := make([]string, 0, len(t.Agents))
	for _, a := range t.Agents {
		pids = append(pids, fmt.Sprintf("%s pid %d", a.Node, a.Process.PID))
	}
	d.printf("Started %d tunnel-agents dialling %s (%s)\n", len(t.Agents), t.AgentAddress, strings.Join(pids, ", "))

	if err := d.waitTunnelConnected(ctx, t, d.opts.ReadyTimeout); err != nil {
		return t, err
	}
	d.printf("TunnelEndpoint %s lists %d connected agents; TunnelConnected is True on EdgeUnit %s\n", t.Endpoint, len(t.Agents), strings.Join(t.Units, ", "))
	return t, nil
}

// writeServingSecret waits for the TunnelEndpoint controller's serving
// Secret and writes its certificate, key and CA into dir.
func (d *Demo) writeServingSecret(ctx context.Context, key client.ObjectKey, dir string) (crt, tlsKey, ca string, err error) {
	var sec corev1.Secret
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, servingSecretTimeout, true, func(ctx context.Context) (bool, error) {
		lastErr = d.Client.Get(ctx, key, &sec)
		if lastErr != nil {
			return false, nil
		}
		for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, corev1.ServiceAccountRootCAKey} {
			if len(sec.Data[k]) == 0 {
				lastErr = fmt.Errorf("the Secret has no %s yet", k)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return "", "", "", fmt.Errorf("waiting for the TunnelEndpoint's serving Secret %s: %w", key, errors.Join(err, lastErr))
	}
	paths := map[string]string{}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, corev1.ServiceAccountRootCAKey} {
		p := filepath.Join(dir, k)
		if err := os.WriteFile(p, sec.Data[k], 0o600); err != nil {
			return "", "", "", err
		}
		paths[k] = p
	}
	return paths[corev1.TLSCertKey], paths[corev1.TLSPrivateKeyKey], paths[corev1.ServiceAccountRootCAKey], nil
}

// tunnelServerCredentials gives the tunnel-server the identity of the
// ServiceAccount its Deployment runs as, with the RBAC `make deploy`
// installs for it (config/rbac/tunnel_server.yaml), and writes its
// kubeconfig. So the demo also shows that this RBAC is enough.
func (d *Demo) tunnelServerCredentials(ctx context.Context, dir string) (string, error) {
	sa := deployNamePrefix + "tunnel-server"
	if sa != tunnelendpoint.DefaultServiceAccount {
		return "", fmt.Errorf("the tunnel-server's ServiceAccount is %s, but config/default would name it %s", tunnelendpoint.DefaultServiceAccount, sa)
	}
	if err := d.applyTunnelServerRBAC(ctx, filepath.Join(d.opts.ConfigDir, tunnelServerRBACFile)); err != nil {
		return "", err
	}
	ns := controllers.DefaultNamespace
	user, err := d.env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
	}, nil)
	if err != nil {
		return "", fmt.Errorf("provisioning the tunnel-server's credentials: %w", err)
	}
	raw, err := kubeconfigFor(user.Config())
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "kubeconfig")
	return p, os.WriteFile(p, raw, 0o600)
}

// applyTunnelServerRBAC applies the ClusterRole and ClusterRoleBinding of
// the file as config/default renders them: names prefixed, the
// ServiceAccount in the manager's namespace.
func (d *Demo) applyTunnelServerRBAC(ctx context.Context, file string) error {
	docs, err := readDocuments(file)
	if err != nil {
		return fmt.Errorf("reading the tunnel-server's RBAC: %w", err)
	}
	applied := 0
	for i, doc := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return fmt.Errorf("decoding %s#%d: %w", file, i+1, err)
		}
		switch u.GetKind() {
		case "ClusterRole":
		case "ClusterRoleBinding":
			if err := renderBinding(u); err != nil {
				return fmt.Errorf("%s#%d: %w", file, i+1, err)
			}
		default:
			continue
		}
		u.SetName(deployNamePrefix + u.GetName())
		if err := d.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s from %s: %w", u.GetKind(), u.GetName(), file, err)
		}
		applied++
	}
	if applied < 2 {
		return fmt.Errorf("%s holds no ClusterRole and ClusterRoleBinding for the tunnel-server", file)
	}
	return nil
}

// renderBinding prefixes a binding's role and ServiceAccount names and puts
// the ServiceAccounts into the manager's namespace, as kustomize does.
func renderBinding(u *unstructured.Unstructured) error {
	var b rbacv1.ClusterRoleBinding
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
		return err
	}
	b.RoleRef.Name = deployNamePrefix + b.RoleRef.Name
	for i := range b.Subjects {
		if b.Subjects[i].Kind == rbacv1.ServiceAccountKind {
			b.Subjects[i].Name = deployNamePrefix + b.Subjects[i].Name
			b.Subjects[i].Namespace = controllers.DefaultNamespace
		}
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&b)
	if err != nil {
		return err
	}
	u.Object = obj
	return nil
}

// issueAgentIdentities gets each node's tunnel-agent certificate the way
// a node does: a CSR created with the node's credential (system:node:<node>,
// provisioned here as the kubelet's would be), approved and signed by the
// manager's certificate controllers. It returns the file of each node's
// certificate and key.
func (d *Demo) issueAgentIdentities(ctx context.Context, nodes []string, dir string) (map[string]string, error) {
	role := rbacv1ac.ClusterRole(nodeCSRRole).WithRules(rbacv1ac.PolicyRule().
		WithAPIGroups("certificates.k8s.io").
		WithResources("certificatesigningrequests").
		WithVerbs("create", "get", "list", "watch"))
	binding := rbacv1ac.ClusterRoleBinding(nodeCSRRole).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(nodeCSRRole)).
		WithSubjects(rbacv1ac.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.GroupKind).WithName("system:nodes"))
	for _, obj := range []runtime.ApplyConfiguration{role, binding} {
		if err := d.Client.Apply(ctx, obj, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("letting nodes request certificates: %w", err)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	var (
		mu    sync.Mutex
		files = map[string]string{}
		errs  []error
		wg    sync.WaitGroup
	)
	for _, node := range nodes {
		user, err := d.env.AddUser(envtest.User{Name: "system:node:" + node, Groups: []string{"system:nodes"}}, nil)
		if err != nil {
			return nil, fmt.Errorf("provisioning the credential of node %s: %w", node, err)
		}
		cs, err := kubernetes.NewForConfig(user.Config())
		if err != nil {
			return nil, err
		}
		r, err := csr.New(csr.Config{
			Client:       cs,
			Identity:     certs.TunnelAgentIdentity,
			Node:         node,
			Dir:          filepath.Join(dir, node),
			IssueTimeout: identityTimeout,
		})
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			err := r.Ensure(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("issuing the tunnel-agent identity of node %s: %w", node, err))
				return
			}
			files[node] = r.Path()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return files, nil
}

// serverStartAttempts bounds the retries of a tunnel-server that lost one
// of its free ports to another process before it could bind it.
const serverStartAttempts = 3

// startTunnelServer starts tunnel-server on free loopback ports and waits
// until it has synced the Nodes it routes to.
func (d *Demo) startTunnelServer(ctx context.Context, t *Tunnel, bins binaries, kubeconfig, crt, key, ca string) error {
	var err error
	for range serverStartAttempts {
		var retry bool
		if retry, err = d.launchTunnelServer(ctx, t, bins, kubeconfig, crt, key, ca); !retry {
			break
		}
	}
	if err != nil {
		return err
	}
	d.printf("Started tunnel-server (pid %d) for TunnelEndpoint %s: agents dial %s, certificate from Secret %s\n", t.Server.PID, t.Endpoint, t.AgentAddress, t.ServingSecret)
	return nil
}

// launchTunnelServer makes one attempt; retry says the ports were taken.
func (d *Demo) launchTunnelServer(ctx context.Context, t *Tunnel, bins binaries, kubeconfig, crt, key, ca string) (retry bool, _ error) {
	addrs, err := freeLoopbackAddresses(3)
	if err != nil {
		return false, err
	}
	t.AgentAddress, t.PassthroughAddress, t.HealthAddress = addrs[0], addrs[1], addrs[2]
	t.ConnectSocket = filepath.Join(t.Dir, "server", "connect.sock")
	args := []string{
		"--id=" + demoServerID,
		"--agent-address=" + t.AgentAddress,
		"--agent-cert-file=" + crt,
		"--agent-key-file=" + key,
		"--agent-client-ca-file=" + ca,
		// kube-apiserver's egress selector would use the socket; no TCP
		// CONNECT listener is needed on this machine.
		"--connect-address=",
		"--connect-uds=" + t.ConnectSocket,
		"--passthrough-address=" + t.PassthroughAddress,
		"--health-address=" + t.HealthAddress,
		"--kubeconfig=" + kubeconfig,
		"--tunnel-endpoint=" + t.Endpoint,
		"--status-interval=" + demoStatusInterval,
		"--heartbeat-interval=" + demoHeartbeatInterval,
	}
	logPath := filepath.Join(t.Dir, "tunnel-server.log")
	p, err := d.procs.start("tunnel-server", bins.path("tunnel-server"), args, logPath)
	if err != nil {
		return false, err
	}
	t.Server = p
	portTaken := func() bool {
		raw, _ := os.ReadFile(logPath)
		return strings.Contains(string(raw), "address already in use")
	}
	readyz := "http://" + t.HealthAddress + "/readyz"
	hc := &http.Client{Timeout: httpProbeTimeout}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, serverReadyTimeout, true, func(ctx context.Context) (bool, error) {
		if exited, _ := p.Exited(); exited {
			return false, p.exitError()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, readyz, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			lastErr = err
			return false, nil
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			lastErr = fmt.Errorf("%s: %s", readyz, resp.Status)
			return false, nil
		}
		return true, nil
	})
	if err == nil {
		return false, nil
	}
	if exited, _ := p.Exited(); exited {
		return portTaken(), p.exitError()
	}
	return false, fmt.Errorf("waiting for tunnel-server (pid %d) to become ready: %w%s", p.PID, errors.Join(err, lastErr), logTail(p.Log, 15))
}

func (d *Demo) startTunnelAgent(t *Tunnel, bins binaries, node, certFile, ca string) (*TunnelAgent, error) {
	ports := make([]string, 0, len(t.AllowedPorts))
	for _, p := range t.AllowedPorts {
		ports = append(ports, strconv.Itoa(int(p)))
	}
	args := []string{
		"--node-name=" + node,
		"--servers=" + t.AgentAddress,
		"--cert-file=" + certFile,
		"--key-file=" + certFile,
		"--ca-file=" + ca,
		"--allowed-ports=" + strings.Join(ports, ","),
		"--backoff-max=" + demoBackoffMax,
	}
	p, err := d.procs.start("tunnel-agent "+node, bins.path("tunnel-agent"), args, filepath.Join(t.Dir, "tunnel-agent-"+node+".log"))
	if err != nil {
		return nil, err
	}
	return &TunnelAgent{Node: node, CertFile: certFile, Process: p}, nil
}

// tunnelPending says what keeps the tunnel from being shown as connected:
// agents the endpoint does not list, and units whose TunnelConnected is not
// True. Empty means connected.
func tunnelPending(te *edgev1.TunnelEndpoint, units []edgev1.EdgeUnit, nodes []string) []string {
	var out []string
	listed := map[string]bool{}
	for _, a := range te.Status.Agents {
		listed[a.Node] = true
	}
	var missing []string
	for _, n := range nodes {
		if !listed[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		out = append(out, fmt.Sprintf("TunnelEndpoint %s does not list the agents of %s (connectedAgents %d)", te.Name, strings.Join(missing, ", "), te.Status.ConnectedAgents))
	}
	for _, u := range units {
		c := meta.FindStatusCondition(u.Status.Conditions, edgev1.ConditionTunnelConnected)
		switch {
		case c == nil:
			out = append(out, fmt.Sprintf("EdgeUnit %s has no %s condition yet", u.Name, edgev1.ConditionTunnelConnected))
		case c.Status != "True":
			out = append(out, fmt.Sprintf("EdgeUnit %s: %s is %s: %s", u.Name, edgev1.ConditionTunnelConnected, c.Status, c.Message))
		}
	}
	return out
}

// waitTunnelConnected polls until tunnelPending is empty, failing early
// when a tunnel process exits.
func (d *Demo) waitTunnelConnected(ctx context.Context, t *Tunnel, timeout time.Duration) error {
	nodes := make([]string, 0, len(t.Agents))
	for _, a := range t.Agents {
		nodes = append(nodes, a.Node)
	}
	var pending []string
	procs := []*process{t.Server}
	for _, a := range t.Agents {
		procs = append(procs, a.Process)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, p := range procs {
			if exited, _ := p.Exited(); exited {
				return false, p.exitError()
			}
		}
		var te edgev1.TunnelEndpoint
		if err := d.Client.Get(ctx, client.ObjectKey{Name: t.Endpoint}, &te); err != nil {
			pending = []string{err.Error()}
			return false, nil
		}
		units := make([]edgev1.EdgeUnit, 0, len(t.Units))
		for _, name := range t.Units {
			var u edgev1.EdgeUnit
			if err := d.Client.Get(ctx, client.ObjectKey{Name: name}, &u); err != nil {
				pending = []string{err.Error()}
				return false, nil
			}
			units = append(units, u)
		}
		pending = tunnelPending(&te, units, nodes)
		return len(pending) == 0, nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(pending) == 0 || !wait.Interrupted(err) {
		return err
	}
	var tails strings.Builder
	for _, p := range procs {
		tails.WriteString(logTail(p.Log, 5))
	}
	return fmt.Errorf("the tunnel agents did not show as connected within %s (raise --ready-timeout): %s%s", timeout, strings.Join(pending, "; "), tails.String())
}

// freeLoopbackAddresses returns n distinct 127.0.0.1 addresses with ports
// that were free a moment ago: all are held open together so the kernel
// hands out different ones.
func freeLoopbackAddresses(n int) ([]string, error) {
	out := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out, nil
}
