package ipam

// Fresh IPs that keep off bound ones.
//
// host-local alone hands a pod with no binding the next free IP, which may
// be bound to another pod of this node that is not running right now (after
// a reboot sandboxes come back in any order): that pod would then lose its
// IP. So edge-ipam asks the hub for every bound IP, walks host-local's
// ranges the way host-local does, and asks host-local explicitly for the
// first IP that is neither reserved in its store nor bound.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

const (
	// defaultDataDir is host-local's, when "dataDir" is unset.
	defaultDataDir = "/var/lib/cni/networks"
	// lastReservedPrefix names host-local's round-robin file of a range
	// set, followed by the set's index.
	lastReservedPrefix = "last_reserved_ip."
	// maxFreshAttempts bounds the retries when concurrent ADDs take the
	// chosen IP first (each retry means another ADD got an IP).
	maxFreshAttempts = 10
)

// addUnbound has host-local allocate a fresh IP, in each range set, that
// is bound to no pod of this node. A nil result with a nil error means it
// could not tell or find such IPs (the hub did not answer, every free IP
// is bound, host-local refused for another reason): the caller lets
// host-local choose, as without bindings.
func (pl *Plugin) addUnbound(ctx context.Context, p *parsed) (types.Result, error) {
	if p.delegateType != DefaultDelegate {
		return nil, nil // only host-local's store and ranges are known
	}
	bound, err := boundIPs(ctx, p)
	if err != nil {
		pl.logf("asking the hub for the bound IPs failed, allocating a fresh IP that may be bound to another pod: %v", err)
		return nil, nil
	}
	if len(bound) == 0 {
		return nil, nil
	}
	hl, err := p.hostLocal()
	if err != nil {
		pl.logf("reading host-local's ranges failed, allocating a fresh IP that may be bound to another pod: %v", err)
		return nil, nil
	}
	for range maxFreshAttempts {
		reserved, err := reservedIPs(hl.dir)
		if err != nil {
			pl.logf("reading host-local's store failed, allocating a fresh IP that may be bound to another pod: %v", err)
			return nil, nil
		}
		var want []string
		for i, set := range hl.sets {
			ip, ok := nextFree(set, lastReserved(hl.dir, i), func(a netip.Addr) bool { return reserved[a] || bound[a] })
			if ok {
				want = append(want, ip.String())
				continue
			}
			if _, anyFree := nextFree(set, netip.Addr{}, func(a netip.Addr) bool { return reserved[a] }); anyFree {
				pl.logf("every free IP of range set %d is bound to a pod of this node that is not running: host-local gives one of them away", i)
			}
		}
		if len(want) == 0 {
			return nil, nil
		}
		conf, err := p.delegateConf(want...)
		if err != nil {
			return nil, err
		}
		res, err := invoke.DelegateAdd(ctx, p.delegateType, conf, pl.Exec)
		if err == nil {
			return res, nil
		}
		// Taken meanwhile by a concurrent ADD: it is in the store now, and
		// the next walk passes it. Refused for another reason: give up.
		now, rerr := reservedIPs(hl.dir)
		if rerr != nil || !anyReserved(want, now) {
			pl.logf("host-local refused the fresh IP %s, letting it choose: %v", strings.Join(want, ","), err)
			return nil, nil
		}
	}
	pl.logf("concurrent ADDs took the chosen fresh IP %d times, letting host-local choose (it may give away a bound IP)", maxFreshAttempts)
	return nil, nil
}

func anyReserved(ips []string, reserved map[netip.Addr]bool) bool {
	for _, s := range ips {
		if reserved[netip.MustParseAddr(s)] {
			return true
		}
	}
	return false
}

// ipRange is one of host-local's ranges with its defaults filled in.
type ipRange struct {
	subnet              netip.Prefix
	start, end, gateway netip.Addr
}

func (r ipRange) contains(a netip.Addr) bool {
	return r.subnet.Contains(a) && r.start.Compare(a) <= 0 && a.Compare(r.end) <= 0
}

// rangeConf is a range as host-local's configuration writes it.
type rangeConf struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

// parseRange fills in host-local's defaults (Range.Canonicalize): the
// gateway is the subnet's first address; the range starts there (the walk
// skips the gateway) and ends at the last address, less the broadcast
// address for IPv4.
func parseRange(c rangeConf) (ipRange, error) {
	subnet, err := netip.ParsePrefix(c.Subnet)
	if err != nil {
		return ipRange{}, fmt.Errorf("subnet %q: %w", c.Subnet, err)
	}
	if subnet != subnet.Masked() {
		return ipRange{}, fmt.Errorf("subnet %s has host bits set", subnet)
	}
	if subnet.Bits() > subnet.Addr().BitLen()-2 {
		return ipRange{}, fmt.Errorf("subnet %s is too small to allocate from", subnet)
	}
	first := subnet.Addr().Next()
	r := ipRange{subnet: subnet, start: first, end: lastAddr(subnet), gateway: first}
	for _, f := range []struct {
		s   string
		dst *netip.Addr
	}{{c.Gateway, &r.gateway}, {c.RangeStart, &r.start}, {c.RangeEnd, &r.end}} {
		if f.s == "" {
			continue
		}
		a, err := netip.ParseAddr(f.s)
		if err != nil {
			return ipRange{}, fmt.Errorf("range of %s: %w", subnet, err)
		}
		*f.dst = a.Unmap()
	}
	if !subnet.Contains(r.start) || !subnet.Contains(r.end) || r.end.Less(r.start) {
		return ipRange{}, fmt.Errorf("range %s-%s is not within subnet %s", r.start, r.end, subnet)
	}
	return r, nil
}

// lastAddr is the subnet's last address, less the broadcast for IPv4.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		b[i] |= 0xff >> min(max(p.Bits()-8*i, 0), 8)
	}
	a, _ := netip.AddrFromSlice(b)
	if a.Is4() {
		a = a.Prev()
	}
	return a
}

// nextFree walks a range set in host-local's round-robin order (its
// allocator's RangeIter) and returns the first IP that is not taken: from
// the IP after last when the set holds last, else from the first range's
// start; each range to its end, then on to the next, wrapping around, so
// last comes last; each range's gateway skipped. ok is false when every IP
// is taken.
func nextFree(set []ipRange, last netip.Addr, taken func(netip.Addr) bool) (ip netip.Addr, ok bool) {
	i, cur := 0, set[0].start
	for j, r := range set {
		if r.contains(last) {
			i, cur = step(set, j, last)
			break
		}
	}
	first := cur
	for {
		if cur != set[i].gateway && !taken(cur) {
			return cur, true
		}
		if i, cur = step(set, i, cur); cur == first {
			return netip.Addr{}, false
		}
	}
}

// step is the IP after cur, which is in set[i].
func step(set []ipRange, i int, cur netip.Addr) (int, netip.Addr) {
	if cur == set[i].end {
		i = (i + 1) % len(set)
		return i, set[i].start
	}
	return i, cur.Next()
}

// hostLocalConf is what edge-ipam reads of host-local's configuration: its
// range sets, in host-local's order (their index names last_reserved_ip.N),
// and its store's directory.
type hostLocalConf struct {
	sets [][]ipRange
	dir  string
}

// hostLocal reads the delegate's configuration as host-local does
// (LoadIPAMConfig): runtimeConfig.ipRanges first, then the single range of
// the old format (ipam.subnet), then ipam.ranges; the store is
// dataDir/<network name>.
func (p *parsed) hostLocal() (*hostLocalConf, error) {
	raw, err := p.delegateConf()
	if err != nil {
		return nil, err
	}
	var conf struct {
		Name string `json:"name"`
		IPAM struct {
			rangeConf
			DataDir string        `json:"dataDir"`
			Ranges  [][]rangeConf `json:"ranges"`
		} `json:"ipam"`
		RuntimeConfig struct {
			IPRanges [][]rangeConf `json:"ipRanges"`
		} `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(raw, &conf); err != nil {
		return nil, err
	}
	sets := conf.RuntimeConfig.IPRanges
	if conf.IPAM.Subnet != "" {
		sets = append(sets, []rangeConf{conf.IPAM.rangeConf})
	}
	sets = append(sets, conf.IPAM.Ranges...)
	hl := &hostLocalConf{dir: filepath.Join(conf.IPAM.DataDir, conf.Name)}
	if conf.IPAM.DataDir == "" {
		hl.dir = filepath.Join(defaultDataDir, conf.Name)
	}
	for i, set := range sets {
		if len(set) == 0 {
			return nil, fmt.Errorf("range set %d is empty", i)
		}
		var rs []ipRange
		for _, c := range set {
			r, err := parseRange(c)
			if err != nil {
				return nil, fmt.Errorf("range set %d: %w", i, err)
			}
			rs = append(rs, r)
		}
		hl.sets = append(hl.sets, rs)
	}
	if len(hl.sets) == 0 {
		return nil, errors.New("no ranges")
	}
	return hl, nil
}

// reservedIPs reads host-local's store (its disk backend): one file per
// reserved IP, named by the IP, beside "lock" and last_reserved_ip.N. A
// missing directory is an empty store.
func reservedIPs(dir string) (map[netip.Addr]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	reserved := map[netip.Addr]bool{}
	for _, e := range entries {
		if a, err := netip.ParseAddr(e.Name()); err == nil {
			reserved[a.Unmap()] = true
		}
	}
	return reserved, nil
}

// lastReserved is the IP host-local last reserved in range set i (where
// its round robin goes on), or the zero Addr.
func lastReserved(dir string, i int) netip.Addr {
	b, err := os.ReadFile(filepath.Join(dir, lastReservedPrefix+strconv.Itoa(i)))
	if err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
