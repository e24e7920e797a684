// Command edge-hub is the per-node caching proxy in front of kube-apiserver
// that keeps an edge node working while its cloud link is cut. See
// internal/hub.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/go-logr/logr"

	"github.com/edgeunit/edgeunit/internal/conversion"
	"github.com/edgeunit/edgeunit/internal/hub"
)

// defaultMemoryLimit is the Go heap's soft limit unless GOMEMLIMIT says
// otherwise: the garbage collector works harder before the hub grows past
// it under bursts of large LISTs.
const defaultMemoryLimit = 160 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "install", "convert", "revert":
			os.Exit(runCommand(os.Args[1], os.Args[2:]))
		}
	}
	cfg, err := hub.LoadConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "edge-hub: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	// logr V(n) maps to slog level -n.
	handler := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-cfg.Verbosity)})
	log := logr.FromSlogHandler(handler).WithName("edge-hub")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	h, err := hub.New(cfg, log)
	if err != nil {
		log.Error(err, "Starting the hub failed")
		os.Exit(1)
	}
	if err := h.Run(ctx); err != nil {
		log.Error(err, "Hub failed")
		os.Exit(1)
	}
}

// runCommand runs a subcommand: `install` is the installer DaemonSet's
// container, which writes the hub's static pod manifest and config onto
// the node and converts the node; `convert` and `revert` switch the
// kubelet by hand or from provisioning scripts.
func runCommand(verb string, args []string) int {
	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil)).WithName("edge-hub-" + verb)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	if verb == "install" {
		err = conversion.InstallerMain(ctx, args, log)
	} else {
		err = conversion.CommandMain(ctx, verb, args, log)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		log.Error(err, "edge-hub "+verb+" failed")
		return 1
	}
	return 0
}
