#!/usr/bin/env bash
# Builds what the real-node testbed (test/e2e) runs of this project into
# bin/e2e: the binaries (for the cloud side) and three images as OCI image
# archives, built without Docker by hack/tools/ociimage:
#   edgeunit.local/edgeunit:e2e  every edgeunit binary, laid out as the Dockerfile does
#   edgeunit.local/pause:e2e     the pod sandbox process
#   edgeunit.local/testapp:e2e   the workload of the specs
# Go's build cache makes a rebuild of unchanged sources quick.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${E2E_BIN_DIR:-$root/bin/e2e}"
mkdir -p "$out/images" "$out/tools"
cd "$root"

export CGO_ENABLED=0 GOOS=linux GOARCH="${GOARCH:-$(go env GOARCH)}"
go build -trimpath -ldflags "-s -w" -o "$out/" ./cmd/... ./test/e2e/images/testapp ./test/e2e/images/pause
(cd hack/tools && GOOS= GOARCH= go build -o "$out/tools/ociimage" ./ociimage)

oci="$out/tools/ociimage"
files=()
for b in manager edge-hub tunnel-server tunnel-agent edge-ipam edgeunit-demo; do files+=("$out/$b=/$b"); done
# As the Dockerfile: distroless-style, user 65532, entrypoint /manager.
"$oci" -o "$out/images/edgeunit.tar" -ref edgeunit.local/edgeunit:e2e -entrypoint /manager -user 65532 \
  -platform "linux/$GOARCH" "${files[@]}"
"$oci" -o "$out/images/pause.tar" -ref edgeunit.local/pause:e2e -entrypoint /pause -user 65535 \
  -platform "linux/$GOARCH" "$out/pause=/pause"
"$oci" -o "$out/images/testapp.tar" -ref edgeunit.local/testapp:e2e -entrypoint /testapp \
  -platform "linux/$GOARCH" "$out/testapp=/testapp"
echo "e2e binaries and images in $out"
