"""The simulated kubelet's side of an in-place resize (KWOK stages pod-resize*.yaml),
driven with kubectl through the real API server's pods/resize subresource."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape, create_nodes
from harness import Cluster, wait_until

pytestmark = pytest.mark.integration

SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=1,
    nodes_per_leaf=1,
    name_prefix="rzstage",
    domain_prefix="rzstage-",
    cpu_per_node="16",
    memory_per_node="64Gi",
)
NODE = "rzstage-b0-l0-n000"


@pytest.fixture(scope="module")
def node(cluster: Cluster) -> str:
    create_nodes(SHAPE, kubeconfig=cluster.kubeconfig)

    def ready() -> bool:
        out = cluster.kubectl("get", "node", NODE, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_until(ready, 60, "the simulated node to be Ready")
    return NODE


def create_pod(cluster: Cluster, namespace: str, name: str, annotations: dict[str, str]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "nodeName": NODE,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.local/egpu/sim:latest",
                    "resources": {
                        "requests": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"},
                        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
                    },
                },
                {
                    "name": "sidecar",
                    "image": "registry.local/egpu/sim:latest",
                    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
                },
            ],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    wait_until(lambda: is_ready(get(cluster, namespace, name)), 30, f"pod {name} Ready")


def get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
    return json.loads(out)  # type: ignore[no-any-return]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def resize(cluster: Cluster, namespace: str, name: str, memory: str, limit: str) -> None:
    body = {
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "resources": {"requests": {"memory": memory}, "limits": {"memory": limit}},
                }
            ]
        }
    }
    cluster.kubectl(
        "patch", "pod", name, "-n", namespace, "--subresource", "resize",
        "--type", "strategic", "-p", json.dumps(body),
    )  # fmt: skip


def main_status(pod: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == "main")


def resize_conditions(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in pod["status"].get("conditions", []) if c["type"].startswith("PodResize")]


def test_resize_completes_in_place_like_a_kubelet(
    cluster: Cluster, node: str, namespace: str
) -> None:
    create_pod(cluster, namespace, "grow", {})
    before = get(cluster, namespace, "grow")
    resize(cluster, namespace, "grow", "3Gi", "6Gi")

    def done() -> bool:
        reported = main_status(get(cluster, namespace, "grow"))["resources"]["requests"]
        return bool(reported["memory"] == "3Gi")

    wait_until(done, 15, "the simulated kubelet to complete the resize")
    after = get(cluster, namespace, "grow")
    status = main_status(after)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert status["restartCount"] == 0
    assert status["resources"]["limits"] == {"cpu": "2", "memory": "6Gi", "nvidia.com/gpu": "1"}
    assert status["allocatedResources"] == {"cpu": "1", "memory": "3Gi", "nvidia.com/gpu": "1"}
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"] == 2
    assert resize_conditions(after) == []
    sidecar = next(s for s in after["status"]["containerStatuses"] if s["name"] == "sidecar")
    assert sidecar["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert is_ready(after)

    # Settled: no stage fires again on its own update.
    version = after["metadata"]["resourceVersion"]
    time.sleep(2)
    assert get(cluster, namespace, "grow")["metadata"]["resourceVersion"] == version


def test_infeasible_resize_is_held_pending_until_room_appears(
    cluster: Cluster, node: str, namespace: str
) -> None:
    create_pod(cluster, namespace, "stuck", {"egpu.io/sim-resize": "infeasible"})
    resize(cluster, namespace, "stuck", "10Gi", "12Gi")

    def pending() -> dict[str, Any] | None:
        conditions = resize_conditions(get(cluster, namespace, "stuck"))
        return conditions[0] if conditions else None

    wait_until(lambda: pending() is not None, 15, "PodResizePending")
    pod = get(cluster, namespace, "stuck")
    (condition,) = resize_conditions(pod)
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "PodResizePending",
        "True",
        "Infeasible",
    )
    assert condition["observedGeneration"] == pod["metadata"]["generation"]
    assert "capacity" in condition["message"]
    assert main_status(pod)["resources"]["requests"]["memory"] == "2Gi", "must not be actuated"
    assert pod["status"]["observedGeneration"] == pod["metadata"]["generation"]
    version = pod["metadata"]["resourceVersion"]
    time.sleep(2)
    assert get(cluster, namespace, "stuck")["metadata"]["resourceVersion"] == version

    cluster.kubectl(
        "annotate", "pod", "stuck", "-n", namespace, "egpu.io/sim-resize=deferred", "--overwrite"
    )
    wait_until(lambda: (pending() or {}).get("reason") == "Deferred", 15, "reason Deferred")

    cluster.kubectl("annotate", "pod", "stuck", "-n", namespace, "egpu.io/sim-resize-")
    wait_until(lambda: pending() is None, 15, "the pending resize to complete")
    assert main_status(get(cluster, namespace, "stuck"))["allocatedResources"]["memory"] == "10Gi"


def test_the_api_server_refuses_a_gpu_resize(cluster: Cluster, node: str, namespace: str) -> None:
    create_pod(cluster, namespace, "gpu", {})
    body = {"spec": {"containers": [{"name": "main", "resources": {
        "requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}}]}}  # fmt: skip
    out = cluster.kubectl(
        "patch", "pod", "gpu", "-n", namespace, "--subresource", "resize",
        "--type", "strategic", "-p", json.dumps(body), check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert "only cpu and memory resources are mutable" in out.stderr
