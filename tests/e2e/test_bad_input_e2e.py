"""Bad input, tried as a hostile or careless user would, against the real API server and
the running operator: every one is reported where its owner looks (Events, conditions),
and none of them stops anyone else's work or makes the operator give a GPU twice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape
from harness import Cluster, OperatorProcess, add_gpu_nodes, wait_until
from objects import gpu_workload

pytestmark = pytest.mark.e2e

MODEL = "NVIDIA-A30"  # only these test nodes have it
SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=1,
    nodes_per_leaf=2,
    gpu_models=(MODEL,),
    name_prefix="bad",
    domain_prefix="bad-",
)


@pytest.fixture(scope="module")
def gpu_cluster(operator: OperatorProcess) -> Cluster:
    add_gpu_nodes(operator.cluster, SHAPE, topology=True)
    return operator.cluster


def bare_pod(
    name: str,
    gpus: int,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    node: str | None = None,
) -> str:
    spec: dict[str, Any] = {
        "schedulerName": "egpu-scheduler",
        "containers": [
            {
                "name": "main",
                "image": "registry.local/egpu/app:1",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ],
    }
    if node:
        spec["nodeName"] = node
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": labels or {},
                "annotations": {"egpu.io/gpu-model": MODEL, **(annotations or {})},
            },
            "spec": spec,
        }
    )


def workload(name: str, gpus: int = 1, replicas: int = 1, **template: Any) -> str:
    return gpu_workload(
        name,
        MODEL,
        replicas,
        gpus,
        required=None,
        gang=None,
        requests={},
        container="main",
        image="registry.local/egpu/app:1",
        template_metadata=template.pop("metadata", {}),
        pod_spec=template,
    )


def get(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", *what, "-n", namespace, "-o", "json").stdout))


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = get(cluster, namespace, "events", "--field-selector", f"involvedObject.name={name}")
    return list(out["items"])


def warned(cluster: Cluster, namespace: str, name: str, reason: str, text: str) -> bool:
    return any(
        e["type"] == "Warning" and e["reason"] == reason and text in e["message"]
        for e in events(cluster, namespace, name)
    )


def node_of(cluster: Cluster, namespace: str, pod: str) -> str | None:
    node = get(cluster, namespace, "pod", pod)["spec"].get("nodeName")
    return str(node) if node else None


def test_a_pod_with_an_unreadable_gang_size_stops_nobody(
    gpu_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    gpu_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=bare_pod("broken", 1, annotations={"egpu.io/gang-size": "abc"}),
    )
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bare_pod("fine", 1))
    wait_until(lambda: node_of(gpu_cluster, namespace, "fine") is not None, 30, "fine bound")
    wait_until(
        lambda: warned(gpu_cluster, namespace, "broken", "FailedScheduling", "gang-size"),
        30,
        "a Warning Event on the broken pod",
    )
    assert node_of(gpu_cluster, namespace, "broken") is None
    conditions = get(gpu_cluster, namespace, "pod", "broken")["status"].get("conditions", [])
    assert any(c["type"] == "PodScheduled" and c["status"] == "False" for c in conditions)
    assert operator.healthy()


def test_a_pod_that_can_never_fit_is_told_why(
    gpu_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bare_pod("nine", 9))
    wait_until(
        lambda: warned(gpu_cluster, namespace, "nine", "FailedScheduling", "GPU"),
        30,
        "a FailedScheduling Event on the 9-GPU pod",
    )


def test_operator_owned_annotations_in_a_template_are_ignored_and_reported(
    gpu_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    forged = {
        "egpu.io/assigned-node": "bad-b0-l0-n001",
        "egpu.io/gpu-ids": "0,1,2,3,4,5,6,7",
        "egpu.io/plan": json.dumps({"uid": "x", "node": "bad-b0-l0-n001", "gpus": [0]}),
    }
    gpu_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=workload("sly", metadata={"annotations": forged}),
    )
    wait_until(lambda: node_of(gpu_cluster, namespace, "sly-0") is not None, 30, "sly-0 bound")
    pod = get(gpu_cluster, namespace, "pod", "sly-0")
    assert len(pod["metadata"]["annotations"]["egpu.io/gpu-ids"].split(",")) == 1
    assert "egpu.io/assigned-node" not in pod["metadata"]["annotations"]
    wait_until(
        lambda: warned(gpu_cluster, namespace, "sly", "TemplateOverridden", "egpu.io/gpu-ids"),
        30,
        "a TemplateOverridden Event on the workload",
    )


def test_a_pod_bound_by_hand_is_counted_on_its_node(
    gpu_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    # A pod that names its node itself (no scheduler at all) holds a GPU there: an 8-GPU
    # pod must then not land on that node.
    node = "bad-b0-l0-n000"
    gpu_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=bare_pod("by-hand", 1, node=node)
    )
    for i in range(2):
        gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bare_pod(f"big-{i}", 8))
    wait_until(
        lambda: (
            node_of(gpu_cluster, namespace, "big-0") is not None
            or node_of(gpu_cluster, namespace, "big-1") is not None
        ),
        30,
        "one 8-GPU pod bound",
    )
    placed = [node_of(gpu_cluster, namespace, f"big-{i}") for i in range(2)]
    assert node not in placed, f"9 GPUs on an 8-GPU node: {placed}"
    assert placed.count(None) == 1, "the other node has room for one 8-GPU pod only"


def test_a_pod_claiming_someone_elses_workload_is_no_member(
    gpu_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("owned", replicas=1))
    gpu_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=bare_pod("intruder", 1, labels={"egpu.io/workload": "owned", "egpu.io/rank": "abc"}),
    )

    def running_alone() -> bool:
        status = get(gpu_cluster, namespace, "gpuworkload", "owned").get("status", {})
        return bool(status.get("phase") == "Running" and status.get("replicas") == 1)

    wait_until(running_alone, 30, "the workload Running with its one member")
    placements = get(gpu_cluster, namespace, "gpuworkload", "owned")["status"]["placements"]
    assert [p["pod"] for p in placements] == ["owned-0"]
    assert operator.healthy()


def test_contradictions_the_schema_cannot_see_are_reported(
    gpu_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    gpu_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=workload("other-scheduler", schedulerName="default-scheduler"),
    )
    wait_until(
        lambda: warned(
            gpu_cluster, namespace, "other-scheduler", "TemplateOverridden", "schedulerName"
        ),
        30,
        "an Event saying the schedulerName is replaced",
    )
    body = json.loads(workload("coarse"))
    body["spec"]["topology"] = {"required": "egpu.io/leaf", "preferred": "egpu.io/block"}
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))

    def refused() -> bool:
        status = get(gpu_cluster, namespace, "gpuworkload", "coarse").get("status", {})
        return any(
            c["type"] == "TopologyResolved"
            and c["status"] == "False"
            and c["reason"] == "PreferredNotNarrower"
            for c in status.get("conditions", [])
        )

    wait_until(refused, 30, "TopologyResolved=False (PreferredNotNarrower)")
    pods = get(gpu_cluster, namespace, "pods", "-l", "egpu.io/workload=coarse")["items"]
    assert pods == []


def test_a_pod_the_api_server_refuses_is_reported_with_its_message_and_backoff(
    gpu_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(quota))
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("quota", replicas=2))

    def reported() -> dict[str, Any] | None:
        status = get(gpu_cluster, namespace, "gpuworkload", "quota").get("status", {})
        for c in status.get("conditions", []):
            if c["type"] == "PodsCreated" and c["status"] == "False":
                return dict(c)
        return None

    wait_until(lambda: reported() is not None, 30, "PodsCreated=False")
    condition = reported()
    assert condition is not None and "quota" in condition["message"], condition
    assert warned(gpu_cluster, namespace, "quota", "FailedCreate", "quota")
    gpu_cluster.kubectl("delete", "resourcequota", "no-pods", "-n", namespace)
    wait_until(
        lambda: (
            len(get(gpu_cluster, namespace, "pods", "-l", "egpu.io/workload=quota")["items"]) == 2
        ),
        60,
        "the pods created once the quota is gone (after the backoff)",
    )
