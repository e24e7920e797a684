package bindings

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"
)

// macOf derives a VTEP MAC from a node name: the first six bytes of
// SHA-256(name), or of SHA-256(name + "#" + attempt) for attempt > 0, with
// the locally administered bit set and the multicast bit cleared. "#" never
// occurs in a node name, so a rehash cannot equal another node's first try
// by construction of the input.
func macOf(node string, attempt int) string {
	in := node
	if attempt > 0 {
		in += "#" + strconv.Itoa(attempt)
	}
	h := sha256.Sum256([]byte(in))
	h[0] = (h[0] | 0x02) &^ 0x01
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4], h[5])
}

// DeriveMACs assigns every node of the cluster a distinct VTEP MAC from its
// name alone. Nodes whose first MACs collide are sorted by name: the first
// keeps the MAC, each next one (in name order) takes its first rehash not
// yet taken. The result depends only on the set of names.
func DeriveMACs(nodes []string) map[string]string {
	return AssignMACs(nodes, nil)
}

// AssignMACs assigns every node in nodes (all the cluster's nodes: VTEP
// MACs share one overlay) a distinct VTEP MAC, keeping the MACs already
// recorded so a node that joins later never changes another node's MAC.
//
// The rule, applied in node-name order so every caller computes the same
// result from the same inputs:
//  1. A node keeps its recorded MAC. Recorded MACs of nodes not in nodes are
//     ignored. When several nodes recorded the same MAC, the first by name
//     keeps it and the others are reassigned as in 2.
//  2. Every other node takes its derived MAC (DeriveMACs over nodes, so
//     collisions between new nodes resolve by name), unless that MAC is
//     taken; then its first rehash (attempt 1, 2, ...) not taken.
func AssignMACs(nodes []string, recorded map[string]string) map[string]string {
	return assignMACs(nodes, recorded, macOf)
}

// assignMACs is AssignMACs with the derivation injected, so tests can
// force collisions that SHA-256 will not produce.
func assignMACs(nodes []string, recorded map[string]string, macOf func(node string, attempt int) string) map[string]string {
	names := slices.Clone(nodes)
	slices.Sort(names)
	names = slices.Compact(names)

	out := make(map[string]string, len(names))
	taken := make(map[string]bool, len(names))
	for _, n := range names {
		if mac, ok := recorded[n]; ok && mac != "" && !taken[mac] {
			out[n] = mac
			taken[mac] = true
		}
	}

	// Derived MACs: the first node (by name) of each base MAC not already
	// taken keeps it.
	var rest []string
	base := make(map[string]string, len(names))
	for _, n := range names {
		if _, kept := out[n]; kept {
			continue
		}
		rest = append(rest, n)
		base[n] = macOf(n, 0)
	}
	var losers []string
	for _, n := range rest {
		if mac := base[n]; !taken[mac] {
			out[n] = mac
			taken[mac] = true
			continue
		}
		losers = append(losers, n)
	}
	for _, n := range losers {
		for attempt := 1; ; attempt++ {
			if mac := macOf(n, attempt); !taken[mac] {
				out[n] = mac
				taken[mac] = true
				break
			}
		}
	}
	return out
}
