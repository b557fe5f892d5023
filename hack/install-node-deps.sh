#!/usr/bin/env bash
# Install what a real kubelet node and the registry-free image build need, from
# Debian's packages: containerd (for its `ctr`, which imports images; the node
# runs the containerd that hack/build-binaries.sh builds), runc, the CNI plugins, iptables (one DNAT rule
# stands in for kube-proxy), mmdebstrap (Debian root file systems for images).
# Idempotent: a second run that finds everything installed does nothing.
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins iptables mmdebstrap)

missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "[install-node-deps] need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "[install-node-deps] apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${PACKAGES[@]}"; do
  printf '[install-node-deps] %s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")" >&2
done
