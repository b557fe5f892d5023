#!/usr/bin/env bash
# Build prometheus-adapter (the custom-metrics API server the stock HPA reads) from its
# Go module and cache it under $EGPU_CACHE/bin; prints the binary's path.
# A cached binary is never rebuilt. First build: a few minutes on two cores.
#
# `go install module@version` asks the proxy for the module's version list, which
# some proxies refuse; downloading the pinned version and building in a copy of it
# needs only the version itself.
set -euo pipefail

# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"
VERSION="$PROMETHEUS_ADAPTER_VERSION"
CACHE="${EGPU_CACHE:-$HOME/.cache/egpu}"
BIN="$CACHE/bin/prometheus-adapter-$VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}" GOCACHE="$CACHE/go/build"
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"

log() { printf '[build-prometheus-adapter] %s\n' "$*" >&2; }

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { log "go is not installed"; exit 1; }
mkdir -p "$CACHE/bin" "$GOMODCACHE" "$GOCACHE"
log "downloading sigs.k8s.io/prometheus-adapter@$VERSION"
dir="$(go mod download -json "sigs.k8s.io/prometheus-adapter@$VERSION" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
work="$(mktemp -d "$CACHE/.adapter-src.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$dir/." "$work/" && chmod -R u+w "$work"
log "go build ./cmd/adapter"
(cd "$work" && go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" ./cmd/adapter)
mv "$BIN.tmp" "$BIN"
log "built $BIN"
echo "$BIN"
