// Command tunnel-agent is the edge end of edgeunit's reverse tunnel: it dials
// out to every tunnel-server replica over mutual TLS and relays the cloud's
// connections to allow-listed ports of its own node and, with --pod-ports,
// of its own node's pods. Its identity comes from the CSR API (--kubeconfig,
// the kubelet's) or from static files.
package main

import (
	"flag"
	"fmt"
	"os"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/edgeunit/edgeunit/internal/tunnel"
)

func main() {
	o, zopts, err := parseFlags(os.Args[0], os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "tunnel-agent: invalid flags:\n%v\n", err)
		os.Exit(2)
	}
	logger := zap.New(zap.UseFlagOptions(&zopts))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	log := logger.WithName("tunnel-agent")
	if err := tunnel.RunAgent(ctrl.SetupSignalHandler(), o, log); err != nil {
		log.Error(err, "Tunnel agent failed")
		os.Exit(1)
	}
}

// parseFlags parses and validates the command line. It uses a flag set of
// its own: controller-runtime registers a --kubeconfig of its own on the
// default set, while the agent's --kubeconfig is the kubelet's.
func parseFlags(name string, args []string) (tunnel.AgentOptions, zap.Options, error) {
	var o tunnel.AgentOptions
	var zopts zap.Options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	o.BindFlags(fs)
	zopts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, zopts, err
	}
	if fs.NArg() > 0 {
		return o, zopts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, zopts, o.Validate()
}
