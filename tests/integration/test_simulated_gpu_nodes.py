"""Simulated GPU nodes: created with their GPUs and labels, made Ready by KWOK,
and pods on them run, turn Ready after the cold-start delay, and carry the
container `resources` that in-place resize needs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape, create_nodes
from harness import Cluster, wait_until

pytestmark = pytest.mark.integration

SHAPE = ClusterShape(blocks=1, leaves_per_block=2, nodes_per_leaf=2, name_prefix="itest")


def _nodes(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "nodes", "-l", "egpu.io/simulated=true", "-o", "json").stdout
    return [n for n in json.loads(out)["items"] if n["metadata"]["name"].startswith("itest-")]


def _ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def gpu_nodes(cluster: Cluster) -> list[dict[str, Any]]:
    create_nodes(SHAPE, kubeconfig=cluster.kubeconfig)
    wait_until(
        lambda: len([n for n in _nodes(cluster) if _ready(n)]) == SHAPE.node_count,
        60,
        "KWOK to mark the simulated nodes Ready",
    )
    return _nodes(cluster)


def test_nodes_carry_gpus_labels_and_interconnect(gpu_nodes: list[dict[str, Any]]) -> None:
    assert len(gpu_nodes) == 4
    for node in gpu_nodes:
        labels = node["metadata"]["labels"]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert labels["egpu.io/leaf"].startswith(labels["egpu.io/block"] + "-")
        interconnect = json.loads(node["metadata"]["annotations"]["egpu.io/gpu-interconnect"])
        assert interconnect["nvlinkGroups"] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        assert interconnect["numa"] == [0, 0, 0, 0, 1, 1, 1, 1]
    leaves = {n["metadata"]["labels"]["egpu.io/leaf"] for n in gpu_nodes}
    assert leaves == {"b0-l0", "b0-l1"}


def _pod(name: str, ready_after: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": {"egpu.io/sim-ready-after": ready_after}},
            "spec": {
                "nodeSelector": {"egpu.io/leaf": "b0-l1"},
                "containers": [
                    {
                        "name": "main",
                        "image": "registry.local/egpu/sim:latest",
                        "resources": {
                            "requests": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "2"},
                            "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "2"},
                        },
                    }
                ],
            },
        }
    )


def test_pod_runs_then_turns_ready_after_cold_start(
    cluster: Cluster, gpu_nodes: list[dict[str, Any]], namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("cold", "3s"))

    def pod() -> dict[str, Any]:
        out = cluster.kubectl("get", "pod", "cold", "-n", namespace, "-o", "json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def condition(p: dict[str, Any], kind: str) -> str | None:
        for c in p.get("status", {}).get("conditions", []):
            if c["type"] == kind:
                return str(c["status"])
        return None

    wait_until(lambda: pod()["status"].get("phase") == "Running", 30, "the pod to run")
    running = pod()
    assert running["spec"]["nodeName"].startswith("itest-b0-l1-")
    assert condition(running, "Ready") == "False", "Ready before its cold start elapsed"
    status = running["status"]["containerStatuses"][0]
    assert status["resources"]["requests"]["cpu"] == "1"
    assert status["allocatedResources"]["memory"] == "2Gi"
    wait_until(lambda: condition(pod(), "Ready") == "True", 30, "the pod to turn Ready")


def test_fault_label_turns_node_not_ready(
    cluster: Cluster, gpu_nodes: list[dict[str, Any]]
) -> None:
    name = gpu_nodes[0]["metadata"]["name"]
    cluster.kubectl("label", "node", name, "egpu.io/sim-fault=GPUFallenOffBus")
    try:

        def reason() -> str | None:
            node = json.loads(cluster.kubectl("get", "node", name, "-o", "json").stdout)
            for c in node["status"]["conditions"]:
                if c["type"] == "Ready":
                    return f"{c['status']}/{c.get('reason')}"
            return None

        wait_until(lambda: reason() == "False/GPUFallenOffBus", 30, "the fault to show")
    finally:
        cluster.kubectl("label", "node", name, "egpu.io/sim-fault-", check=False)
    wait_until(
        lambda: _ready(json.loads(cluster.kubectl("get", "node", name, "-o", "json").stdout)),
        30,
        "the node to recover",
    )
