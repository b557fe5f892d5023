#!/usr/bin/env bash
# Obtain the control-plane binaries pinned in hack/versions.env and cache them
# outside git, under $EGPU_CACHE (default ~/.cache/egpu). A binary already in
# the cache is never rebuilt, so the second run takes well under a second.
#
# Each binary comes from its official release where the network allows it;
# otherwise it is built from its Go module (the Go module proxy is reachable
# where the release hosts are not).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${EGPU_CACHE:-$HOME/.cache/egpu}"
BIN="$CACHE/bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}" GOCACHE="$CACHE/go/build"
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"
ARCH="$(go env GOARCH 2>/dev/null || echo amd64)"

log() { printf '[build-binaries] %s\n' "$*" >&2; }

# have NAME VERSION -> true when $BIN/NAME-VERSION exists and runs.
have() { [ -x "$BIN/$1-$2" ]; }

# try_download NAME VERSION URL: fetch an official release binary, quickly
# giving up where the host cannot be reached.
try_download() {
  local name=$1 version=$2 url=$3 tmp
  [ "${EGPU_NO_DOWNLOAD:-}" = 1 ] && return 1
  tmp="$(mktemp "$BIN/.dl.XXXXXX")"
  if curl -fsSL --connect-timeout 5 --max-time 600 -o "$tmp" "$url" 2>/dev/null; then
    chmod +x "$tmp" && mv "$tmp" "$BIN/$name-$version"
    log "$name $version downloaded from $url"
    return 0
  fi
  rm -f "$tmp"
  return 1
}

kubernetes() {
  local v=$KUBERNETES_VERSION all=1 c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do have "$c" "$v" || all=0; done
  [ $all = 1 ] && return 0
  local ok=1
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    have "$c" "$v" || try_download "$c" "$v" "https://dl.k8s.io/release/$v/bin/linux/$ARCH/$c" || { ok=0; break; }
  done
  [ $ok = 1 ] && return 0

  log "building Kubernetes $v from its Go module (first build: tens of minutes on 2 cores)"
  k8s_build kube-apiserver kube-controller-manager kube-scheduler
}

# k8s_build COMMAND...: go build these k8s.io/kubernetes/cmd/* programs in one
# module workspace under $CACHE/src, shared by every Kubernetes binary.
k8s_build() {
  local v=$KUBERNETES_VERSION
  local w="$CACHE/src/kubernetes-$v"
  mkdir -p "$w" && cd "$w"
  [ -f go.mod ] || go mod init local/egpu-kubernetes >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to
  # ./staging with replace directives that only apply inside its own repo.
  # Point each one at the published tag instead (v1.Y.Z <-> v0.Y.Z).
  local gomod staging
  gomod="$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  staging="$(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/src/.*|\1|p' "$gomod")"
  [ -n "$staging" ] || { log "no staging modules found in $gomod"; exit 1; }
  for m in $staging; do go mod edit -replace="$m=$m@v0.${v#v1.}"; done
  go get "k8s.io/kubernetes@$v" >/dev/null
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  mkdir -p out
  for c in "$@"; do
    have "$c" "$v" && continue
    log "go build $c"
    go build -trimpath -tags=selinux,notest -ldflags "$ld" -o "out/$c" "k8s.io/kubernetes/cmd/$c"
    mv "out/$c" "$BIN/$c-$v"
  done
}

# The kubelet of a real node (hack/localcluster.py up --real-nodes N).
kubelet() {
  local v=$KUBERNETES_VERSION
  have kubelet "$v" && return 0
  try_download kubelet "$v" "https://dl.k8s.io/release/$v/bin/linux/$ARCH/kubelet" && return 0
  log "building kubelet $v from its Go module"
  k8s_build kubelet
}

# The fake-GPU device plugin of real nodes (hack/fakegpu), versioned by its source.
fake_gpu_plugin() {
  local v
  v="$(sha256sum "$HERE/fakegpu/main.go" | cut -c1-12)"
  have egpu-fake-gpu-plugin "$v" && return 0
  local w="$CACHE/src/kubernetes-$KUBERNETES_VERSION"
  [ -f "$w/go.mod" ] || { log "fake-gpu-plugin needs the Kubernetes workspace: build kubelet first"; exit 1; }
  log "go build egpu-fake-gpu-plugin ($v)"
  mkdir -p "$w/cmd/egpu-fake-gpu-plugin"
  cp "$HERE/fakegpu/main.go" "$w/cmd/egpu-fake-gpu-plugin/main.go"
  (cd "$w" && go build -trimpath -ldflags "-s -w" -o "$BIN/egpu-fake-gpu-plugin-$v" ./cmd/egpu-fake-gpu-plugin)
}

# The fake DRA kubelet plugin of real nodes (hack/fakedra), versioned by its source.
fake_dra_plugin() {
  local v
  v="$(sha256sum "$HERE/fakedra/main.go" | cut -c1-12)"
  have egpu-fake-dra-plugin "$v" && return 0
  local w="$CACHE/src/kubernetes-$KUBERNETES_VERSION"
  [ -f "$w/go.mod" ] || { log "fake-dra-plugin needs the Kubernetes workspace: build kubelet first"; exit 1; }
  log "go build egpu-fake-dra-plugin ($v)"
  mkdir -p "$w/cmd/egpu-fake-dra-plugin"
  cp "$HERE/fakedra/main.go" "$w/cmd/egpu-fake-dra-plugin/main.go"
  (cd "$w" && go build -trimpath -ldflags "-s -w" -o "$BIN/egpu-fake-dra-plugin-$v" ./cmd/egpu-fake-dra-plugin)
}

etcd() {
  local v=$ETCD_VERSION
  have etcd "$v" && return 0
  log "building etcd $v from its Go module"
  local w="$CACHE/src/etcd-$v"
  mkdir -p "$w" && cd "$w"
  [ -f go.mod ] || go mod init local/egpu-etcd >/dev/null 2>&1
  # etcd's go.mod carries replace directives, so `go install` refuses it; as a
  # dependency of this wrapper module they are ignored.
  go get "go.etcd.io/etcd/server/v3@$v" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd-$v" go.etcd.io/etcd/server/v3
}

go_install() { # NAME VERSION PACKAGE
  local name=$1 v=$2 pkg=$3
  have "$name" "$v" && return 0
  log "go install $pkg@$v"
  GOBIN="$CACHE/gobin-$name-$v" go install -trimpath -ldflags "-s -w" "$pkg@$v"
  mv "$CACHE/gobin-$name-$v/$name" "$BIN/$name-$v"
  rmdir "$CACHE/gobin-$name-$v"
}

# containerd, its runc shim and ctr for real nodes; they run Debian's runc.
# containerd's go.mod has an exclude directive, so `go install pkg@version`
# refuses it: build inside the downloaded module instead, as its own main
# module with its own go.sum. CGO is off: the btrfs and devmapper
# snapshotters, which need it, are left out (real nodes use overlayfs).
containerd() {
  local v=$CONTAINERD_VERSION all=1 c src
  local cmds=(containerd containerd-shim-runc-v2 ctr)
  for c in "${cmds[@]}"; do have "$c" "$v" || all=0; done
  [ $all = 1 ] && return 0
  src="$(go mod download -json "github.com/containerd/containerd@$v" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  local ld="-s -w -X github.com/containerd/containerd/version.Version=$v"
  ld+=" -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd"
  for c in "${cmds[@]}"; do
    have "$c" "$v" && continue
    log "go build github.com/containerd/containerd/cmd/$c ($v)"
    (cd "$src" && go build -mod=readonly -trimpath -tags "no_btrfs no_devmapper" \
      -ldflags "$ld" -o "$BIN/.$c-$v" "./cmd/$c")
    mv "$BIN/.$c-$v" "$BIN/$c-$v"
  done
}

kwok() { go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok; }

helm() {
  have helm "$HELM_VERSION" && return 0
  # helm's release is a tarball; only the Go build path is kept simple here.
  go_install helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(etcd kwok helm kubernetes kubelet containerd fake_gpu_plugin fake_dra_plugin)
start=$(date +%s)
for t in "${targets[@]}"; do
  case "$t" in
    etcd|kwok|helm|kubernetes|kubelet|containerd|fake_gpu_plugin|fake_dra_plugin) ( "$t" ) ;;
    *) log "unknown target $t (etcd, kwok, helm, kubernetes, kubelet, containerd, fake_gpu_plugin, fake_dra_plugin)"; exit 2 ;;
  esac
done
log "binaries ready in $BIN ($(( $(date +%s) - start ))s)"
