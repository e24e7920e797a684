#!/usr/bin/env bash
# Builds containerd, its runc shim and ctr from Go modules into bin/node, for
# the real-node testbed (test/e2e). Reuses binaries whose stamp names the
# pinned version.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.2.9}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${NODE_BIN_DIR:-$root/bin/node}"
bins=(containerd containerd-shim-runc-v2 ctr)

mkdir -p "$out"
stamp="$out/.containerd"
ok=1
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || ok=0; done
if [[ $ok == 1 && -f "$stamp" && "$(cat "$stamp")" == "$CONTAINERD_VERSION" ]]; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS="-mod=mod -buildvcs=false"
# Static binaries: btrfs is the only snapshotter that needs cgo, and the
# testbed uses overlayfs.
export CGO_ENABLED=0
go mod init edgeunit.local/containerd >/dev/null 2>&1
go mod edit -require="github.com/containerd/containerd/v2@${CONTAINERD_VERSION}"
{
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  for b in "${bins[@]}"; do printf '\t_ "github.com/containerd/containerd/v2/cmd/%s"\n' "$b"; done
  printf ')\n'
} > tools.go
go mod tidy >/dev/null
echo "building containerd ${CONTAINERD_VERSION}"
pkgs=()
for b in "${bins[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$b"); done
go build -trimpath -tags "no_btrfs no_devmapper no_zfs" -o "$out/" \
  -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}" "${pkgs[@]}"
echo "$CONTAINERD_VERSION" > "$stamp"
echo "containerd binaries in $out"
