// Command tunnel-server is the cloud end of edgeunit's reverse tunnel: edge
// agents dial it, and kube-apiserver (HTTP CONNECT egress) and scrapers (TLS
// passthrough by SNI) reach kubelets through it.
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
	var o tunnel.ServerOptions
	o.BindFlags(flag.CommandLine)
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	if f := flag.Lookup("kubeconfig"); f != nil && o.Kubeconfig == "" {
		o.Kubeconfig = f.Value.String()
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "tunnel-server: invalid flags:\n%v\n", err)
		os.Exit(2)
	}
	logger := zap.New(zap.UseFlagOptions(&zopts))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	log := logger.WithName("tunnel-server").WithValues("replica", o.ID)
	if err := tunnel.RunServer(ctrl.SetupSignalHandler(), o, log); err != nil {
		log.Error(err, "Tunnel server failed")
		os.Exit(1)
	}
}
