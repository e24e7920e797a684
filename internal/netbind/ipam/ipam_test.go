package ipam

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func conf(ipam string, extra string) []byte {
	return []byte(`{"cniVersion":"1.0.0","name":"cbr0","type":"bridge"` + extra + `,"ipam":` + ipam + `}`)
}

const hostLocal = `{"ranges":[[{"subnet":"10.244.1.0/24"}]]}`

func TestParseConfig(t *testing.T) {
	tests := map[string]struct {
		stdin        []byte
		args         string
		wantErr      string
		wantCode     uint
		wantExplicit bool
		wantNetwork  string
	}{
		"defaults":            {stdin: conf(`{"type":"edge-ipam","delegate":`+hostLocal+`}`, ""), wantNetwork: "unix"},
		"tcp hub":             {stdin: conf(`{"type":"edge-ipam","hub":"http://127.0.0.1:10269","delegate":`+hostLocal+`}`, ""), wantNetwork: "tcp"},
		"runtime asks ips":    {stdin: conf(`{"type":"edge-ipam","delegate":`+hostLocal+`}`, `,"runtimeConfig":{"ips":["10.244.1.9"]}`), wantExplicit: true, wantNetwork: "unix"},
		"CNI_ARGS IP":         {stdin: conf(`{"type":"edge-ipam","delegate":`+hostLocal+`}`, ""), args: "IgnoreUnknown=1;IP=10.244.1.9", wantExplicit: true, wantNetwork: "unix"},
		"not JSON":            {stdin: []byte(`{`), wantErr: "not valid JSON", wantCode: types.ErrDecodingFailure},
		"no ipam":             {stdin: []byte(`{"cniVersion":"1.0.0","name":"x"}`), wantErr: `no "ipam" section`, wantCode: types.ErrInvalidNetworkConfig},
		"no range":            {stdin: conf(`{"type":"edge-ipam"}`, ""), wantErr: `no address range`, wantCode: types.ErrInvalidNetworkConfig},
		"flannel fills in":    {stdin: conf(`{"type":"edge-ipam","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}]}`, ""), wantNetwork: "unix"},
		"delegate not object": {stdin: conf(`{"type":"edge-ipam","delegate":"host-local"}`, ""), wantErr: `must be an object`, wantCode: types.ErrInvalidNetworkConfig},
		"self delegate":       {stdin: conf(`{"type":"edge-ipam","delegate":{"type":"edge-ipam"}}`, ""), wantErr: "cannot be edge-ipam", wantCode: types.ErrInvalidNetworkConfig},
		"remote hub":          {stdin: conf(`{"type":"edge-ipam","hub":"http://192.0.2.1:80","delegate":`+hostLocal+`}`, ""), wantErr: "loopback only", wantCode: types.ErrInvalidNetworkConfig},
		"hub without port":    {stdin: conf(`{"type":"edge-ipam","hub":"http://127.0.0.1","delegate":`+hostLocal+`}`, ""), wantErr: "port is required", wantCode: types.ErrInvalidNetworkConfig},
		"relative socket":     {stdin: conf(`{"type":"edge-ipam","hub":"unix://x.sock","delegate":`+hostLocal+`}`, ""), wantErr: "must be absolute", wantCode: types.ErrInvalidNetworkConfig},
		"bad timeout":         {stdin: conf(`{"type":"edge-ipam","timeout":"1h","delegate":`+hostLocal+`}`, ""), wantErr: `"timeout"`, wantCode: types.ErrInvalidNetworkConfig},
		"unknown key":         {stdin: conf(`{"type":"edge-ipam","hubb":"x","delegate":`+hostLocal+`}`, ""), wantErr: `unknown field "hubb"`, wantCode: types.ErrInvalidNetworkConfig},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := parseConfig(tc.stdin, tc.args)
			if tc.wantErr != "" {
				var e *types.Error
				if !errors.As(err, &e) || e.Code != tc.wantCode || !strings.Contains(e.Msg, tc.wantErr) {
					t.Fatalf("error %v, want code %d containing %q", err, tc.wantCode, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.explicit != tc.wantExplicit || p.hubNetwork != tc.wantNetwork || p.delegateType != DefaultDelegate {
				t.Fatalf("parsed %+v", p)
			}
		})
	}
}

func TestDelegateConfFromFlannel(t *testing.T) {
	// flannel's CNI plugin writes ranges and routes into the IPAM section
	// it is given; the delegate's own settings win.
	p, err := parseConfig(conf(`{"type":"edge-ipam","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"delegate":{"dataDir":"/d","routes":[]}}`, ""), "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := p.delegateConf()
	var got struct {
		IPAM map[string]json.RawMessage `json:"ipam"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.IPAM["ranges"]) != `[[{"subnet":"10.244.1.0/24"}]]` || string(got.IPAM["routes"]) != `[]` || string(got.IPAM["type"]) != `"host-local"` || string(got.IPAM["dataDir"]) != `"/d"` {
		t.Fatalf("delegate ipam %s", raw)
	}
}

func TestDelegateConf(t *testing.T) {
	p, err := parseConfig(conf(`{"type":"edge-ipam","delegate":`+hostLocal+`}`, `,"runtimeConfig":{"portMappings":[]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := p.delegateConf("10.244.1.7")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Name string `json:"name"`
		IPAM struct {
			Type   string `json:"type"`
			Ranges any    `json:"ranges"`
		} `json:"ipam"`
		RuntimeConfig map[string]json.RawMessage `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "cbr0" || got.IPAM.Type != "host-local" || got.IPAM.Ranges == nil {
		t.Fatalf("delegate conf %s: want the network name and host-local's ipam section", raw)
	}
	if string(got.RuntimeConfig["ips"]) != `["10.244.1.7"]` || got.RuntimeConfig["portMappings"] == nil {
		t.Fatalf("runtimeConfig %s: want ips added and the rest kept", raw)
	}
	plain, _ := p.delegateConf()
	if strings.Contains(string(plain), `"ips"`) {
		t.Fatalf("plain delegate conf asks for an IP: %s", plain)
	}
}
