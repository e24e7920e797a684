//go:build !linux

package demo

import (
	"context"
	"errors"
)

// realNode is Linux only: its kubelet runs in namespaces and cgroups.
type realNode struct{}

func startRealNode(context.Context, RealNodeOptions, *realNodeService) (*realNode, error) {
	return nil, &skipError{reason: "it runs on Linux only (network and mount namespaces, cgroup v1)"}
}

func (*realNode) PowerCycle(context.Context, func(string)) error {
	return errors.New("the real edge node runs on Linux only")
}

func (*realNode) stop(bool) error { return nil }
