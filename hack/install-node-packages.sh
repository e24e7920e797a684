#!/usr/bin/env bash
# Installs, from Debian's packages, what the real-node testbed's nodes run
# besides the binaries built from Go modules: runc, the CNI plugins, and
# iproute2 and util-linux for the namespaces. Does nothing when they are
# there.
set -euo pipefail
need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || need+=(containernetworking-plugins)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
# The conversion spec blocks the hub's port inside a node.
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "the real-node testbed needs ${need[*]}: install them as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
