package ipam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/edgeunit/edgeunit/internal/netbind/wire"
)

func mustRange(t *testing.T, c rangeConf) ipRange {
	t.Helper()
	r, err := parseRange(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRange(t *testing.T) {
	tests := map[string]struct {
		in                         rangeConf
		start, end, gateway, wantE string
	}{
		"defaults: .1 is the gateway, the broadcast is left out": {in: rangeConf{Subnet: "10.244.1.0/24"}, start: "10.244.1.1", end: "10.244.1.254", gateway: "10.244.1.1"},
		"explicit start, end and gateway": {in: rangeConf{Subnet: "10.244.1.0/24", RangeStart: "10.244.1.10", RangeEnd: "10.244.1.20", Gateway: "10.244.1.254"},
			start: "10.244.1.10", end: "10.244.1.20", gateway: "10.244.1.254"},
		"IPv6 keeps the last address": {in: rangeConf{Subnet: "fd00:10:244:1::/64"}, start: "fd00:10:244:1::1", end: "fd00:10:244:1:ffff:ffff:ffff:ffff", gateway: "fd00:10:244:1::1"},
		"a /23":                       {in: rangeConf{Subnet: "10.244.0.0/23"}, start: "10.244.0.1", end: "10.244.1.254", gateway: "10.244.0.1"},
		"host bits set":               {in: rangeConf{Subnet: "10.244.1.5/24"}, wantE: "host bits"},
		"too small":                   {in: rangeConf{Subnet: "10.244.1.0/31"}, wantE: "too small"},
		"start outside the subnet":    {in: rangeConf{Subnet: "10.244.1.0/24", RangeStart: "10.244.2.1"}, wantE: "not within"},
		"end before start":            {in: rangeConf{Subnet: "10.244.1.0/24", RangeStart: "10.244.1.9", RangeEnd: "10.244.1.8"}, wantE: "not within"},
		"not a subnet":                {in: rangeConf{Subnet: "10.244.1.0"}, wantE: "subnet"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := parseRange(tc.in)
			if tc.wantE != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantE) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantE)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.start.String() != tc.start || r.end.String() != tc.end || r.gateway.String() != tc.gateway {
				t.Fatalf("range %s-%s gateway %s, want %s-%s gateway %s", r.start, r.end, r.gateway, tc.start, tc.end, tc.gateway)
			}
		})
	}
}

func addrSet(ips ...string) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, s := range ips {
		m[netip.MustParseAddr(s)] = true
	}
	return m
}

// TestNextFree: the walk and the choice of a fresh IP, skipping what
// host-local has reserved and what is bound to other pods, as addUnbound
// calls it.
func TestNextFree(t *testing.T) {
	node := []rangeConf{{Subnet: "10.244.1.0/24"}}
	small := []rangeConf{{Subnet: "10.244.1.0/24", RangeStart: "10.244.1.2", RangeEnd: "10.244.1.4"}}
	two := []rangeConf{{Subnet: "10.244.1.0/24", RangeStart: "10.244.1.253"}, {Subnet: "10.244.2.0/24", RangeEnd: "10.244.2.2"}}
	tests := map[string]struct {
		set             []rangeConf
		last            string
		reserved, bound []string
		want            string // "" = none
	}{
		"empty store: the first after the gateway":     {set: node, want: "10.244.1.2"},
		"reserved skipped":                             {set: node, reserved: []string{"10.244.1.2", "10.244.1.3"}, want: "10.244.1.4"},
		"bound skipped":                                {set: node, bound: []string{"10.244.1.2", "10.244.1.3"}, reserved: []string{"10.244.1.4"}, want: "10.244.1.5"},
		"round robin after the last reserved":          {set: node, last: "10.244.1.9", want: "10.244.1.10"},
		"bound skipped after the last reserved":        {set: node, last: "10.244.1.9", bound: []string{"10.244.1.10"}, want: "10.244.1.11"},
		"wrap-around past the end and the gateway":     {set: node, last: "10.244.1.254", want: "10.244.1.2"},
		"wrap-around, bound and reserved skipped":      {set: node, last: "10.244.1.254", bound: []string{"10.244.1.2"}, reserved: []string{"10.244.1.3"}, want: "10.244.1.4"},
		"the last reserved comes last":                 {set: small, last: "10.244.1.3", reserved: []string{"10.244.1.2", "10.244.1.4"}, want: "10.244.1.3"},
		"last reserved outside the set: from start":    {set: node, last: "10.99.0.5", want: "10.244.1.2"},
		"gateway inside the range skipped":             {set: []rangeConf{{Subnet: "10.244.1.0/24", RangeStart: "10.244.1.10", Gateway: "10.244.1.10"}}, want: "10.244.1.11"},
		"gateway skipped mid-walk":                     {set: []rangeConf{{Subnet: "10.244.1.0/24", Gateway: "10.244.1.3"}}, reserved: []string{"10.244.1.1", "10.244.1.2"}, want: "10.244.1.4"},
		"next range of the set after the end":          {set: two, last: "10.244.1.254", bound: []string{"10.244.2.1"}, want: "10.244.2.2"},
		"wrap-around to the first range of the set":    {set: two, last: "10.244.2.2", reserved: []string{"10.244.1.253"}, want: "10.244.1.254"},
		"all bound or reserved: none":                  {set: small, last: "10.244.1.2", bound: []string{"10.244.1.2", "10.244.1.3"}, reserved: []string{"10.244.1.4"}},
		"all bound: none (host-local falls back)":      {set: small, bound: []string{"10.244.1.2", "10.244.1.3", "10.244.1.4"}},
		"bound IPs outside the range do not matter":    {set: small, bound: []string{"10.99.0.5", "10.244.1.2"}, want: "10.244.1.3"},
		"IPv6: the first after the gateway":            {set: []rangeConf{{Subnet: "fd00:10:244:1::/64"}}, bound: []string{"fd00:10:244:1::2"}, want: "fd00:10:244:1::3"},
		"IPv6: wrap-around from the very last address": {set: []rangeConf{{Subnet: "fd00:10:244:1::/64"}}, last: "fd00:10:244:1:ffff:ffff:ffff:ffff", want: "fd00:10:244:1::2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var set []ipRange
			for _, c := range tc.set {
				set = append(set, mustRange(t, c))
			}
			var last netip.Addr
			if tc.last != "" {
				last = netip.MustParseAddr(tc.last)
			}
			reserved, bound := addrSet(tc.reserved...), addrSet(tc.bound...)
			ip, ok := nextFree(set, last, func(a netip.Addr) bool { return reserved[a] || bound[a] })
			if got := ip.String(); ok != (tc.want != "") || (ok && got != tc.want) {
				t.Fatalf("got %s (%v), want %q", got, ok, tc.want)
			}
		})
	}
}

func TestHostLocalConf(t *testing.T) {
	tests := map[string]struct {
		stdin    []byte
		wantDir  string
		wantSets [][]string // each range as start-end
	}{
		"flannel's ranges, default dataDir": {stdin: conf(`{"type":"edge-ipam","ranges":[[{"subnet":"10.244.1.0/24"}]]}`, ""),
			wantDir: "/var/lib/cni/networks/cbr0", wantSets: [][]string{{"10.244.1.1-10.244.1.254"}}},
		"host-local's order: ipRanges, subnet, ranges": {
			stdin: conf(`{"type":"edge-ipam","delegate":{"dataDir":"/d","subnet":"10.244.2.0/24","rangeStart":"10.244.2.10","ranges":[[{"subnet":"10.244.3.0/24"},{"subnet":"10.244.4.0/24"}]]}}`,
				`,"runtimeConfig":{"ipRanges":[[{"subnet":"10.244.1.0/24"}]]}`),
			wantDir: "/d/cbr0", wantSets: [][]string{{"10.244.1.1-10.244.1.254"}, {"10.244.2.10-10.244.2.254"}, {"10.244.3.1-10.244.3.254", "10.244.4.1-10.244.4.254"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := parseConfig(tc.stdin, "")
			if err != nil {
				t.Fatal(err)
			}
			hl, err := p.hostLocal()
			if err != nil {
				t.Fatal(err)
			}
			var sets [][]string
			for _, set := range hl.sets {
				var rs []string
				for _, r := range set {
					rs = append(rs, r.start.String()+"-"+r.end.String())
				}
				sets = append(sets, rs)
			}
			if hl.dir != tc.wantDir || !slices.EqualFunc(sets, tc.wantSets, slices.Equal) {
				t.Fatalf("dir %s sets %v, want %s %v", hl.dir, sets, tc.wantDir, tc.wantSets)
			}
		})
	}
	p, err := parseConfig(conf(`{"type":"edge-ipam","ranges":[[{"subnet":"10.244.1.7/24"}]]}`, ""), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.hostLocal(); err == nil {
		t.Fatal("a subnet with host bits set was accepted")
	}
}

func TestHostLocalStore(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"10.244.1.2": "sandbox-a\r\neth0", "10.244.1.9": "sandbox-b\r\neth0", "fd00:10:244:1::5": "sandbox-c\r\neth0",
		"lock": "", "last_reserved_ip.0": "10.244.1.9", "last_reserved_ip.1": "fd00:10:244:1::5",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := reservedIPs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := addrSet("10.244.1.2", "10.244.1.9", "fd00:10:244:1::5"); len(got) != len(want) || !got[netip.MustParseAddr("10.244.1.2")] || !got[netip.MustParseAddr("fd00:10:244:1::5")] {
		t.Fatalf("reserved %v, want %v", got, want)
	}
	if l0, l1, l2 := lastReserved(dir, 0), lastReserved(dir, 1), lastReserved(dir, 2); l0.String() != "10.244.1.9" || l1.String() != "fd00:10:244:1::5" || l2.IsValid() {
		t.Fatalf("last reserved %s %s %s", l0, l1, l2)
	}
	if got, err := reservedIPs(filepath.Join(dir, "missing")); err != nil || len(got) != 0 {
		t.Fatalf("missing store: %v %v, want empty", got, err)
	}
}

// fakeHostLocal stands for host-local behind invoke: it records the IPs
// each ADD asks for and answers with them (or .99, its own choice), unless
// the call's outcome says otherwise.
type fakeHostLocal struct {
	dir      string
	outcomes []string // per call: "ok", "taken" (a concurrent ADD got it first), "refuse"
	requests [][]string
}

func (f *fakeHostLocal) ExecPlugin(_ context.Context, _ string, stdin []byte, _ []string) ([]byte, error) {
	var c struct {
		RuntimeConfig struct {
			IPs []string `json:"ips"`
		} `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(stdin, &c); err != nil {
		return nil, err
	}
	call := len(f.requests)
	f.requests = append(f.requests, c.RuntimeConfig.IPs)
	ip := "10.244.1.99"
	if len(c.RuntimeConfig.IPs) > 0 {
		ip = c.RuntimeConfig.IPs[0]
	}
	outcome := "ok"
	if call < len(f.outcomes) {
		outcome = f.outcomes[call]
	}
	switch outcome {
	case "taken":
		if err := os.WriteFile(filepath.Join(f.dir, ip), []byte("other\r\neth0"), 0o600); err != nil {
			return nil, err
		}
		return nil, errors.New("requested IP address " + ip + " is not available in range set")
	case "refuse":
		return nil, errors.New("host-local: something else")
	}
	return []byte(`{"cniVersion":"1.0.0","ips":[{"address":"` + ip + `/24"}]}`), nil
}

func (f *fakeHostLocal) FindInPath(plugin string, _ []string) (string, error) {
	return "/opt/cni/bin/" + plugin, nil
}

func (f *fakeHostLocal) Decode([]byte) (version.PluginInfo, error) {
	return version.PluginSupports("1.0.0"), nil
}

// TestAddAvoidsBoundIPs drives Add against a fake hub and a fake
// host-local: which IPs it asks host-local for, in order.
func TestAddAvoidsBoundIPs(t *testing.T) {
	var everyTime [][]string // .3, .4, ...: each taken in turn
	for i := range maxFreshAttempts {
		everyTime = append(everyTime, []string{netip.AddrFrom4([4]byte{10, 244, 1, byte(3 + i)}).String()})
	}
	tests := map[string]struct {
		podIP     string   // the pod's binding ("" = none)
		bound     []string // every bound IP
		noList    bool     // the hub does not serve the list (older hub)
		hubDown   bool
		ranges    string
		reserved  []string
		last      string
		args      string
		outcomes  []string
		want      [][]string // the ips of each call to host-local
		wantLog   string
		wantLists int32 // questions for the list
	}{
		"bound and reserved skipped": {bound: []string{"10.244.1.2", "10.244.1.3"}, reserved: []string{"10.244.1.4"},
			want: [][]string{{"10.244.1.5"}}, wantLists: 1},
		"round robin from the last reserved, wrapping around": {bound: []string{"10.244.1.2"}, reserved: []string{"10.244.1.254"}, last: "10.244.1.254",
			want: [][]string{{"10.244.1.3"}}, wantLists: 1},
		"taken meanwhile: the next candidate": {bound: []string{"10.244.1.2"}, outcomes: []string{"taken", "taken"},
			want: [][]string{{"10.244.1.3"}, {"10.244.1.4"}, {"10.244.1.5"}}, wantLists: 1},
		"taken every time: host-local chooses": {bound: []string{"10.244.1.2"}, outcomes: slices.Repeat([]string{"taken"}, maxFreshAttempts),
			want: append(everyTime, nil), wantLog: "letting host-local choose", wantLists: 1},
		"refused for another reason: host-local chooses": {bound: []string{"10.244.1.2"}, outcomes: []string{"refuse"},
			want: [][]string{{"10.244.1.3"}, nil}, wantLog: "refused the fresh IP 10.244.1.3", wantLists: 1},
		"every free IP bound: host-local chooses": {ranges: `[[{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.2","rangeEnd":"10.244.1.4"}]]`,
			bound: []string{"10.244.1.2", "10.244.1.3"}, reserved: []string{"10.244.1.4"},
			want: [][]string{nil}, wantLog: "gives one of them away", wantLists: 1},
		"nothing bound: host-local chooses": {want: [][]string{nil}, wantLists: 1},
		"an older hub: host-local chooses":  {noList: true, want: [][]string{nil}, wantLog: "bound IPs failed", wantLists: 1},
		"hub down: host-local chooses":      {hubDown: true, want: [][]string{nil}, wantLog: "may be bound to another pod"},
		"own bound IP refused, then a fresh one off the bound ones": {podIP: "10.244.1.2", bound: []string{"10.244.1.2", "10.244.1.3"}, outcomes: []string{"refuse"},
			want: [][]string{{"10.244.1.2"}, {"10.244.1.4"}}, wantLists: 1},
		"own bound IP": {podIP: "10.244.1.7", bound: []string{"10.244.1.7"}, want: [][]string{{"10.244.1.7"}}},
		"no pod name: still off the bound ones": {args: "IgnoreUnknown=1", bound: []string{"10.244.1.2"},
			want: [][]string{{"10.244.1.3"}}, wantLists: 1},
		"the runtime asks for an IP: untouched": {args: "IgnoreUnknown=1;IP=10.244.1.2;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-a", bound: []string{"10.244.1.2"},
			want: [][]string{nil}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var lists atomic.Int32
			hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == wire.BoundIPsPath {
					lists.Add(1)
				}
				switch {
				case r.URL.Path == wire.PodIPPath && tc.podIP != "":
					_ = json.NewEncoder(w).Encode(wire.PodIP{IP: tc.podIP})
				case r.URL.Path == wire.BoundIPsPath && !tc.noList:
					_ = json.NewEncoder(w).Encode(wire.BoundIPs{IPs: append([]string{}, tc.bound...)})
				default:
					http.NotFound(w, r)
				}
			}))
			defer hub.Close()
			hubURL := hub.URL
			if tc.hubDown {
				hubURL = "unix:///nonexistent/netbind.sock"
			}
			dataDir := t.TempDir()
			store := filepath.Join(dataDir, "cbr0")
			if err := os.MkdirAll(store, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, ip := range tc.reserved {
				if err := os.WriteFile(filepath.Join(store, ip), []byte("x\r\neth0"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.last != "" {
				if err := os.WriteFile(filepath.Join(store, "last_reserved_ip.0"), []byte(tc.last), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ranges := tc.ranges
			if ranges == "" {
				ranges = `[[{"subnet":"10.244.1.0/24"}]]`
			}
			args := tc.args
			if args == "" {
				args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-a"
			}
			fake := &fakeHostLocal{dir: store, outcomes: tc.outcomes}
			var stdout, stderr bytes.Buffer
			pl := &Plugin{Exec: fake, Stdout: &stdout, Stderr: &stderr}
			stdin := conf(`{"type":"edge-ipam","hub":"`+hubURL+`","delegate":{"dataDir":"`+dataDir+`"},"ranges":`+ranges+`}`, "")
			err := pl.Add(&skel.CmdArgs{ContainerID: "sandbox-x", Netns: "/var/run/netns/x", IfName: "eth0", Args: args, StdinData: stdin})
			if err != nil {
				t.Fatalf("ADD: %v (log: %s)", err, &stderr)
			}
			if !slices.EqualFunc(fake.requests, tc.want, slices.Equal) {
				t.Fatalf("asked host-local for %q, want %q (log: %s)", fake.requests, tc.want, &stderr)
			}
			if !strings.Contains(stderr.String(), tc.wantLog) {
				t.Fatalf("log %q, want it to contain %q", &stderr, tc.wantLog)
			}
			if lists.Load() != tc.wantLists {
				t.Fatalf("asked the hub for the bound IPs %d times, want %d", lists.Load(), tc.wantLists)
			}
			want := "10.244.1.99" // host-local's own choice
			if last := fake.requests[len(fake.requests)-1]; len(last) > 0 {
				want = last[0]
			}
			if !strings.Contains(stdout.String(), `"`+want+`/24"`) {
				t.Fatalf("result %s, want %s", &stdout, want)
			}
		})
	}
}
