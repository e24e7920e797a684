// Package ipam is edge-ipam, the CNI IPAM plugin that gives a pod back its
// bound IP. On ADD it asks the edge hub for the pod's binding (namespace and
// name from CNI_ARGS) and has the delegate (host-local) allocate exactly
// that IP; with no binding, no answer from the hub, or the IP taken or out
// of range, it allocates a fresh one, which it chooses off the IPs bound to
// other pods of this node (fresh.go). Allocation, release and the
// uniqueness of IPs are host-local's: edge-ipam only chooses what to ask.
package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/edgeunit/edgeunit/internal/netbind/wire"
)

// Defaults.
const (
	DefaultHub      = "unix:///var/run/edgeunit/netbind.sock"
	DefaultTimeout  = time.Second
	DefaultDelegate = "host-local"
	maxTimeout      = 30 * time.Second
)

// Config is the "ipam" section of the network configuration.
type Config struct {
	// Type is "edge-ipam".
	Type string `json:"type"`
	// Hub is the hub's binding server: unix:///path or http://127.0.0.1:port.
	Hub string `json:"hub,omitempty"`
	// Timeout bounds the question to the hub ("1s").
	Timeout string `json:"timeout,omitempty"`
	// Delegate is the IPAM configuration of the allocating plugin
	// (host-local), passed to it as its "ipam" section; {"type":
	// "host-local"} when unset.
	Delegate json.RawMessage `json:"delegate,omitempty"`
	// Ranges and Routes are host-local's keys at this level: flannel's CNI
	// plugin writes its node subnet and routes here (it fills whatever
	// IPAM section it is given). They go into the delegate's section
	// unless it sets its own.
	Ranges json.RawMessage `json:"ranges,omitempty"`
	Routes json.RawMessage `json:"routes,omitempty"`
}

// parsed is a validated configuration.
type parsed struct {
	hubNetwork, hubAddr string
	timeout             time.Duration
	delegateType        string
	// netconf is the whole network configuration, as a map so the
	// delegate gets every other key unchanged.
	netconf map[string]json.RawMessage
	version string
	// explicit is set when the runtime already asks for specific IPs.
	explicit bool
}

func configError(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, "edge-ipam: "+fmt.Sprintf(format, a...), "")
}

// parseConfig validates stdin and CNI_ARGS.
func parseConfig(stdin []byte, cniArgs string) (*parsed, error) {
	var netconf map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &netconf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "edge-ipam: the network configuration is not valid JSON: "+err.Error(), "")
	}
	rawIPAM, ok := netconf["ipam"]
	if !ok {
		return nil, configError(`the network configuration has no "ipam" section`)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(rawIPAM)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, configError(`invalid "ipam" section: %v (known keys: type, hub, timeout, delegate, ranges, routes)`, err)
	}
	p := &parsed{netconf: netconf, timeout: DefaultTimeout}
	if v, ok := netconf["cniVersion"]; ok {
		_ = json.Unmarshal(v, &p.version)
	}
	hub := c.Hub
	if hub == "" {
		hub = DefaultHub
	}
	var err error
	if p.hubNetwork, p.hubAddr, err = parseHub(hub); err != nil {
		return nil, configError("%v", err)
	}
	if c.Timeout != "" {
		if p.timeout, err = time.ParseDuration(c.Timeout); err != nil || p.timeout <= 0 || p.timeout > maxTimeout {
			return nil, configError(`"timeout" %q must be a duration in (0, %s], such as "1s"`, c.Timeout, maxTimeout)
		}
	}
	d := map[string]json.RawMessage{}
	if len(c.Delegate) > 0 && string(c.Delegate) != "null" {
		if err := json.Unmarshal(c.Delegate, &d); err != nil || d == nil {
			return nil, configError(`"delegate" must be an object (the host-local IPAM configuration): %v`, err)
		}
	}
	for k, v := range map[string]json.RawMessage{"ranges": c.Ranges, "routes": c.Routes} {
		if _, set := d[k]; !set && len(v) > 0 && string(v) != "null" {
			d[k] = v
		}
	}
	p.delegateType = DefaultDelegate
	if t, ok := d["type"]; ok {
		if err := json.Unmarshal(t, &p.delegateType); err != nil || p.delegateType == "" {
			return nil, configError(`"delegate.type" must be a plugin name such as "host-local"`)
		}
	} else {
		d["type"], _ = json.Marshal(DefaultDelegate)
	}
	if p.delegateType == "edge-ipam" {
		return nil, configError(`"delegate.type" cannot be edge-ipam itself`)
	}
	if _, ok := d["ranges"]; !ok && p.delegateType == DefaultDelegate {
		if _, ok := d["subnet"]; !ok {
			return nil, configError(`no address range: set "delegate.ranges" (host-local's), or let flannel's CNI plugin fill "ranges"`)
		}
	}
	netconf["ipam"], _ = json.Marshal(d)
	p.explicit = requestsIPs(netconf, cniArgs)
	return p, nil
}

// parseHub accepts unix:///path, http://host:port and host:port; TCP must
// be loopback, where the hub listens.
func parseHub(s string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(s, "unix://"); ok {
		if !strings.HasPrefix(p, "/") {
			return "", "", fmt.Errorf(`"hub" %q: the socket path must be absolute (unix:///var/run/edgeunit/netbind.sock)`, s)
		}
		return "unix", p, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", "", fmt.Errorf(`"hub" %q: want unix:///path or http://127.0.0.1:port`, s)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", "", fmt.Errorf(`"hub" %q: the hub listens on loopback only`, s)
	}
	if u.Port() == "" {
		return "", "", fmt.Errorf(`"hub" %q: a port is required`, s)
	}
	return "tcp", u.Host, nil
}

// requestsIPs says whether the runtime already asks for specific IPs (the
// "ips" capability, args.cni.ips, or CNI_ARGS IP=): that request wins.
func requestsIPs(netconf map[string]json.RawMessage, cniArgs string) bool {
	var rc struct {
		IPs []string `json:"ips"`
	}
	if v, ok := netconf["runtimeConfig"]; ok && json.Unmarshal(v, &rc) == nil && len(rc.IPs) > 0 {
		return true
	}
	var args struct {
		CNI struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	}
	if v, ok := netconf["args"]; ok && json.Unmarshal(v, &args) == nil && len(args.CNI.IPs) > 0 {
		return true
	}
	return argValue(cniArgs, "IP") != ""
}

// argValue reads one key of CNI_ARGS ("K=V;K2=V2"), whatever else is there.
func argValue(cniArgs, key string) string {
	for _, kv := range strings.Split(cniArgs, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// delegateConf returns the delegate's configuration asking for ips (none:
// the delegate chooses) through the "ips" runtime configuration, which
// host-local honours.
func (p *parsed) delegateConf(ips ...string) ([]byte, error) {
	conf := make(map[string]json.RawMessage, len(p.netconf)+1)
	for k, v := range p.netconf {
		conf[k] = v
	}
	if len(ips) > 0 {
		rc := map[string]json.RawMessage{}
		if v, ok := conf["runtimeConfig"]; ok {
			if err := json.Unmarshal(v, &rc); err != nil {
				return nil, configError(`"runtimeConfig" must be an object: %v`, err)
			}
		}
		rc["ips"], _ = json.Marshal(ips)
		conf["runtimeConfig"], _ = json.Marshal(rc)
	}
	return json.Marshal(conf)
}

// Plugin is edge-ipam's commands. Exec and Stderr are for tests.
type Plugin struct {
	// Exec runs the delegate; nil is the default (CNI_PATH lookup).
	Exec invoke.Exec
	// Stderr receives the plugin's notes (the runtime logs them).
	Stderr io.Writer
	// Stdout receives the result.
	Stdout io.Writer
}

func (pl *Plugin) logf(format string, a ...any) {
	w := pl.Stderr
	if w == nil {
		w = os.Stderr
	}
	fmt.Fprintf(w, "edge-ipam: "+format+"\n", a...)
}

// Add allocates the pod's bound IP, or a fresh one.
func (pl *Plugin) Add(args *skel.CmdArgs) error {
	p, err := parseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ns, name := argValue(args.Args, "K8S_POD_NAMESPACE"), argValue(args.Args, "K8S_POD_NAME")
	var bound string
	// avoidBound: choose a fresh IP off the other pods' bound IPs.
	avoidBound := !p.explicit
	switch {
	case p.explicit:
		// The runtime asked for specific IPs: pass them on untouched.
	case ns == "" || name == "":
		pl.logf("no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS: allocating a fresh IP")
	default:
		bound, err = lookup(ctx, p, ns, name)
		if err != nil {
			// The hub did not answer: do not wait for it a second time.
			avoidBound = false
			pl.logf("asking the hub for the IP of pod %s/%s failed, allocating a fresh IP that may be bound to another pod: %v", ns, name, err)
		}
	}
	if bound != "" {
		conf, err := p.delegateConf(bound)
		if err != nil {
			return err
		}
		res, err := invoke.DelegateAdd(ctx, p.delegateType, conf, pl.Exec)
		if err == nil {
			return pl.print(res, p.version)
		}
		// Taken by another sandbox, outside this node's range (the pod
		// moved), or the gateway: a fresh IP is better than no pod.
		pl.logf("the bound IP %s of pod %s/%s could not be allocated, allocating a fresh IP: %v", bound, ns, name, err)
	}
	if avoidBound {
		res, err := pl.addUnbound(ctx, p)
		if err != nil {
			return err
		}
		if res != nil {
			return pl.print(res, p.version)
		}
	}
	conf, err := p.delegateConf()
	if err != nil {
		return err
	}
	res, err := invoke.DelegateAdd(ctx, p.delegateType, conf, pl.Exec)
	if err != nil {
		return err
	}
	return pl.print(res, p.version)
}

func (pl *Plugin) print(res types.Result, version string) error {
	if pl.Stdout == nil {
		return types.PrintResult(res, version)
	}
	out, err := res.GetAsVersion(version)
	if err != nil {
		return err
	}
	return out.PrintTo(pl.Stdout)
}

// Del releases whatever the delegate allocated for the container. It never
// asks the hub, so it works whatever the hub's state.
func (pl *Plugin) Del(args *skel.CmdArgs) error {
	p, err := parseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	conf, err := p.delegateConf()
	if err != nil {
		return err
	}
	return invoke.DelegateDel(context.Background(), p.delegateType, conf, pl.Exec)
}

// Check asks the delegate whether the container still has its IP.
func (pl *Plugin) Check(args *skel.CmdArgs) error {
	p, err := parseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	conf, err := p.delegateConf()
	if err != nil {
		return err
	}
	return invoke.DelegateCheck(context.Background(), p.delegateType, conf, pl.Exec)
}

// Status reports readiness: edge-ipam can serve ADD whenever its
// configuration is valid, since a missing hub only costs the binding.
func (pl *Plugin) Status(args *skel.CmdArgs) error {
	_, err := parseConfig(args.StdinData, args.Args)
	return err
}

// lookup asks the hub for the pod's IP; "" with a nil error when the pod
// has no binding.
func lookup(ctx context.Context, p *parsed, ns, name string) (string, error) {
	q := url.Values{"namespace": {ns}, "name": {name}}
	var a wire.PodIP
	found, err := hubGet(ctx, p, wire.PodIPPath+"?"+q.Encode(), &a)
	if err != nil || !found {
		return "", err
	}
	if net.ParseIP(a.IP) == nil {
		return "", fmt.Errorf("the hub answered an invalid IP %q", a.IP)
	}
	return a.IP, nil
}

// boundIPs asks the hub for every IP bound to a pod of this node.
func boundIPs(ctx context.Context, p *parsed) (map[netip.Addr]bool, error) {
	var a wire.BoundIPs
	found, err := hubGet(ctx, p, wire.BoundIPsPath, &a)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("the hub does not serve %s (an older hub?)", wire.BoundIPsPath)
	}
	bound := make(map[netip.Addr]bool, len(a.IPs))
	for _, s := range a.IPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			bound[ip.Unmap()] = true
		}
	}
	return bound, nil
}

// hubGet asks the hub for pathQuery within the timeout and decodes a 200
// answer into v; found is false when the hub answers 404.
func hubGet(ctx context.Context, p *parsed, pathQuery string, v any) (found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	tr := &http.Transport{DisableKeepAlives: true}
	base := "http://" + p.hubAddr
	if p.hubNetwork == "unix" {
		base = "http://netbind"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.hubAddr)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+pathQuery, nil)
	if err != nil {
		return false, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return false, nil
	default:
		var e wire.Error
		_ = json.Unmarshal(body, &e)
		return false, fmt.Errorf("the hub answered %d: %s", resp.StatusCode, e.Message)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("decoding the hub's answer: %w", err)
	}
	return true, nil
}
