//go:build linux

package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// NodeSpec is one edge node of the testbed.
type NodeSpec struct {
	// Name is the Node's name and the kubelet's identity.
	Name string
	// Pool is the NodePool it joins (label edge.edgeunit.io/nodepool,
	// set by its kubelet at registration).
	Pool string
	// Zone is its topology.kubernetes.io/zone, if any: the node
	// lifecycle controller judges outages zone by zone.
	Zone string
}

// Paths on every node, as its processes see them.
const (
	KubeletKubeconfig = "/etc/kubernetes/kubelet.conf"
	// HubKubeconfig is what the hub installer writes for node clients:
	// the hub's local listener.
	HubKubeconfig     = "/var/lib/edgeunit/hub/kubeconfig"
	kubeletPKI        = "/var/lib/kubelet/pki"
	kubeletConfig     = "/etc/kubernetes/kubelet-config.yaml"
	kubeProxyConfig   = "/etc/kubernetes/kube-proxy.yaml"
	containerdConfig  = "/etc/containerd/config.toml"
	containerdSocket  = "/run/containerd/containerd.sock"
	staticPodDir      = "/etc/kubernetes/manifests"
	kubeletClientCA   = "/etc/kubernetes/pki/kubelet-client-ca.crt"
	kubeletClientPEM  = kubeletPKI + "/kubelet-client-current.pem"
	cniConfDir        = "/etc/cni/net.d"
	cniBinDir         = "/opt/cni/bin"
	netbindSocket     = "unix:///var/run/edgeunit/netbind.sock"
	containerdNS      = "k8s.io"
	processStopGrace  = 10 * time.Second
	processKillBound  = 30 * time.Second
	containerdTimeout = 60 * time.Second
	// systemdJobTimeout bounds a kubelet restart that node conversion
	// asks the node's systemd for, waiting included: beyond a stop that
	// ends in a kill (its grace, then the kill bound) and a power cut or
	// boot that holds the node meanwhile.
	systemdJobTimeout = 2 * time.Minute
)

// nodeDirs are the node's own directories: each is bound over the same
// path in the node's mount namespace, from a directory of the testbed.
var nodeDirs = []string{
	"/etc/kubernetes", "/etc/containerd", cniConfDir, cniBinDir,
	"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/edgeunit", "/var/lib/cni",
	"/var/log/pods", "/var/log/containers",
}

// kernelTunables are the sysctls the kubelet sets when they differ from
// these values. The node's mount namespace covers each with a file holding
// this value, so the kubelet finds them set and never writes the
// machine's.
var kernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// Node is an edge node: a network namespace linked to the cloud, a mount
// namespace with a node's own disk and a tmpfs /run, a cgroup tree, and
// containerd and a real kubelet in them.
type Node struct {
	NodeSpec
	// IP is the node's address on its link (its InternalIP).
	IP string
	// PodCIDR is the range its pods get addresses from.
	PodCIDR string
	// Dir is the node's disk on this machine.
	Dir string

	tb         *Testbed
	index      int
	net        *nodeNet
	mntns      string
	cg, system *cgroup

	// mu serialises starting and stopping the node's processes and
	// guards what they leave here: node conversion restarts the kubelet
	// through the systemd stand-in's goroutine while a spec may restart
	// it, cut the power or stop the node.
	mu         sync.Mutex
	containerd *Proc
	kubelet    *Proc
	kubeProxy  *Proc
	// kubeletStarted is when the running kubelet was started;
	// kubeletStarts counts its starts.
	kubeletStarted time.Time
	kubeletStarts  int
	booted         bool
}

// path is where a node path lives on this machine.
func (n *Node) path(p string) string { return filepath.Join(n.Dir, p) }

// systemdDir holds the node's systemd stand-in's socket; the node sees
// it as /run/systemd.
func (n *Node) systemdDir() string { return filepath.Join(n.Dir, "systemd") }

func (tb *Testbed) newNode(spec NodeSpec, index int) (*Node, error) {
	n := &Node{NodeSpec: spec, tb: tb, index: index, Dir: filepath.Join(tb.Dir, "nodes", spec.Name)}
	var err error
	if n.net, err = newNodeNet(tb.id, index, tb.cloudNet.bridge); err != nil {
		return nil, err
	}
	tb.teardown(fmt.Sprintf("network of node %s", n.Name), n.net.close)
	n.IP, n.PodCIDR = n.net.ip, n.net.podCIDR
	if n.cg, err = newCgroup(filepath.Join(tb.cgroupBase, n.Name)); err != nil {
		return nil, err
	}
	tb.teardown(fmt.Sprintf("cgroups of node %s", n.Name), func() error {
		return errors.Join(n.cg.killAll(processKillBound), n.cg.removeAll(processKillBound))
	})
	if n.system, err = n.cg.child("system"); err != nil {
		return nil, err
	}
	if err := n.writeDisk(); err != nil {
		return nil, fmt.Errorf("preparing the disk of node %s: %w", n.Name, err)
	}
	// Before the mount namespace, which binds its directory.
	if err := n.serveSystemd(); err != nil {
		return nil, fmt.Errorf("systemd stand-in of node %s: %w", n.Name, err)
	}
	if err := n.makeMountNS(); err != nil {
		return nil, fmt.Errorf("mount namespace of node %s: %w", n.Name, err)
	}
	return n, nil
}

// serveSystemd starts the node's stand-in for systemd's private D-Bus
// socket, through which node conversion restarts the kubelet, as it does
// on a real node. Its log is the node's systemd.log.
func (n *Node) serveSystemd() error {
	logf, err := logFile(filepath.Join(n.tb.LogDir, n.Name), "systemd.log")
	if err != nil {
		return err
	}
	units := map[string]func() error{"kubelet.service": n.RestartKubelet}
	sd, err := startSystemdStandIn(filepath.Join(n.systemdDir(), "private"), units, systemdJobTimeout, func(format string, args ...any) {
		fmt.Fprintf(logf, "%s %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
	})
	if err != nil {
		_ = logf.Close()
		return err
	}
	n.tb.teardown("systemd stand-in of node "+n.Name, func() error { return errors.Join(sd.close(), logf.Close()) })
	return nil
}

// writeDisk lays out what a provisioned node has on disk: credentials,
// kubelet and containerd configuration, CNI plugins and configuration.
func (n *Node) writeDisk() error {
	for _, d := range nodeDirs {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(n.path(staticPodDir), 0o755); err != nil {
		return err
	}
	user, err := n.tb.Cloud.nodeCredentials(n.Name)
	if err != nil {
		return err
	}
	// As kubeadm lays it out: the CA inline in kubelet.conf, which names
	// the kubelet's certificate and key in one file under its PKI
	// directory (the hub and the tunnel agent mount exactly these two).
	clientPEM := append(append([]byte{}, user.CertData...), user.KeyData...)
	files := map[string][]byte{
		kubeletClientPEM:                         clientPEM,
		kubeletClientCA:                          n.tb.Cloud.kubeletClientCA,
		kubeletConfig:                            []byte(n.kubeletConfiguration()),
		containerdConfig:                         []byte(n.containerdConfiguration()),
		cniConfDir + "/10-edgeunit-e2e.conflist": []byte(n.cniConfiguration()),
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cloud"] = &clientcmdapi.Cluster{Server: n.tb.Cloud.APIServerURL, CertificateAuthorityData: user.CAData}
	kc.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificate: kubeletClientPEM, ClientKey: kubeletClientPEM}
	kc.Contexts["node"] = &clientcmdapi.Context{Cluster: "cloud", AuthInfo: "node"}
	kc.CurrentContext = "node"
	if files[KubeletKubeconfig], err = clientcmd.Write(*kc); err != nil {
		return err
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(n.path(p)), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if p == kubeletClientPEM {
			mode = 0o600
		}
		if err := os.WriteFile(n.path(p), b, mode); err != nil {
			return err
		}
	}
	for name, src := range n.tb.assets.cniPlugins() {
		if err := os.Symlink(src, n.path(filepath.Join(cniBinDir, name))); err != nil {
			return err
		}
	}
	for key, v := range kernelTunables {
		p := filepath.Join(n.Dir, "sysctl", strings.ReplaceAll(key, "/", "."))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) kubeletConfiguration() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 machines, a cgroup tree of the node's own.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix://%[2]s
staticPodPath: %[3]s
address: %[4]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[5]s}
authorization:
  mode: Webhook
failSwapOn: false
# Renewed every 5 s (a quarter of it): a node on a loaded 2-core machine
# stays well within kube-controller-manager's grace period.
nodeLeaseDurationSeconds: 20
resolvConf: ""
protectKernelDefaults: false
serializeImagePulls: false
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.cg.rel, containerdSocket, staticPodDir, n.IP, kubeletClientCA)
}

func (n *Node) containerdConfiguration() string {
	return fmt.Sprintf(`version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = %[1]q

# On the node's own disk, not the machine's /opt/containerd.
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %[2]q

[plugins."io.containerd.cri.v1.runtime"]
  # Root here lacks CAP_SYS_RESOURCE: never lower a process's OOM score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%[3]q]
    conf_dir = %[4]q
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = %[5]q
      SystemdCgroup = false
`, containerdSocket, PauseImage, cniBinDir, cniConfDir, n.tb.assets.runc)
}

// cniConfiguration is a plain bridge network whose addresses come from
// edge-ipam (the unit's pod IP bindings, through the hub) over host-local.
func (n *Node) cniConfiguration() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "edgeunit-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "edge-ipam",
        "hub": %q,
        "timeout": "1s",
        "delegate": {
          "type": "host-local",
          "dataDir": "/var/lib/cni/networks",
          "ranges": [[{"subnet": %q}]],
          "routes": [{"dst": "0.0.0.0/0"}]
        }
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, netbindSocket, n.PodCIDR)
}

// makeMountNS creates the node's persistent mount namespace: private
// propagation, the node's directories bound over the machine's, a tmpfs
// /run, and the kernel tunables covered.
func (n *Node) makeMountNS() error {
	// Mount points first: they are removed after the namespace is gone.
	for _, d := range nodeDirs {
		if err := n.tb.ensureHostDir(d); err != nil {
			return err
		}
	}
	n.mntns = filepath.Join(n.tb.nsDir, n.Name+".mnt")
	if err := os.WriteFile(n.mntns, nil, 0o600); err != nil {
		return err
	}
	if _, err := run("unshare", "--mount="+n.mntns, "--propagation", "private", "true"); err != nil {
		return err
	}
	n.tb.teardown(fmt.Sprintf("mount namespace of node %s", n.Name), func() error {
		_, err := run("umount", n.mntns)
		return err
	})
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, d := range nodeDirs {
		fmt.Fprintf(&script, "mount --bind %s %s\n", shellQuote(n.path(d)), shellQuote(d))
	}
	for key := range kernelTunables {
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", shellQuote(filepath.Join(n.Dir, "sysctl", strings.ReplaceAll(key, "/", "."))), key)
	}
	script.WriteString(n.freshRun())
	_, err := run("nsenter", "--mount="+n.mntns, "--", "/bin/sh", "-c", script.String())
	return err
}

// freshRun is a script that mounts an empty tmpfs on /run, as a boot
// does (/var/run is a link to it), and binds the systemd stand-in's
// directory on /run/systemd. That holds only the private socket: a
// /run/systemd/system would tell runc and others that systemd runs the
// node (sd_booted(3)), which it doesn't.
func (n *Node) freshRun() string {
	return "mount -t tmpfs -o mode=0755,size=256m tmpfs /run\nmkdir -p /run/netns /run/edgeunit /run/systemd\n" +
		fmt.Sprintf("mount --bind %s /run/systemd\n", shellQuote(n.systemdDir()))
}

// inNode is argv run inside the node's mount and network namespaces.
func (n *Node) inNode(argv ...string) []string {
	return append([]string{"nsenter", "--mount=" + n.mntns, "--net=" + n.net.nsPath(), "--"}, argv...)
}

// Exec runs a command inside the node and returns its output.
func (n *Node) Exec(argv ...string) (string, error) { return run(n.inNode(argv...)...) }

// Get is an HTTP GET of url from inside the node (its network namespace),
// with userAgent when set; it returns the body of a 200 answer.
func (n *Node) Get(url, userAgent string) (string, error) {
	argv := []string{n.tb.assets.e2e("testapp"), "get", url}
	if userAgent != "" {
		argv = append(argv, userAgent)
	}
	return n.Exec(argv...)
}

// Boot starts containerd (importing the images on the first boot) and
// the kubelet. The kubelet talks to whatever its kubeconfig names: the
// hub on a converted node, else the apiserver.
func (n *Node) Boot(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var err error
	n.containerd, err = startProc("containerd "+n.Name, filepath.Join(n.tb.LogDir, n.Name, "containerd.log"), n.system,
		[]string{"PATH=" + n.tb.assets.nodeBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		n.inNode(filepath.Join(n.tb.assets.nodeBin, "containerd"), "--config", containerdConfig)...)
	if err != nil {
		return err
	}
	if err := Poll(ctx, containerdTimeout, func() (bool, error) {
		if exited, err := n.containerd.Exited(); exited {
			return false, fmt.Errorf("containerd of node %s exited: %v%s", n.Name, err, n.containerd.Tail(20))
		}
		_, err := n.ctr("version")
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("waiting for containerd of node %s: %w%s", n.Name, err, n.containerd.Tail(20))
	}
	if !n.booted {
		for _, img := range n.tb.assets.images {
			if _, err := n.ctr("images", "import", img); err != nil {
				return fmt.Errorf("importing %s into node %s: %w", img, n.Name, err)
			}
		}
		n.booted = true
	}
	return n.startKubelet()
}

func (n *Node) ctr(args ...string) (string, error) {
	return n.Exec(append([]string{filepath.Join(n.tb.assets.nodeBin, "ctr"), "--address", containerdSocket, "-n", containerdNS}, args...)...)
}

// startKubelet starts the kubelet with its kubeconfig, kubeadm's
// kubelet.conf, which node conversion switches; n.mu is held.
func (n *Node) startKubelet() error {
	labels := "edge.edgeunit.io/nodepool=" + n.Pool
	if n.Zone != "" {
		labels += ",topology.kubernetes.io/zone=" + n.Zone
	}
	var err error
	n.kubeletStarted = time.Now()
	n.kubeletStarts++
	n.kubelet, err = startProc("kubelet "+n.Name, filepath.Join(n.tb.LogDir, n.Name, "kubelet.log"), n.system, nil,
		n.inNode(n.tb.assets.k8s("kubelet"),
			"--config="+kubeletConfig,
			"--kubeconfig="+KubeletKubeconfig,
			"--hostname-override="+n.Name,
			"--node-ip="+n.IP,
			"--node-labels="+labels,
			"--v=2",
		)...)
	return err
}

// PointAtHub converts the node by hand, as a person or cloud-init would
// on a unit with nodeConversion Manual: `edge-hub convert` on the node,
// which restarts the kubelet through the node's systemd and returns once
// the node is Ready through the hub (or rolled back, an error).
func (n *Node) PointAtHub() error {
	return n.edgeHub("convert", "--wait=30s", "--conversion-timeout=60s")
}

// PointAtCloud reverts the node by hand: `edge-hub revert`.
func (n *Node) PointAtCloud() error { return n.edgeHub("revert") }

func (n *Node) edgeHub(verb string, args ...string) error {
	argv := append([]string{n.tb.assets.e2e("edge-hub"), verb, "--node-name=" + n.Name}, args...)
	if out, err := n.Exec(argv...); err != nil {
		return fmt.Errorf("edge-hub %s on node %s: %w\n%s", verb, n.Name, err, out)
	}
	return nil
}

// StartKubeProxy (re)starts a real kube-proxy on the node, in iptables
// mode in the node's network namespace, reading the cluster through the
// hub: the kubeconfig the hub installer wrote for node clients. It sets
// no machine-wide sysctl (conntrack limits and timeouts left alone) and
// masquerades all Service traffic, as the node's bridge does not pass
// through iptables.
func (n *Node) StartKubeProxy() error {
	if _, err := os.Stat(n.path(HubKubeconfig)); err != nil {
		return fmt.Errorf("the hub installer has not written %s on node %s: %w", HubKubeconfig, n.Name, err)
	}
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: %[1]s
clientConnection:
  kubeconfig: %[2]s
clusterCIDR: 10.244.0.0/16
iptables:
  masqueradeAll: true
  localhostNodePorts: false
  syncPeriod: 30s
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
oomScoreAdj: 0
`, n.Name, HubKubeconfig)
	if err := os.WriteFile(n.path(kubeProxyConfig), []byte(cfg), 0o644); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kubeProxy != nil {
		if err := n.kubeProxy.Stop(processStopGrace); err != nil {
			return err
		}
	}
	var err error
	n.kubeProxy, err = startProc("kube-proxy "+n.Name, filepath.Join(n.tb.LogDir, n.Name, "kube-proxy.log"), n.system,
		[]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		n.inNode(n.tb.assets.k8s("kube-proxy"), "--config="+kubeProxyConfig, "--v=2")...)
	return err
}

// StopKubeProxy stops the node's kube-proxy and removes every rule it
// programmed (kube-proxy --cleanup), as a fresh boot would find them.
func (n *Node) StopKubeProxy() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kubeProxy != nil {
		if err := n.kubeProxy.Stop(processStopGrace); err != nil {
			return err
		}
		n.kubeProxy = nil
	}
	if out, err := n.Exec(n.tb.assets.k8s("kube-proxy"), "--cleanup"); err != nil {
		return fmt.Errorf("kube-proxy --cleanup on node %s: %w\n%s", n.Name, err, out)
	}
	return nil
}

// ReadFile reads a file of the node's disk, by its path on the node.
func (n *Node) ReadFile(p string) ([]byte, error) { return os.ReadFile(n.path(p)) }

// LogTail is the end of one of the node's logs (kubelet, containerd,
// systemd), for a failure's description.
func (n *Node) LogTail(name string, lines int) string {
	return fmt.Sprintf("\n--- %s of node %s\n%s", name, n.Name, tail(filepath.Join(n.tb.LogDir, n.Name, name+".log"), lines))
}

// RestartKubelet stops the kubelet and starts it again with the same
// kubeconfig.
func (n *Node) RestartKubelet() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.restartKubelet()
}

// restartKubelet is RestartKubelet with n.mu held.
func (n *Node) restartKubelet() error {
	if n.kubelet != nil {
		if err := n.kubelet.Stop(processStopGrace); err != nil {
			return err
		}
	}
	return n.startKubelet()
}

// RSS is the resident memory of the node's processes whose command name
// (comm) is name, summed, in bytes.
func (n *Node) RSS(name string) (uint64, error) {
	var total uint64
	found := false
	for _, pid := range n.cg.pids() {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var kb uint64
				if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil {
					total += kb << 10
					found = true
				}
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("no process %q runs on node %s", name, n.Name)
	}
	return total, nil
}

// CutLink cuts the node's link to the cloud; RestoreLink mends it.
func (n *Node) CutLink() error     { return n.net.cut() }
func (n *Node) RestoreLink() error { return n.net.restore() }

// LinkBytes is what crossed the node's link to the cloud so far.
func (n *Node) LinkBytes() (uint64, error) {
	rx, tx, err := n.net.linkBytes()
	return rx + tx, err
}

// PowerCut kills everything on the node at once (kubelet, containerd,
// shims, containers) and then does what a reboot does: /run is empty, the
// dead containers' cgroups and mounts are gone. The disk stays.
func (n *Node) PowerCut() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var e errs
	e.add(n.cg.killAll(processKillBound))
	for _, p := range []*Proc{n.kubeProxy, n.kubelet, n.containerd} {
		if p != nil {
			e.add(p.Kill())
		}
	}
	n.kubeProxy = nil
	// Lazily: a dead container's mounts under /run and the kubelet's
	// volume mounts go, then a fresh /run.
	_, err := run("nsenter", "--mount="+n.mntns, "--", "/bin/sh", "-c",
		`findmnt -rn -o TARGET | grep -E '^/run(/|$)|^/var/lib/kubelet/' | sort -r | while read -r m; do umount -l "$m" || true; done
`+n.freshRun())
	e.add(err)
	e.add(n.cg.removeChildren(processKillBound))
	var cerr error
	n.system, cerr = n.cg.child("system")
	e.add(cerr)
	return e.err()
}

// stop stops the kubelet and containerd, then ends whatever is left in
// the node's cgroups (shims, containers).
func (n *Node) stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var e errs
	// A spec or benchmark that failed with the link cut: mend it first,
	// so the node's connections (kube-apiserver's to its hub and
	// kubelet) end cleanly and kube-apiserver stops without waiting on
	// them.
	e.add(n.net.restore())
	for _, p := range []*Proc{n.kubeProxy, n.kubelet, n.containerd} {
		if p != nil {
			e.add(p.Stop(processStopGrace))
		}
	}
	e.add(n.cg.killAll(processKillBound))
	return e.err()
}

// KubeletStarts counts the kubelet's starts on the node so far (boots,
// restarts by node conversion or a spec).
func (n *Node) KubeletStarts() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.kubeletStarts
}

// KubeletStarted is when the running kubelet was started.
func (n *Node) KubeletStarted() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.kubeletStarted
}

// HubURL is the hub's local listener, from the kubeconfig the installer
// wrote for node clients.
func (n *Node) HubURL() (string, error) {
	kc, err := clientcmd.LoadFromFile(n.path(HubKubeconfig))
	if err != nil {
		return "", err
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil || kc.Clusters[ctx.Cluster] == nil {
		return "", fmt.Errorf("%s names no cluster", HubKubeconfig)
	}
	return kc.Clusters[ctx.Cluster].Server, nil
}
