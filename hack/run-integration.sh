#!/usr/bin/env bash
# Start a throw-away control plane, run the integration tests against it, and
# always tear it down, whatever happened.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
: "${EGPU_RUN_DIR:=$PWD/.run/test-cluster}"
export EGPU_RUN_DIR
trap '$PY hack/localcluster.py down' EXIT
# One real kubelet node (hack/realnode.py) beside the simulated ones, with two fake
# GPUs from its device plugin (the Helm test resizes a GPU pod there). --audit logs
# only ServiceAccounts' requests (the Helm test's operator pod): cheap.
$PY hack/localcluster.py up --fresh --audit --real-nodes "${EGPU_REAL_NODES:-1}" \
  --real-node-gpus "${EGPU_REAL_NODE_GPUS:-2}" >/dev/null || exit 1
export KUBECONFIG="$EGPU_RUN_DIR/kubeconfig"
$PY -m pytest -m "integration or e2e" -q "$@"
rc=$?
if [ $rc -ne 0 ]; then
  echo "--- last lines of the control-plane logs ($EGPU_RUN_DIR/logs) ---"
  for f in "$EGPU_RUN_DIR"/logs/*.log; do echo "== $f"; tail -n 15 "$f"; done
fi
exit $rc
