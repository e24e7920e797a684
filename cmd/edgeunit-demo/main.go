// Command edgeunit-demo runs edgeunit's embedded local environment: a
// kube-apiserver and etcd, the CRDs and webhooks, the manager, simulated edge
// nodes and config/samples, a tunnel-server with a tunnel-agent per edge
// node, and prints what to look at.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/edgeunit/edgeunit/internal/demo"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("edgeunit-demo", flag.ContinueOnError)
	var o demo.Options
	fs.StringVar(&o.AssetsDir, "assets", "", "Directory holding the kube-apiserver and etcd binaries (default: $KUBEBUILDER_ASSETS, else bin/k8s in the repository; build them with 'make envtest').")
	fs.StringVar(&o.ConfigDir, "config-dir", "", "edgeunit's config directory with crd/bases, webhook and samples (default: config in the repository).")
	fs.StringVar(&o.SamplesDir, "samples-dir", "", "Directory of the objects to apply (default: <config-dir>/samples).")
	fs.StringVar(&o.KubeconfigOut, "kubeconfig-out", demo.DefaultKubeconfigOut(), "Where to write the admin kubeconfig; removed on exit.")
	fs.StringVar(&o.Kubectl, "kubectl", "kubectl", "kubectl used to print the summary; when missing the summary comes from the API client.")
	fs.StringVar(&o.BinDir, "bin-dir", "", "Directory holding tunnel-server and tunnel-agent (default: next to this executable, as 'make build' puts them; else they are built with 'go build').")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", demo.DefaultReadyTimeout, "How long to wait for the NodePools to become Ready, and then for the tunnel agents to connect.")
	fs.BoolVar(&o.ExitAfterSetup, "exit-after-setup", false, "Print the summary and exit instead of running until interrupted.")
	zopts := zap.Options{Level: zapcore.ErrorLevel}
	zopts.BindFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: edgeunit-demo [flags]\n\nStarts a local control plane with edgeunit's manager, simulated edge nodes and\nconfig/samples, runs a tunnel-server and a tunnel-agent per edge node on this\nmachine, prints a kubeconfig and runs until interrupted.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "edgeunit-demo takes no arguments, got %q\n", fs.Args())
		fs.Usage()
		return 2
	}

	// The manager's log goes to stderr, errors only unless --zap-log-level
	// says otherwise; the summary goes to stdout.
	logger := zap.New(zap.UseFlagOptions(&zopts), zap.WriteTo(os.Stderr))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	ctx, stop := signalContext()
	defer stop()
	if err := demo.Run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "edgeunit-demo: %v\n", err)
		return 1
	}
	return 0
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which starts a
// clean shutdown. A second one exits at once, leaving whatever has not been
// stopped yet.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "\nReceived %s, shutting down (again to exit at once)\n", sig)
		cancel(fmt.Errorf("received %s", sig))
		sig = <-ch
		fmt.Fprintf(os.Stderr, "Received %s again, exiting without cleaning up\n", sig)
		os.Exit(130)
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
	}
}
