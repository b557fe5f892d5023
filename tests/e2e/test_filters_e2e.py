"""What kube-scheduler honours, the binder honours too, on the real control plane: a
tainted node is avoided until the workload tolerates the taint, a nodeSelector is
obeyed, a node full by pod count is skipped, and what the binder does not do is
refused with the `Unsupported` reason and an Event naming the field.

Each test has nodes of its own GPU model, so the tests (and other modules' nodes)
never compete for GPUs. In each, the node the filter must refuse is the one the
engine would choose without it (the first by name, or the tightest fit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape, node_manifests
from harness import Cluster, OperatorProcess, add_gpu_nodes, wait_until
from objects import gpu_workload

pytestmark = pytest.mark.e2e


def shape(model: str, prefix: str, nodes: int = 2) -> ClusterShape:
    return ClusterShape(
        blocks=1,
        leaves_per_block=1,
        nodes_per_leaf=nodes,
        gpu_models=(model,),
        name_prefix=prefix,
        domain_prefix=f"{prefix}-",
    )


TAINT = shape("NVIDIA-TAINT-E2E", "tnt")
SELECT = shape("NVIDIA-SELECT-E2E", "sel")
PODS = shape("NVIDIA-PODS-E2E", "pds")
UNSUPPORTED = shape("NVIDIA-UNSUP-E2E", "uns", nodes=1)


def names(s: ClusterShape) -> list[str]:
    return [n["metadata"]["name"] for n in node_manifests(s)]


def workload(name: str, model: str, replicas: int = 1, gpus: int = 8, **pod_spec: Any) -> str:
    return gpu_workload(name, model, replicas, gpus, pod_spec=pod_spec)


@pytest.fixture(scope="module")
def filter_cluster(crds: Cluster) -> Iterator[Cluster]:
    add_gpu_nodes(crds, TAINT, SELECT, PODS, UNSUPPORTED, topology=True)
    yield crds
    for s in (TAINT, SELECT, PODS, UNSUPPORTED):
        for name in names(s):
            crds.kubectl("delete", "node", name, "--wait=false", check=False)


def pods(cluster: Cluster, namespace: str, workload_name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
    return [
        p
        for p in json.loads(out)["items"]
        if any(r.get("name") == workload_name for r in p["metadata"].get("ownerReferences", []))
    ]


def nodes_of(cluster: Cluster, namespace: str, workload_name: str) -> list[str | None]:
    return sorted(
        (p["spec"].get("nodeName") for p in pods(cluster, namespace, workload_name)),
        key=str,
    )


def scheduled(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    body = json.loads(
        cluster.kubectl("get", "gpuworkload", name, "-n", namespace, "-o", "json").stdout
    )
    for c in body.get("status", {}).get("conditions", []):
        if c["type"] == "Scheduled":
            return dict(c)
    return None


def refused_with(cluster: Cluster, namespace: str, name: str, words: str) -> bool:
    cond = scheduled(cluster, namespace, name)
    return cond is not None and cond["status"] == "False" and words in cond["message"]


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    return list(json.loads(out)["items"])


def test_a_tainted_node_is_avoided_until_the_workload_tolerates_the_taint(
    filter_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    first, second = names(TAINT)
    filter_cluster.kubectl("taint", "node", first, "gpu=broken:NoSchedule")
    model = TAINT.gpu_models[0]
    apply = ["apply", "-n", namespace, "-f", "-"]
    filter_cluster.kubectl(*apply, input=workload("plain", model))
    wait_until(lambda: nodes_of(filter_cluster, namespace, "plain") == [second], 60, "bound")
    # The untainted node is full now; another such workload has nowhere to go.
    filter_cluster.kubectl(*apply, input=workload("more", model))
    words = "1 node excluded by taint gpu=broken:NoSchedule"
    wait_until(lambda: refused_with(filter_cluster, namespace, "more", words), 60, words)
    assert nodes_of(filter_cluster, namespace, "more") == [None]
    tolerant = workload(
        "tolerant",
        model,
        tolerations=[
            {"key": "gpu", "operator": "Equal", "value": "broken", "effect": "NoSchedule"}
        ],
    )
    filter_cluster.kubectl("delete", "gpuworkload", "more", "-n", namespace)
    filter_cluster.kubectl(*apply, input=tolerant)
    wait_until(lambda: nodes_of(filter_cluster, namespace, "tolerant") == [first], 60, "bound")


def test_a_node_selector_is_obeyed(
    filter_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    second = names(SELECT)[1]
    filter_cluster.kubectl("label", "node", second, "pool=e2e-special")
    model = SELECT.gpu_models[0]
    apply = ["apply", "-n", namespace, "-f", "-"]
    filter_cluster.kubectl(
        *apply, input=workload("picky", model, gpus=4, nodeSelector={"pool": "e2e-special"})
    )
    wait_until(lambda: nodes_of(filter_cluster, namespace, "picky") == [second], 60, "bound")
    filter_cluster.kubectl(
        *apply, input=workload("nowhere", model, gpus=4, nodeSelector={"pool": "e2e-absent"})
    )
    words = "2 nodes excluded by nodeSelector pool=e2e-absent"
    wait_until(lambda: refused_with(filter_cluster, namespace, "nowhere", words), 60, words)


def test_a_node_full_by_pod_count_is_skipped(
    filter_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    first, second = names(PODS)
    # One pod slot on the first node, taken by a pod of another scheduler that holds
    # half its GPUs: by GPUs alone it is the tightest fit for a 4-GPU pod.
    filter_cluster.kubectl(
        "patch",
        "node",
        first,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"allocatable": {"pods": "1"}, "capacity": {"pods": "1"}}}),
    )
    foreign = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "someone-else"},
        "spec": {
            "nodeName": first,
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "resources": {
                        "requests": {"nvidia.com/gpu": "4"},
                        "limits": {"nvidia.com/gpu": "4"},
                    },
                }
            ],
        },
    }
    filter_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(foreign))
    model = PODS.gpu_models[0]
    filter_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=workload("small", model, gpus=4)
    )
    wait_until(lambda: nodes_of(filter_cluster, namespace, "small") == [second], 60, "bound")
    allocatable = filter_cluster.kubectl(
        "get", "node", first, "-o", "jsonpath={.status.allocatable.pods}"
    ).stdout
    assert allocatable == "1", "the node's pod count was reset while the test ran"


def test_what_the_binder_does_not_do_is_refused_naming_the_field(
    filter_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    model = UNSUPPORTED.gpu_models[0]
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "egpu.io/leaf",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "x"}},
        }
    ]
    filter_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=workload("spread", model, topologySpreadConstraints=spread),
    )
    field = "spec.topologySpreadConstraints"

    def refused() -> bool:
        cond = scheduled(filter_cluster, namespace, "spread")
        return cond is not None and cond["reason"] == "Unsupported" and field in cond["message"]

    wait_until(refused, 60, "Scheduled=False, reason Unsupported")
    wait_until(
        lambda: any(
            e["type"] == "Warning" and e["reason"] == "Unsupported" and field in e["message"]
            for e in events(filter_cluster, namespace, "spread")
        ),
        30,
        "an Unsupported Event on the workload",
    )
    assert nodes_of(filter_cluster, namespace, "spread") == [None]
