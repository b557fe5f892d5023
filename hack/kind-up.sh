#!/usr/bin/env bash
# For users with Docker: a kind cluster whose worker nodes advertise fake GPUs
# and carry the same topology and GPU labels as the simulated local cluster.
# (It cannot run on a machine without a container engine, such as our CI.)
#   KIND_WORKERS=4 GPUS_PER_NODE=8 hack/kind-up.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NAME=${KIND_CLUSTER_NAME:-egpu}
WORKERS=${KIND_WORKERS:-4}
GPUS=${GPUS_PER_NODE:-8}
LEAVES=${KIND_LEAVES:-2}
command -v kind >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "no Docker engine is reachable; kind needs one" >&2; exit 1; }

cfg=$(mktemp)
{
  echo "kind: Cluster"
  echo "apiVersion: kind.x-k8s.io/v1alpha4"
  echo "nodes:"
  echo "- role: control-plane"
  for _ in $(seq "$WORKERS"); do echo "- role: worker"; done
} > "$cfg"
kind get clusters 2>/dev/null | grep -x "$NAME" >/dev/null || kind create cluster --name "$NAME" --config "$cfg"
rm -f "$cfg"
export KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}"
kubectl config use-context "kind-$NAME" >/dev/null

i=0
for node in $(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o name); do
  n=${node#node/}
  leaf=$(( i % LEAVES ))
  kubectl label --overwrite node "$n" egpu.io/block=b0 "egpu.io/leaf=b0-l$leaf" \
    nvidia.com/gpu.present=true nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3 \
    nvidia.com/gpu.count="$GPUS" nvidia.com/gpu.memory=81559 egpu.io/simulated=true
  groups=$(python3 -c "import json;g=$GPUS;h=max(1,g//2);print(json.dumps({'nvlinkGroups':[list(range(s,min(s+h,g))) for s in range(0,g,h)],'numa':[x//h for x in range(g)]},separators=(',',':')))")
  kubectl annotate --overwrite node "$n" "egpu.io/gpu-interconnect=$groups"
  # Extended resources are advertised through the node's status.
  kubectl patch node "$n" --subresource=status --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$GPUS\"}]"
  i=$(( i + 1 ))
done
kubectl apply --server-side -f crds/
echo "kind cluster '$NAME' ready: $i workers x $GPUS fake GPUs. Run the operator with:"
echo "  .venv/bin/egpu-operator --kubeconfig \"$KUBECONFIG\""
