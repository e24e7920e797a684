#!/usr/bin/env bash
# Builds the envtest control-plane binaries (kube-apiserver, etcd) from Go
# modules into bin/k8s, because no release download site is reachable from
# the machines this project runs on. Reuses binaries that are already there
# and does nothing when KUBEBUILDER_ASSETS is set by the caller.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${ENVTEST_BIN_DIR:-$root/bin/k8s}"

if [[ -n "${KUBEBUILDER_ASSETS:-}" && "${KUBEBUILDER_ASSETS}" != "$out" ]]; then
  echo "KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS} is set; not building"
  exit 0
fi

mkdir -p "$out"
stamp="$out/.versions"
want="kube-apiserver=${K8S_VERSION} etcd=${ETCD_VERSION}"
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

build_apiserver() {
  local dir="$work/apiserver"
  mkdir -p "$dir"
  cd "$dir"
  go mod init edgeunit.local/envtest-apiserver >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules as v0.0.0 and replaces
  # them with directories that only exist in its own repository; map each
  # of them to the published v0.x.y that matches the release.
  local modfile staging
  modfile="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  staging="v0${K8S_VERSION#v1}"
  go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" | awk '{print $1}' | while read -r m; do
    go mod edit -replace="${m}=${m}@${staging}"
  done
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  go mod tidy >/dev/null
  local major minor
  major="${K8S_VERSION#v}"; major="${major%%.*}"
  minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  echo "building kube-apiserver ${K8S_VERSION} (a cold build takes several minutes)"
  go build -trimpath -o "$out/kube-apiserver" -ldflags "-s -w \
    -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor} \
    -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z" \
    k8s.io/kubernetes/cmd/kube-apiserver
}

build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir"
  cd "$dir"
  go mod init edgeunit.local/envtest-etcd >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go mod tidy >/dev/null
  echo "building etcd ${ETCD_VERSION}"
  go build -trimpath -o "$out/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3
}

build_etcd
build_apiserver
echo "$want" > "$stamp"
echo "envtest binaries in $out"
