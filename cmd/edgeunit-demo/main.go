// Command edgeunit-demo runs edgeunit's embedded local environment: a
// kube-apiserver and etcd, the CRDs and webhooks, the manager, simulated edge
// nodes and config/samples, a tunnel-server with a tunnel-agent per edge
// node, and prints what to look at. As root it adds a real edge node in a
// cluster of its own (`edgeunit-demo real-node run`, which it starts), whose
// power `edgeunit-demo real-node power-cycle` cuts and restores.
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
	if len(os.Args) > 1 && os.Args[1] == "real-node" {
		return runRealNode(os.Args[2:])
	}
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
	realNode := fs.String("real-node", string(demo.RealNodeAuto), "Add a real edge node (kubelet, containerd, runc in namespaces of their own, from the binaries make e2e-deps builds) in a cluster of its own: auto (where the machine allows it: Linux, root; else say why not), on (or fail), off.")
	zopts := zap.Options{Level: zapcore.ErrorLevel}
	zopts.BindFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: edgeunit-demo [flags]\n       edgeunit-demo real-node power-cycle [--socket PATH]\n\n"+
			"Starts a local control plane with edgeunit's manager, simulated edge nodes and\nconfig/samples, runs a tunnel-server and a tunnel-agent per edge node on this\nmachine, prints a kubeconfig and runs until interrupted. As root it also runs a\nreal edge node in a cluster of its own (--real-node).\n\nFlags:\n")
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
	var err error
	if o.RealNode, err = demo.ParseRealNodeMode(*realNode); err != nil {
		fmt.Fprintln(os.Stderr, err)
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

// runRealNode is `edgeunit-demo real-node run|power-cycle`.
func runRealNode(args []string) int {
	usage := "Usage: edgeunit-demo real-node power-cycle [--socket PATH]\n" +
		"       edgeunit-demo real-node run [flags]   (the demo starts it)\n"
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("edgeunit-demo real-node "+args[0], flag.ContinueOnError)
	socket := fs.String("socket", demo.DefaultRealNodeSocket(), "The real node's socket: real-node.sock next to the demo's kubeconfig.")
	switch args[0] {
	case "power-cycle":
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "Usage: edgeunit-demo real-node power-cycle [--socket PATH]\n\n"+
				"Cuts the power of the real edge node a running demo started (everything on it is killed,\n"+
				"/run and the containers' cgroups go, as in a reboot), boots it again, and waits until its\n"+
				"workload answers on its pod IP again.\n\nFlags:\n")
			fs.PrintDefaults()
		}
		if err := fs.Parse(args[1:]); err != nil {
			return flagExit(err)
		}
		ctx, stop := signalContext()
		defer stop()
		if err := demo.PowerCycle(ctx, *socket, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "edgeunit-demo real-node power-cycle: %v\n", err)
			return 1
		}
		return 0
	case "run":
		var o demo.RealNodeOptions
		fs.StringVar(&o.RepoRoot, "repo-root", "", "The edgeunit repository, whose bin/ holds what the node runs (make e2e-deps builds it).")
		fs.StringVar(&o.SamplesDir, "samples-dir", "", "Directory of the objects to apply (config/samples).")
		fs.StringVar(&o.KubeconfigOut, "kubeconfig-out", "", "Where to write the admin kubeconfig of the real node's cluster; removed on exit.")
		fs.StringVar(&o.Kubectl, "kubectl", "kubectl", "kubectl used for the summary.")
		if err := fs.Parse(args[1:]); err != nil {
			return flagExit(err)
		}
		if o.SamplesDir == "" || o.KubeconfigOut == "" {
			fmt.Fprintln(os.Stderr, "edgeunit-demo real-node run: --samples-dir and --kubeconfig-out are required")
			return 2
		}
		o.Socket, o.Log = *socket, os.Stdout
		ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel), zap.WriteTo(os.Stderr)))
		ctx, stop := signalContext()
		defer stop()
		if err := demo.RunRealNode(ctx, o); err != nil {
			fmt.Fprintf(os.Stderr, "edgeunit-demo real-node run: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "edgeunit-demo real-node: unknown command %q\n%s", args[0], usage)
	return 2
}

func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
