// Command edge-ipam is the CNI IPAM plugin that gives a pod back its bound
// IP, asking the edge hub and delegating allocation to host-local. See
// internal/netbind/ipam and docs/network-autonomy.md.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/edgeunit/edgeunit/internal/netbind/ipam"
)

func main() {
	p := &ipam.Plugin{}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status},
		version.All, "edge-ipam: the pod's bound IP from the edge hub, allocated by host-local")
}
