#!/usr/bin/env bash
# Builds Kubernetes binaries from Go modules into bin/k8s, because no release
# download site is reachable from the machines this project runs on.
#
#   hack/build-k8s.sh                      # kube-apiserver and etcd (envtest)
#   hack/build-k8s.sh kubelet kube-scheduler ...
#
# Components: kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy, etcd. Each binary is reused while its stamp (bin/k8s/.<name>)
# names the pinned version. With no arguments it does nothing when
# KUBEBUILDER_ASSETS points somewhere else (the caller brings its own).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${ENVTEST_BIN_DIR:-$root/bin/k8s}"

if [[ $# -eq 0 ]]; then
  if [[ -n "${KUBEBUILDER_ASSETS:-}" && "${KUBEBUILDER_ASSETS}" != "$out" ]]; then
    echo "KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS} is set; not building"
    exit 0
  fi
  set -- etcd kube-apiserver
fi

mkdir -p "$out"
version_of() { [[ "$1" == etcd ]] && echo "$ETCD_VERSION" || echo "$K8S_VERSION"; }
current() { [[ -x "$out/$1" && -f "$out/.$1" && "$(cat "$out/.$1")" == "$(version_of "$1")" ]]; }

want_etcd=0
k8s=()
for c in "$@"; do
  case "$c" in
    etcd) current etcd || want_etcd=1 ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
      current "$c" || k8s+=("$c") ;;
    *) echo "unknown component $c" >&2; exit 2 ;;
  esac
done
[[ $want_etcd == 0 && ${#k8s[@]} == 0 ]] && exit 0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

build_kubernetes() {
  local dir="$work/kubernetes"
  mkdir -p "$dir"
  cd "$dir"
  go mod init edgeunit.local/k8s-binaries >/dev/null 2>&1
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
  local pkgs=() c
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "${k8s[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } > tools.go
  for c in "${k8s[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go mod tidy >/dev/null
  local major minor
  major="${K8S_VERSION#v}"; major="${major%%.*}"
  minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  echo "building ${k8s[*]} ${K8S_VERSION} (a cold build takes several minutes)"
  # One go build for all of them: they share most of their packages.
  go build -trimpath -o "$out/" -ldflags "-s -w \
    -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor} \
    -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z" \
    "${pkgs[@]}"
  for c in "${k8s[@]}"; do echo "$K8S_VERSION" > "$out/.$c"; done
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
  echo "$ETCD_VERSION" > "$out/.etcd"
}

[[ $want_etcd == 1 ]] && build_etcd
[[ ${#k8s[@]} -gt 0 ]] && build_kubernetes
echo "built into $out"
