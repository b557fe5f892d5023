#!/usr/bin/env bash
# The demo: simulated GPU nodes, the CRDs, the operator, the sample objects.
# Expects the control plane to be up (make demo does that first).
#   hack/demo.sh        run the demo (idempotent)
#   hack/demo.sh stop   stop the demo operator
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${EGPU_RUN_DIR:=$PWD/.run/cluster}"
export EGPU_RUN_DIR KUBECONFIG="$EGPU_RUN_DIR/kubeconfig"
BIN=$PWD/.venv/bin
PIDFILE="$EGPU_RUN_DIR/operator.pid"
SHAPE=(${DEMO_SHAPE:---blocks 2 --leaves 4 --nodes 16 --gpus 8})

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "${1:-}" = stop ]; then
  if [ -f "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null; then echo "operator stopped"; fi
  rm -f "$PIDFILE"
  exit 0
fi

say "Simulated GPU nodes (${SHAPE[*]})"
"$BIN/egpu" sim nodes "${SHAPE[@]}"
want=$(( $(echo "${SHAPE[@]}" | awk '{for(i=1;i<NF;i++){if($i=="--blocks")b=$(i+1);if($i=="--leaves")l=$(i+1);if($i=="--nodes")n=$(i+1)}} END{print b*l*n}') ))
for _ in $(seq 120); do
  ready=$("$BIN/kubectl" get nodes -l egpu.io/simulated=true --no-headers 2>/dev/null | awk '$2=="Ready"' | wc -l)
  [ "$ready" -ge "$want" ] && break; sleep 1
done
echo "$ready of $want simulated nodes Ready"

if ls crds/*.yaml >/dev/null 2>&1; then
  say "CustomResourceDefinitions"
  "$BIN/kubectl" apply --server-side -f crds/
  "$BIN/kubectl" wait --for=condition=Established crd --all --timeout=60s >/dev/null
fi

say "Operator"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "already running (pid $(cat "$PIDFILE"))"
else
  HEALTH_PORT=$(.venv/bin/python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  METRICS_PORT=$(.venv/bin/python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  echo "$HEALTH_PORT $METRICS_PORT" > "$EGPU_RUN_DIR/operator.ports"
  setsid "$BIN/egpu-operator" --kubeconfig "$KUBECONFIG" --bind-address 127.0.0.1 \
    --health-port "$HEALTH_PORT" --metrics-port "$METRICS_PORT" \
    >> "$EGPU_RUN_DIR/logs/operator.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  .venv/bin/python hack/localcluster.py adopt --name egpu-operator --pid "$(cat "$PIDFILE")"
fi
read -r HEALTH_PORT METRICS_PORT < "$EGPU_RUN_DIR/operator.ports"
for _ in $(seq 60); do
  curl -fsS "http://127.0.0.1:$HEALTH_PORT/healthz" >/dev/null 2>&1 && break; sleep 1
done
echo "healthz: $(curl -fsS "http://127.0.0.1:$HEALTH_PORT/healthz" 2>&1 || echo DOWN)"
echo "metrics: http://127.0.0.1:$METRICS_PORT/metrics ($(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep -c '^egpu_') egpu_ series)"
echo "logs:    $EGPU_RUN_DIR/logs/operator.log (JSON)"

say "The cluster's network levels (examples/topology.yaml)"
"$BIN/kubectl" apply -f examples/topology.yaml

say "What-if: where would the 64-GPU training gang go? (egpu plan, creates nothing)"
# The full answer (one line per rank): it is short, and a cut pipe could fail the demo.
"$BIN/egpu" plan -f examples/training-gang-64.yaml || echo "(the gang does not fit now)"

say "Sample objects (examples/)"
for f in examples/*.yaml; do "$BIN/kubectl" apply -f "$f"; done
for _ in $(seq 90); do
  phase=$("$BIN/kubectl" get gpuworkload llm-pretrain -o jsonpath='{.status.phase}' 2>/dev/null)
  [ "$phase" = Running ] && break; sleep 1
done
echo "llm-pretrain: ${phase:-unknown}"
"$BIN/kubectl" get pods -l egpu.io/workload=llm-pretrain \
  -o custom-columns='POD:.metadata.name,RANK:.metadata.labels.egpu\.io/rank,NODE:.spec.nodeName,GPUS:.metadata.annotations.egpu\.io/gpu-ids,READY:.status.conditions[?(@.type=="Ready")].status'
"$BIN/kubectl" get gpuworkload llm-pretrain \
  -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'

say "What the cluster looks like"
"$BIN/kubectl" get nodes -l egpu.io/simulated=true \
  -o custom-columns='NAME:.metadata.name,BLOCK:.metadata.labels.egpu\.io/block,LEAF:.metadata.labels.egpu\.io/leaf,GPUS:.status.allocatable.nvidia\.com/gpu,MODEL:.metadata.labels.nvidia\.com/gpu\.product' \
  | awk 'NR<=6; END {if (NR>6) print "..."}'
total=$("$BIN/kubectl" get nodes -l egpu.io/simulated=true -o jsonpath='{range .items[*]}{.status.allocatable.nvidia\.com/gpu}{"\n"}{end}' | awk '{s+=$1} END {print s}')
echo "$("$BIN/kubectl" get nodes -l egpu.io/simulated=true --no-headers | wc -l) simulated GPU nodes, $total GPUs"
if "$BIN/kubectl" api-resources --api-group=egpu.io -o name 2>/dev/null | grep egpu >/dev/null; then
  say "egpu objects (kubectl get egpu -A)"
  "$BIN/kubectl" get egpu -A || true
fi
say "Topology with free/used GPUs (egpu topology)"
"$BIN/egpu" topology --svg "$EGPU_RUN_DIR/topology.svg" | awk 'NR<=12; END {if (NR>12) print "..."}'
echo "picture: $EGPU_RUN_DIR/topology.svg"

say "Done"
echo "export KUBECONFIG=$KUBECONFIG   # to look around"
echo "make demo-down                  # to stop everything"
