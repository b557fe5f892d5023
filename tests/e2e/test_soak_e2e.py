"""The short chaos soak (hack/soak/soak.py): API faults, churn and SIGKILLed leaders on
a control plane of its own, judged against the API server's objects: no violation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_short_soak_finds_no_violation() -> None:
    run_dir = REPO / ".run" / "soak-e2e"
    env = {**os.environ, "EGPU_RUN_DIR": str(run_dir)}
    env.pop("KUBECONFIG", None)
    seed = os.environ.get("EGPU_SOAK_SEED", "20261202")
    run = subprocess.run(
        [sys.executable, str(REPO / "hack" / "soak" / "soak.py"), "--seed", seed],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
        cwd=REPO,
    )
    lines = run.stdout.strip().splitlines()
    assert lines, f"the soak printed nothing (exit {run.returncode}):\n{run.stderr[-4000:]}"
    report = json.loads(lines[-1])
    violations = "\n".join(lines[:-1])
    assert not report["violations_by_kind"], (
        f"seed {seed}: {report['violations_by_kind']}\n{violations}\n"
        f"events: {run_dir / 'soak-events.jsonl'}"
    )
    assert run.returncode == 0, run.stderr[-4000:]
    # The soak did what it says: faults of each kind, lost leaders, a new leader each time.
    losses = (
        report["leader_kills"]["total"]
        + report["leader_partitions"]
        + report["leader_lease_stalls"]
    )
    assert losses >= 3 and report["leader_kills"]["total"] >= 1, report["leader_kills"]
    for takeover in ("", "_after_partition", "_after_lease_stall"):
        assert report[f"time_to_new_leader{takeover}_s"]["without_a_later_bind"] == 0
    assert report["operations"]["total"] >= 50
    injected = report["faults_injected"]
    for kind in ("error_5xx", "throttle_429", "watch_cut", "watch_gone"):
        assert injected.get(kind, 0) > 0, kind
    assert injected.get("lost_write", 0) + injected.get("lost_bind", 0) > 0
