#!/usr/bin/env bash
# Benchmark: create 1,000 simulated GPU nodes on a fresh local control plane,
# time it until every node is Ready, then read each control-plane process's
# resident memory. Last line: one JSON object.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${EGPU_RUN_DIR:=$PWD/.run/bench-cluster}"
export EGPU_RUN_DIR
PY=.venv/bin/python
trap '$PY hack/localcluster.py down >/dev/null 2>&1' EXIT
t0=$(date +%s%N)
$PY hack/localcluster.py up --fresh >/dev/null
t_up=$(( ($(date +%s%N) - t0) / 1000000 ))
export KUBECONFIG="$EGPU_RUN_DIR/kubeconfig"
t1=$(date +%s%N)
.venv/bin/egpu sim nodes --blocks 5 --leaves 5 --nodes 40 --gpus 8 --prefix bench
t_created=$(( ($(date +%s%N) - t1) / 1000000 ))
for _ in $(seq 600); do
  ready=$(.venv/bin/kubectl get nodes --no-headers | awk '$2=="Ready"' | wc -l)
  [ "$ready" -ge 1000 ] && break; sleep 1
done
t_ready=$(( ($(date +%s%N) - t1) / 1000000 ))
sleep 5  # let the controllers settle before reading memory
$PY - "$EGPU_RUN_DIR" "$t_up" "$t_created" "$t_ready" "$ready" <<'PY'
import json, sys
from pathlib import Path
run, ready = sys.argv[1], sys.argv[5]
t_up, t_created, t_ready = (int(x) / 1000 for x in sys.argv[2:5])
pids = json.loads((Path(run) / "state.json").read_text())["pids"]
rss = {}
for name, pid in pids.items():
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss[name] = round(int(line.split()[1]) / 1024)
print(f"control plane up in {float(t_up):.1f}s; 1,000 nodes created in {float(t_created):.1f}s, "
      f"{ready} Ready after {float(t_ready):.1f}s")
for name, mib in rss.items():
    print(f"  {name:26} {mib:6d} MiB")
print(json.dumps({"cluster_up_s": round(float(t_up), 1), "nodes": int(ready),
                  "create_s": round(float(t_created), 1), "all_ready_s": round(float(t_ready), 1),
                  "rss_mib": rss, "rss_total_mib": sum(rss.values())}))
PY
