"""The chart's `schedulerName` value reaches the operator through EGPU_SCHEDULER_NAME."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import json
from egpu import SCHEDULER_NAME
from egpu.actuators.manifests import build_member_pod
from egpu.state.pods import is_ours
workload = {
    "apiVersion": "egpu.io/v1alpha1", "kind": "GPUWorkload",
    "metadata": {"name": "w", "namespace": "ns", "uid": "u"},
    "spec": {"replicas": 1, "gpusPerPod": 1,
             "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
}
pod = build_member_pod(workload, 0)
print(json.dumps({
    "name": SCHEDULER_NAME,
    "pod": pod["spec"]["schedulerName"],
    "ours": is_ours(pod),
    "default_is_ours": is_ours({"spec": {"schedulerName": "egpu-scheduler"}}),
}))
"""


def probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**{k: v for k, v in os.environ.items() if k != "EGPU_SCHEDULER_NAME"}, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out))


def test_the_scheduler_name_comes_from_the_environment() -> None:
    got = probe({"EGPU_SCHEDULER_NAME": "gpu-team-scheduler"})
    assert got == {
        "name": "gpu-team-scheduler",
        "pod": "gpu-team-scheduler",
        "ours": True,
        "default_is_ours": False,
    }


def test_the_default_scheduler_name() -> None:
    got = probe({})
    assert got["name"] == got["pod"] == "egpu-scheduler"
    assert got["ours"] is True
