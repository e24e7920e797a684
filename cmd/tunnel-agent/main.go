// Command tunnel-agent is the edge end of edgeunit's reverse tunnel: it dials
// out to every tunnel-server replica over mutual TLS and relays the cloud's
// connections to allow-listed ports of its own node.
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
	var o tunnel.AgentOptions
	o.BindFlags(flag.CommandLine)
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	if err := o.Validate(); err != nil {
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
