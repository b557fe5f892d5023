"""The binder on the real control plane: gangs land whole in one domain, or not at all,
and an operator killed in the middle of binding a gang leaves no half-bound gang."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape, interconnect
from harness import RUN_DIR, Cluster, OperatorProcess, add_gpu_nodes, wait_until
from objects import gpu_workload

pytestmark = pytest.mark.e2e

MODEL = "NVIDIA-H200"  # only these test nodes have it: other tests' nodes stay out of the way
SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=2,
    nodes_per_leaf=8,
    gpu_models=(MODEL,),
    name_prefix="e2e",
    domain_prefix="e2e-",
)


def workload(name: str, replicas: int, gpus: int = 8, required: str = "egpu.io/leaf") -> str:
    return gpu_workload(
        name, MODEL, replicas, gpus, required=required, requests={"cpu": "4", "memory": "32Gi"}
    )


@pytest.fixture(scope="module")
def gpu_cluster(crds: Cluster) -> Cluster:
    add_gpu_nodes(crds, SHAPE, topology=True)
    return crds


def pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
    return list(json.loads(out)["items"])


def bound(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in items if p["spec"].get("nodeName")]


def leaf_of(cluster: Cluster, node: str) -> str:
    return str(
        cluster.kubectl(
            "get", "node", node, "-o", "jsonpath={.metadata.labels.egpu\\.io/leaf}"
        ).stdout
    )


def assert_no_gpu_shared(items: list[dict[str, Any]]) -> None:
    seen: set[tuple[str, str]] = set()
    for pod in items:
        for gpu in pod["metadata"]["annotations"]["egpu.io/gpu-ids"].split(","):
            key = (pod["spec"]["nodeName"], gpu)
            assert key not in seen, f"GPU {key} given twice"
            seen.add(key)


@pytest.fixture
def running_operator(gpu_cluster: Cluster) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(gpu_cluster, RUN_DIR / "operator-binder-e2e.log")
    proc.start()
    yield proc
    proc.stop()


def test_64_gpu_gang_lands_under_one_leaf(
    gpu_cluster: Cluster, running_operator: OperatorProcess, namespace: str
) -> None:
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("pretrain", 8))
    wait_until(lambda: len(bound(pods(gpu_cluster, namespace))) == 8, 60, "8 pods bound")
    items = pods(gpu_cluster, namespace)
    assert {leaf_of(gpu_cluster, p["spec"]["nodeName"]) for p in items} in (
        {"e2e-b0-l0"},
        {"e2e-b0-l1"},
    )
    assert_no_gpu_shared(items)
    ranks = {p["metadata"]["labels"]["egpu.io/rank"]: p for p in items}
    assert sorted(ranks) == [str(r) for r in range(8)]
    for pod in items:  # what a training job reads to build its rings
        domain = json.loads(pod["metadata"]["annotations"]["egpu.io/domain"])
        assert domain["egpu.io/leaf"] == leaf_of(gpu_cluster, pod["spec"]["nodeName"])
        env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
        assert {"EGPU_RANK", "EGPU_GPU_IDS", "EGPU_TOPOLOGY_DOMAIN"} <= env
    wait_until(
        lambda: (
            json.loads(
                gpu_cluster.kubectl(
                    "get", "gpuworkload", "pretrain", "-n", namespace, "-o", "json"
                ).stdout
            )
            .get("status", {})
            .get("phase")
            == "Running"
        ),
        30,
        "the workload to be Running",
    )
    gpu_cluster.kubectl("delete", "gpuworkload", "pretrain", "-n", namespace)


def test_gang_that_cannot_fit_stays_pending_with_a_reason_and_binds_nothing(
    gpu_cluster: Cluster, running_operator: OperatorProcess, namespace: str
) -> None:
    # 9 pods x 8 GPUs under one leaf: a leaf has 8 nodes.
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("too-big", 9))

    def condition() -> dict[str, Any] | None:
        body = json.loads(
            gpu_cluster.kubectl(
                "get", "gpuworkload", "too-big", "-n", namespace, "-o", "json"
            ).stdout
        )
        for c in body.get("status", {}).get("conditions", []):
            if c["type"] == "Scheduled":
                return dict(c)
        return None

    wait_until(lambda: condition() is not None, 30, "a Scheduled condition")
    cond = condition()
    assert cond is not None and cond["status"] == "False"
    assert "egpu.io/leaf" in cond["message"], cond["message"]
    items = pods(gpu_cluster, namespace)
    assert len(items) == 9 and bound(items) == []
    events = gpu_cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=too-big",
        "-o",
        "json",
    ).stdout
    assert any(
        e["type"] == "Warning" and "egpu.io/leaf" in e["message"]
        for e in json.loads(events)["items"]
    )
    gpu_cluster.kubectl("delete", "gpuworkload", "too-big", "-n", namespace)


def test_a_waiting_gang_scaled_down_is_bound_at_its_new_size(
    gpu_cluster: Cluster, running_operator: OperatorProcess, namespace: str
) -> None:
    # 9 x 8 GPUs cannot fit in one leaf of 8 nodes; scaled to 8 while its pods wait, it
    # fits. The 8 pods left must learn that the gang is 8 now, or the binder waits
    # forever for a ninth (found by the chaos soak).
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("shrinks", 9))
    wait_until(lambda: len(pods(gpu_cluster, namespace)) == 9, 30, "9 member pods")
    gpu_cluster.kubectl(
        "patch",
        "gpuworkload",
        "shrinks",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"replicas": 8}}),
    )
    wait_until(lambda: len(bound(pods(gpu_cluster, namespace))) == 8, 60, "8 members bound")
    items = pods(gpu_cluster, namespace)
    assert len({leaf_of(gpu_cluster, p["spec"]["nodeName"]) for p in bound(items)}) == 1
    assert_no_gpu_shared(items)
    gpu_cluster.kubectl("delete", "gpuworkload", "shrinks", "-n", namespace)


def test_operator_killed_mid_gang_leaves_no_half_bound_gang(
    gpu_cluster: Cluster, namespace: str
) -> None:
    slow = OperatorProcess(
        gpu_cluster, RUN_DIR / "operator-killed.log", env={"EGPU_BIND_DELAY_MS": "400"}
    )
    slow.start()
    try:
        gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("crash", 8))
        wait_until(
            lambda: 1 <= len(bound(pods(gpu_cluster, namespace))) < 8,
            60,
            "the gang to be partly bound",
        )
    finally:
        slow.kill()
    half = pods(gpu_cluster, namespace)
    assert 1 <= len(bound(half)) < 8, "the kill came too late to test anything"
    plans = {
        p["metadata"]["name"]: json.loads(p["metadata"]["annotations"]["egpu.io/plan"])["node"]
        for p in half
        if "egpu.io/plan" in p["metadata"]["annotations"]
    }
    assert len(plans) == 8, "the whole plan must be written before the first bind"

    again = OperatorProcess(gpu_cluster, RUN_DIR / "operator-restarted.log")
    again.start()
    try:
        wait_until(
            lambda: len(bound(pods(gpu_cluster, namespace))) == 8,
            60,
            "the restarted operator to finish the gang",
        )
        items = pods(gpu_cluster, namespace)
        assert {p["metadata"]["name"]: p["spec"]["nodeName"] for p in items} == plans
        assert len({leaf_of(gpu_cluster, p["spec"]["nodeName"]) for p in items}) == 1
        assert_no_gpu_shared(items)
        gpu_cluster.kubectl("delete", "gpuworkload", "crash", "-n", namespace)
    finally:
        again.stop()


def test_a_node_with_unreadable_gpu_info_is_reported_not_fatal(
    gpu_cluster: Cluster, running_operator: OperatorProcess
) -> None:
    node = "e2e-b0-l1-n007"
    gpu_cluster.kubectl(
        "annotate", "--overwrite", "node", node, "egpu.io/gpu-interconnect={not json"
    )
    try:

        def warned() -> bool:
            out = gpu_cluster.kubectl(
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                f"involvedObject.name={node}",
                "-o",
                "json",
            ).stdout
            return any(
                e["reason"] == "InvalidGPUNodeInfo" and e["type"] == "Warning"
                for e in json.loads(out)["items"]
            )

        wait_until(warned, 30, "a Warning Event on the node")
        assert running_operator.healthy()
    finally:
        original = json.dumps(interconnect(SHAPE), separators=(",", ":"))
        gpu_cluster.kubectl(
            "annotate", "--overwrite", "node", node, f"egpu.io/gpu-interconnect={original}"
        )
