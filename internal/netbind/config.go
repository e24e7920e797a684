// Package netbind is the node side of network autonomy. The edge hub runs
// it next to its proxy:
//
//   - a durable copy of this node's bindings (its VTEP MAC and the IPs
//     bound to its pods), refreshed from the EdgeUnit's status while the
//     apiserver is reachable and served from disk while it is not, so a
//     node that reboots cut off still knows them;
//   - a VTEP enforcer that sets the VXLAN device's MAC (flannel.1 by
//     default) to the bound one at start, whenever the device reappears
//     (flannel restarted and recreated it), and on a periodic resync;
//   - the node annotation flannel.alpha.coreos.com/backend-data kept
//     equal to the bound MAC, patched while online and left pending
//     (retried on reconnect) while offline;
//   - a small HTTP server on a unix socket or loopback port answering
//     GET /v1/podip?namespace=..&name=.. for edge-ipam, from the durable
//     copy, so pods get their IP back offline too.
package netbind

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/edgeunit/edgeunit/internal/hubinstall"
)

// Defaults.
const (
	DefaultListen           = "unix:///var/run/edgeunit/netbind.sock"
	DefaultVTEPDevice       = "flannel.1"
	DefaultResyncInterval   = 30 * time.Second
	DefaultAnnotationResync = 5 * time.Minute
	// StateFileName is the durable copy's name under the data directory.
	StateFileName = "netbind.json"
)

// Options are the user-facing settings; the hub embeds them in its
// configuration file.
type Options struct {
	// Enabled turns network autonomy on in the hub.
	Enabled bool `json:"enabled,omitempty"`
	// UnitFile is the unit description the installer writes
	// (hubinstall.UnitFile: unit name, stablePodIPs, stableVTEPMAC,
	// vtepDevice). When set it supplies Unit and the switches.
	UnitFile string `json:"unitFile,omitempty"`
	// Listen is where edge-ipam asks for bindings: unix:///path or a
	// loopback host:port. Empty: no server.
	Listen string `json:"listen,omitempty"`
	// VTEPDevice overrides the unit's vtepDevice.
	VTEPDevice string `json:"vtepDevice,omitempty"`
}

// BindFlags registers the options on fs with prefix "netbind-".
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.Enabled, "netbind", o.Enabled, "enforce network autonomy: the bound VTEP MAC and pod IP bindings for edge-ipam")
	fs.StringVar(&o.UnitFile, "netbind-unit-file", o.UnitFile, "unit description written by the installer (unit.yaml)")
	fs.StringVar(&o.Listen, "netbind-listen", o.Listen, "address edge-ipam asks: unix:///path or loopback host:port (empty: off)")
	fs.StringVar(&o.VTEPDevice, "netbind-vtep-device", o.VTEPDevice, "VXLAN device whose MAC is kept (default: the unit's, else "+DefaultVTEPDevice+")")
}

// Config is everything a Service needs.
type Config struct {
	// NodeName is this node.
	NodeName string
	// Unit is the EdgeUnit whose status.bindings hold this node's entry.
	Unit string
	// StateFile is the durable copy of the bindings.
	StateFile string
	// Listen: see Options.Listen.
	Listen string
	// StableVTEPMAC turns the VTEP enforcer and the annotation on.
	StableVTEPMAC bool
	// StablePodIPs turns the pod IP server on.
	StablePodIPs bool
	// VTEPDevice is the VXLAN device's name.
	VTEPDevice string
	// REST reaches the apiserver, usually through the hub's loopback
	// listener. Nil: bindings come from the durable copy only.
	REST *rest.Config
	// ResyncInterval re-checks the device and re-reads the EdgeUnit when a
	// watch cannot be held open.
	ResyncInterval time.Duration
	// AnnotationResync re-verifies the node annotation while online.
	AnnotationResync time.Duration
	// NetNS, when set, is the network namespace the enforcer works in
	// (tests); the hub's own namespace otherwise.
	NetNS string
}

// Defaulted fills zero values.
func (c Config) Defaulted() Config {
	if c.VTEPDevice == "" {
		c.VTEPDevice = DefaultVTEPDevice
	}
	if c.ResyncInterval <= 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.AnnotationResync <= 0 {
		c.AnnotationResync = DefaultAnnotationResync
	}
	return c
}

// Validate reports every problem.
func (c Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("netbind: the node name is required"))
	}
	if c.StateFile == "" {
		errs = append(errs, errors.New("netbind: the state file is required"))
	}
	if c.REST != nil && c.Unit == "" {
		errs = append(errs, errors.New("netbind: the unit name is required to read bindings"))
	}
	if c.VTEPDevice != "" && (len(c.VTEPDevice) > 15 || strings.ContainsAny(c.VTEPDevice, "/ \t\n")) {
		errs = append(errs, fmt.Errorf("netbind: invalid device name %q", c.VTEPDevice))
	}
	if c.Listen != "" {
		if _, _, err := ParseListen(c.Listen); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParseListen splits unix:///path or host:port into a network and address.
// TCP addresses must be loopback: the server hands out pod bindings
// without authentication.
func ParseListen(s string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(s, "unix://"); ok {
		if !filepath.IsAbs(p) {
			return "", "", fmt.Errorf("netbind: listen %q: the socket path must be absolute", s)
		}
		return "unix", p, nil
	}
	s = strings.TrimPrefix(s, "http://")
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("netbind: listen %q: want unix:///path or host:port: %w", s, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", "", fmt.Errorf("netbind: listen %q: TCP addresses must be loopback", s)
	}
	return "tcp", s, nil
}

// ConfigFor builds a Config from the hub's settings: its node name and data
// directory, the options, and rest (the path to the apiserver).
func ConfigFor(nodeName, dataDir string, o Options, restCfg *rest.Config) (Config, error) {
	c := Config{
		NodeName:   nodeName,
		StateFile:  filepath.Join(dataDir, StateFileName),
		Listen:     o.Listen,
		REST:       restCfg,
		VTEPDevice: o.VTEPDevice,
	}
	if o.UnitFile != "" {
		raw, err := os.ReadFile(o.UnitFile)
		if err != nil {
			return c, fmt.Errorf("netbind: reading the unit file: %w", err)
		}
		var u hubinstall.UnitFile
		if err := yaml.Unmarshal(raw, &u); err != nil {
			return c, fmt.Errorf("netbind: parsing the unit file %s: %w", o.UnitFile, err)
		}
		c.Unit = u.Unit
		c.StableVTEPMAC = u.StableVTEPMAC
		c.StablePodIPs = u.StablePodIPs
		if c.VTEPDevice == "" {
			c.VTEPDevice = u.VTEPDevice
		}
	}
	c = c.Defaulted()
	return c, c.Validate()
}
