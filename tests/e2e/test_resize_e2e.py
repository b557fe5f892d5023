"""In-place resize end to end: the operator, the real API server and the simulated
kubelet. A GPUWorkload member whose memory use rises grows in 1 GiB steps without a
restart; a resize that cannot be made leaves a clear Event on the workload."""

from __future__ import annotations

import json
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape
from egpu.sim.usage import usage_annotation
from harness import Cluster, OperatorProcess, add_gpu_nodes, wait_until

pytestmark = pytest.mark.e2e

MODEL = "NVIDIA-L40S"  # only these test nodes have it: other tests' nodes stay out of the way
SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=1,
    nodes_per_leaf=4,
    gpus_per_node=8,
    gpu_models=(MODEL,),
    cpu_per_node="16",
    memory_per_node="16Gi",
    name_prefix="rze2e",
    domain_prefix="rze2e-",
)
USAGE = "egpu.io/sim-usage"


def workload(
    name: str,
    memory: str,
    usage: str,
    annotations: dict[str, str] | None = None,
    *,
    gpus: int = 8,  # a node to itself: its room is the test's to control
    model: str = MODEL,
    **resize: Any,
) -> str:
    return json.dumps(
        {
            "apiVersion": "egpu.io/v1alpha1",
            "kind": "GPUWorkload",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "gpusPerPod": gpus,
                "gpuModel": model,
                "gang": {"policy": "None"},
                "resize": {
                    "mode": "Auto",
                    "cpu": {"min": "500m", "max": "4", "step": "500m"},
                    "memory": {"min": "1Gi", "max": "32Gi", "step": "1Gi"},
                    **resize,
                },
                "template": {
                    "metadata": {
                        "annotations": {
                            USAGE: usage_annotation({"main": {"cpu": "700m", "memory": usage}}),
                            **(annotations or {}),
                        }
                    },
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "registry.local/egpu/sim:latest",
                                "resources": {"requests": {"cpu": "1", "memory": memory}},
                            }
                        ]
                    },
                },
            },
        }
    )


@pytest.fixture(scope="module")
def resize_cluster(crds: Cluster) -> Cluster:
    add_gpu_nodes(crds, SHAPE)
    return crds


def member(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "pod", f"{name}-0", "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def running(pod: dict[str, Any] | None) -> bool:
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)


def spec_memory(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["containers"][0]["resources"]["requests"]["memory"])


def status_memory(pod: dict[str, Any]) -> str:
    return str(pod["status"]["containerStatuses"][0]["resources"]["requests"]["memory"])


def set_usage(cluster: Cluster, namespace: str, pod: str, memory: str) -> None:
    text = usage_annotation({"main": {"cpu": "700m", "memory": memory}})
    cluster.kubectl("annotate", "pod", pod, "-n", namespace, f"{USAGE}={text}", "--overwrite")


def warnings_about(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
        "-o", "json",
    ).stdout  # fmt: skip
    return [e for e in json.loads(out)["items"] if e["type"] == "Warning"]


def test_rising_memory_use_grows_the_pod_in_place_in_1gib_steps(
    resize_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = resize_cluster
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("grow", "2Gi", "1.5Gi"))
    wait_until(lambda: running(member(cluster, namespace, "grow")), 60, "the member to run")
    first = member(cluster, namespace, "grow")
    assert first is not None
    started = first["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]

    seen = [spec_memory(first)]
    # Usage / 0.8 target utilisation, rounded up to the 1 GiB step: one step each.
    for usage, want in (("2.3Gi", "3Gi"), ("3.1Gi", "4Gi"), ("3.9Gi", "5Gi")):
        set_usage(cluster, namespace, "grow-0", usage)

        def settled(want: str = want) -> bool:
            pod = member(cluster, namespace, "grow")
            assert pod is not None, "the member pod was replaced"
            if spec_memory(pod) != seen[-1]:
                seen.append(spec_memory(pod))
            return spec_memory(pod) == want and status_memory(pod) == want

        wait_until(settled, 30, f"the pod to grow to {want} in place")

    assert seen == ["2Gi", "3Gi", "4Gi", "5Gi"]
    last = member(cluster, namespace, "grow")
    assert last is not None
    assert last["metadata"]["uid"] == first["metadata"]["uid"]
    status = last["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0
    assert status["state"]["running"]["startedAt"] == started
    resources = last["spec"]["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == "1", "cpu use was steady: left alone"
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "8"
    assert "egpu_resizes_applied_total" in operator.metrics()
    assert warnings_about(cluster, namespace, "grow") == []


def test_a_resize_the_kubelet_finds_infeasible_leaves_a_clear_event(
    resize_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = resize_cluster
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=workload("stuck", "2Gi", "1.5Gi", {"egpu.io/sim-resize": "infeasible"}),
    )  # fmt: skip
    wait_until(lambda: running(member(cluster, namespace, "stuck")), 60, "the member to run")
    set_usage(cluster, namespace, "stuck-0", "2.3Gi")

    def event() -> dict[str, Any] | None:
        found = [
            e
            for e in warnings_about(cluster, namespace, "stuck")
            if e["reason"] == "ResizeInfeasible"
        ]
        return found[0] if found else None

    wait_until(lambda: event() is not None, 30, "a ResizeInfeasible Event on the workload")
    message = event()["message"]  # type: ignore[index]
    assert "pod stuck-0" in message and "cannot fit the resize" in message
    assert "Node didn't have enough capacity" in message
    assert "waiting" in message
    pod = member(cluster, namespace, "stuck")
    assert pod is not None
    assert spec_memory(pod) == "3Gi" and status_memory(pod) == "2Gi", "asked, not actuated"
    assert pod["metadata"]["generation"] == 2, "the operator must not retry a pending resize"


def test_growth_the_node_cannot_fit_waits_with_a_clear_event(
    resize_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = resize_cluster
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("big", "12Gi", "10Gi"))
    wait_until(lambda: running(member(cluster, namespace, "big")), 60, "the member to run")
    set_usage(cluster, namespace, "big-0", "14Gi")  # wants 18Gi on a 16Gi node

    def event() -> dict[str, Any] | None:
        found = [
            e
            for e in warnings_about(cluster, namespace, "big")
            if e["reason"] == "ResizeInfeasible"
        ]
        return found[0] if found else None

    wait_until(lambda: event() is not None, 30, "a ResizeInfeasible Event on the workload")
    message = event()["message"]  # type: ignore[index]
    assert "pod big-0 cannot grow in place on node rze2e-" in message
    assert "node lacks room" in message and "waiting for room" in message
    pod = member(cluster, namespace, "big")
    assert pod is not None and spec_memory(pod) == "12Gi", "nothing applied"


MOVE_MODEL = "NVIDIA-A10"  # the move test's own nodes
MOVE_SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=2,
    nodes_per_leaf=2,
    gpus_per_node=8,
    gpu_models=(MOVE_MODEL,),
    cpu_per_node="16",
    memory_per_node="16Gi",
    name_prefix="mve2e",
    domain_prefix="mve2e-",
)


@pytest.fixture(scope="module")
def move_cluster(crds: Cluster) -> Cluster:
    add_gpu_nodes(crds, MOVE_SHAPE, topology=True)
    return crds


def foreign_pod(name: str, node: str, memory: str, gpus: int = 0) -> str:
    """A pod of another scheduler, put straight onto a node: capacity the operator respects."""
    resources: dict[str, Any] = {"requests": {"cpu": "100m", "memory": memory}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "containers": [
                    {"name": "c", "image": "registry.local/other:latest", "resources": resources}
                ],
            },
        }
    )


def node_labels(cluster: Cluster, node: str) -> dict[str, str]:
    out = cluster.kubectl("get", "node", node, "-o", "json").stdout
    return dict(json.loads(out)["metadata"]["labels"])


def test_growth_the_node_cannot_fit_moves_the_pod_within_its_leaf(
    move_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = move_cluster
    spec = workload(
        "mover", "8Gi", "6Gi", gpus=4, model=MOVE_MODEL, onInfeasible="Move", headroom={}
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=spec)
    wait_until(lambda: running(member(cluster, namespace, "mover")), 60, "the member to run")
    first = member(cluster, namespace, "mover")
    assert first is not None
    node = first["spec"]["nodeName"]
    leaf = node_labels(cluster, node)["egpu.io/leaf"]
    nodes = json.loads(
        cluster.kubectl("get", "nodes", "-l", "egpu.io/block=mve2e-b0", "-o", "json").stdout
    )["items"]
    same_leaf = [
        n["metadata"]["name"] for n in nodes if n["metadata"]["labels"]["egpu.io/leaf"] == leaf
    ]
    other_leaf = [
        n["metadata"]["name"] for n in nodes if n["metadata"]["labels"]["egpu.io/leaf"] != leaf
    ]
    # Its node keeps 1Gi free; a node of the other leaf has exactly the pod's 4 GPUs
    # free, so plain best fit would go there: only the domain rule keeps the pod home.
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=foreign_pod("filler", node, "7Gi"))
    bait = foreign_pod("bait", other_leaf[0], "1Gi", gpus=4)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bait)

    def both_running() -> bool:
        out = cluster.kubectl("get", "pods", "filler", "bait", "-n", namespace, "--no-headers")
        return out.stdout.split().count("Running") == 2

    wait_until(both_running, 30, "the other scheduler's pods to run")

    set_usage(cluster, namespace, "mover-0", "10Gi")  # wants 13Gi; 1Gi free in place

    def moved() -> dict[str, Any] | None:
        pod = member(cluster, namespace, "mover")
        if pod is None or pod["metadata"]["uid"] == first["metadata"]["uid"]:
            return None
        return pod if running(pod) else None

    wait_until(lambda: moved() is not None, 60, "the member to be recreated and run elsewhere")
    again = moved()
    assert again is not None
    assert again["spec"]["nodeName"] in same_leaf and again["spec"]["nodeName"] != node
    assert spec_memory(again) == "13Gi"
    requests = again["spec"]["containers"][0]["resources"]["requests"]
    assert requests["nvidia.com/gpu"] == "4" and requests["cpu"] == "1"
    assert json.loads(again["metadata"]["annotations"]["egpu.io/within"]) == ["mve2e-b0", leaf]

    selector = "involvedObject.name=mover,reason=ResizeMove"
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", selector, "-o", "json"
    )
    events = json.loads(out.stdout)["items"]
    assert events, "a ResizeMove Event on the workload"
    message = events[0]["message"]
    assert f"pod mover-0 cannot grow in place on node {node}" in message
    assert f"on node {again['spec']['nodeName']} in egpu.io/leaf={leaf}" in message
    assert "the pod restarts" in message
    body = json.loads(
        cluster.kubectl("get", "gpuworkload", "mover", "-n", namespace, "-o", "json").stdout
    )
    record = json.loads(body["metadata"]["annotations"]["egpu.io/moved-members"])["0"]
    assert record["containers"]["main"]["requests"]["memory"] == "13Gi"
    assert "egpu_resize_moves_total 1.0" in operator.metrics()
