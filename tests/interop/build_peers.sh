#!/usr/bin/env bash
# Build the Go peers the interop tests run (tests/interop/), once per machine, into a cache folder:
#   ${MDL_INTEROP_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/mdl-interop/bin}
# Each peer is pinned; one already built at its pinned version is kept, and the Go build cache
# (GOCACHE) makes a rebuild fast. First builds on 2 shared cores, module downloads included:
# cosign 573 s, the others are in the README's interop table. Without `go`, or when a build fails,
# that peer is not built and the tests that need it fail, naming it: the rest still builds.
#
# Modules the Go module proxy does not serve (checked 2026-12-02, `go list -m -versions`):
# github.com/modelpack/modctl (any version) and github.com/kitops-ml/kitops / jozu-ai/kitops (any
# version). modctl's previous module path github.com/CloudNativeAI/modctl serves v0.0.2-v0.0.5,
# which is what is built here (it links libgit2, so libgit2-dev is installed by .ci/test).
set -uo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)

BIN="${MDL_INTEROP_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/mdl-interop/bin}"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
  echo "build_peers: go is not installed; the interop tests will fail, naming the missing peers" >&2
  exit 0
fi
export GOFLAGS=-buildvcs=false

# build NAME VERSION-STAMP COMMAND...: run COMMAND (which writes $BIN/NAME) unless NAME is there at
# that stamp. A failure is reported and left: the tests needing NAME fail, saying it is missing.
build() {
  local name=$1 stamp=$2; shift 2
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/.$name-version" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "build_peers: building $name ($stamp) into $BIN" >&2
  local start; start=$(date +%s)
  if ! "$@"; then
    echo "build_peers: could not build $name ($stamp); is the Go module proxy reachable?" >&2
    return 0
  fi
  echo "$stamp" > "$BIN/.$name-version"
  echo "build_peers: $name built in $(( $(date +%s) - start )) s" >&2
}

install_module() {  # MODULE/cmd/NAME@VERSION into $BIN
  GOBIN="$BIN" go install "$1"
}

build cosign v3.1.3 install_module github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3
build oras v1.3.6 install_module oras.land/oras/cmd/oras@v1.3.6
build crane v0.22.1 install_module github.com/google/go-containerregistry/cmd/crane@v0.22.1
# distribution v3's registry, under its own name beside Debian's docker-registry (2.8.2).
build registry-v3 v3.1.2 sh -c 'd=$(mktemp -d) && GOBIN="$d" go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2 && mv "$d/registry" "$1/registry-v3" && rmdir "$d"' _ "$BIN"
# `go install` of it fails here: the proxy refuses the version list go install reads to check for
# deprecation, so the pinned module is downloaded and built in its own folder instead.
build modctl v0.0.5 sh -c 'd=$(go mod download -json github.com/CloudNativeAI/modctl@v0.0.5 | sed -n "s/^[[:space:]]*\"Dir\": \"\(.*\)\",\$/\1/p") && [ -n "$d" ] && cd "$d" && go build -ldflags "-X github.com/CloudNativeAI/modctl/pkg/version.GitVersion=v0.0.5" -o "$1/modctl" .' _ "$BIN"
# Docker's own packager and puller (github.com/docker/model-runner pkg/distribution) behind a small
# program of ours; its go.mod pins the version. model-runner v1.2.9 needs Go >= 1.26.10, which the
# Go command fetches from the module proxy as the go1.27.3 toolchain.
build mdl-dmr "$(cat "$HERE/dmr/go.mod" "$HERE/dmr/main.go" 2>/dev/null | sha256sum | cut -c1-16)" \
  sh -c 'cd "$1/dmr" && GOTOOLCHAIN=go1.27.3 go build -o "$2/mdl-dmr" .' _ "$HERE" "$BIN"
exit 0
