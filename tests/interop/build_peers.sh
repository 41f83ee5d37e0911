#!/usr/bin/env bash
# Build the Go peers the interop tests run (tests/interop/), once per machine, into a cache folder:
#   ${MDL_INTEROP_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/mdl-interop/bin}
# A peer already built at its pinned version is kept; the Go build cache (GOCACHE) makes a rebuild
# fast. The first build of cosign took 573 s on 2 shared cores (module downloads included); a rebuild
# from the Go build cache took 18 s. Without `go`, or when the build fails, nothing is built and
# the interop tests fail, saying which peer is missing.
set -euo pipefail

COSIGN_MODULE=github.com/sigstore/cosign/v3
COSIGN_VERSION=v3.1.3  # the newest the Go module proxy serves (`go list -m -versions github.com/sigstore/cosign/v3`)

BIN="${MDL_INTEROP_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/mdl-interop/bin}"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
  echo "build_peers: go is not installed; the interop tests will fail (cosign missing)" >&2
  exit 0
fi

stamp="$BIN/.cosign-version"
if [ -x "$BIN/cosign" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$COSIGN_VERSION" ]; then
  exit 0
fi
echo "build_peers: building cosign $COSIGN_VERSION into $BIN (the first build takes minutes)" >&2
start=$(date +%s)
if ! GOBIN="$BIN" GOFLAGS=-buildvcs=false go install "$COSIGN_MODULE/cmd/cosign@$COSIGN_VERSION"; then
  # Not fatal here: the rest of the suite runs, and the interop tests fail saying cosign is missing.
  echo "build_peers: could not build cosign $COSIGN_VERSION (is the Go module proxy reachable?)" >&2
  exit 0
fi
echo "$COSIGN_VERSION" > "$stamp"
echo "build_peers: cosign built in $(( $(date +%s) - start )) s" >&2
