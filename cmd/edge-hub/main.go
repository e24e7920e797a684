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
	"syscall"

	"github.com/go-logr/logr"

	"github.com/edgeunit/edgeunit/internal/hub"
)

func main() {
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
