package bindings

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"testing"
)

var macPattern = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)

// fakeMAC returns the MACs the table forces ("node#attempt"), and the real
// derivation otherwise.
func fakeMAC(forced map[string]string) func(string, int) string {
	return func(node string, attempt int) string {
		if m, ok := forced[fmt.Sprintf("%s#%d", node, attempt)]; ok {
			return m
		}
		return macOf(node, attempt)
	}
}

func TestAssignMACs(t *testing.T) {
	const m, n, p = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
	tests := map[string]struct {
		nodes    []string
		recorded map[string]string
		forced   map[string]string
		want     map[string]string
	}{
		"no collision: every node its own derived MAC": {
			nodes: []string{"edge-b", "edge-a", "edge-c"},
			want:  map[string]string{"edge-a": macOf("edge-a", 0), "edge-b": macOf("edge-b", 0), "edge-c": macOf("edge-c", 0)},
		},
		"collision: the first by name keeps the MAC, the next rehashes": {
			nodes:  []string{"edge-b", "edge-a"},
			forced: map[string]string{"edge-a#0": m, "edge-b#0": m},
			want:   map[string]string{"edge-a": m, "edge-b": macOf("edge-b", 1)},
		},
		"a rehash that hits another node's MAC rehashes again": {
			nodes:  []string{"edge-c", "edge-b", "edge-a"},
			forced: map[string]string{"edge-a#0": m, "edge-b#0": m, "edge-c#0": n, "edge-b#1": n},
			want:   map[string]string{"edge-a": m, "edge-b": macOf("edge-b", 2), "edge-c": n},
		},
		"three-way collision resolves in name order": {
			nodes:  []string{"edge-c", "edge-a", "edge-b"},
			forced: map[string]string{"edge-a#0": m, "edge-b#0": m, "edge-c#0": m, "edge-b#1": n, "edge-c#1": n},
			want:   map[string]string{"edge-a": m, "edge-b": n, "edge-c": macOf("edge-c", 2)},
		},
		"a recorded MAC stays when a node that joins later derives it": {
			nodes:    []string{"edge-a", "edge-b"},
			recorded: map[string]string{"edge-b": m},
			forced:   map[string]string{"edge-a#0": m},
			want:     map[string]string{"edge-a": macOf("edge-a", 1), "edge-b": m},
		},
		"a recorded MAC that is not the derived one stays": {
			nodes:    []string{"edge-a"},
			recorded: map[string]string{"edge-a": p},
			want:     map[string]string{"edge-a": p},
		},
		"two recorded MACs collide: the first by name keeps it": {
			nodes:    []string{"edge-b", "edge-a"},
			recorded: map[string]string{"edge-a": m, "edge-b": m},
			want:     map[string]string{"edge-a": m, "edge-b": macOf("edge-b", 0)},
		},
		"the MAC of a node that left is free again": {
			nodes:    []string{"edge-a"},
			recorded: map[string]string{"edge-gone": m},
			forced:   map[string]string{"edge-a#0": m},
			want:     map[string]string{"edge-a": m},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := assignMACs(tc.nodes, tc.recorded, fakeMAC(tc.forced))
			if !maps.Equal(got, tc.want) {
				t.Errorf("assignMACs =\n%v\nwant\n%v", got, tc.want)
			}
			// The order of the input does not matter.
			rev := slices.Clone(tc.nodes)
			slices.Reverse(rev)
			if again := assignMACs(rev, tc.recorded, fakeMAC(tc.forced)); !maps.Equal(got, again) {
				t.Errorf("assignMACs depends on the order of the nodes: %v vs %v", got, again)
			}
		})
	}
}

func TestMACsAreLocallyAdministeredUnicastAndUnique(t *testing.T) {
	var nodes []string
	for i := range 10000 {
		nodes = append(nodes, fmt.Sprintf("edge-node-%05d", i))
	}
	macs := DeriveMACs(nodes)
	if len(macs) != len(nodes) {
		t.Fatalf("%d MACs for %d nodes", len(macs), len(nodes))
	}
	seen := map[string]string{}
	for node, mac := range macs {
		if !macPattern.MatchString(mac) {
			t.Fatalf("MAC %q of %s does not match the API's pattern", mac, node)
		}
		var first byte
		fmt.Sscanf(mac[:2], "%02x", &first)
		if first&0x02 == 0 || first&0x01 != 0 {
			t.Fatalf("MAC %s of %s is not a locally administered unicast address", mac, node)
		}
		if other, dup := seen[mac]; dup {
			t.Fatalf("MAC %s of both %s and %s", mac, node, other)
		}
		seen[mac] = node
	}
	if macs["edge-node-00042"] != macOf("edge-node-00042", 0) {
		t.Errorf("the MAC is not derived from the name alone")
	}
}

// Recording every assignment and adding nodes one by one never changes a
// MAC already recorded.
func TestAssignMACsIsStableAsNodesJoin(t *testing.T) {
	// Force collisions between every later node's first MAC and an
	// earlier node's MAC.
	forced := map[string]string{}
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("node-%02d", 19-i)) // join in reverse name order
	}
	for i, n := range names {
		forced[n+"#0"] = macOf(names[i/2], 0)
	}
	recorded := map[string]string{}
	var cluster []string
	for _, n := range names {
		cluster = append(cluster, n)
		got := assignMACs(cluster, recorded, fakeMAC(forced))
		for node, mac := range recorded {
			if got[node] != mac {
				t.Fatalf("after %s joined, %s changed MAC %s -> %s", n, node, mac, got[node])
			}
		}
		seen := map[string]bool{}
		for _, mac := range got {
			if seen[mac] {
				t.Fatalf("after %s joined, MAC %s is assigned twice: %v", n, mac, got)
			}
			seen[mac] = true
		}
		recorded = got
	}
}
