#!/usr/bin/env bash
# Regenerates code, manifests and the bundle from the committed tree only (a
# clean clone), so uncommitted work in progress never leaks into generated
# files, and copies the results back.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git clone -q "$root" "$tmp/repo"
mkdir -p "$tmp/repo/bin"
cp "$root"/bin/controller-gen-* "$tmp/repo/bin/" 2>/dev/null || true
make -C "$tmp/repo" generate manifests bundle >/dev/null
(cd "$tmp/repo" && git status --porcelain -- api config bundle bundle.Dockerfile | awk '{print $2}') | while read -r f; do
  mkdir -p "$root/$(dirname "$f")"
  cp -r "$tmp/repo/$f" "$root/$f"
  echo "updated $f"
done
