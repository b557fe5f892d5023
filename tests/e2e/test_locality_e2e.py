"""Artefact locality on the real control plane: a pod that names artefacts lands on a
simulated node that holds them (egpu.io/cached-artefacts) and says it started on the
Cached path; one whose artefacts no node holds lands where the engine's own order puts
it and says Cold; a pod that names none gets no start path.

The nodes are two simulated clusters of one GPU model only this test uses: "loa" sorts
first (the engine's choice when nothing else counts) and holds nothing; "lob" holds the
artefacts on one node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape, node_manifests
from harness import RUN_DIR, Cluster, OperatorProcess, add_gpu_nodes, wait_until

pytestmark = pytest.mark.e2e

MODEL = "NVIDIA-LOCALITY-E2E"
IMAGE = "registry.example/llm/vllm:0.6.3"
WEIGHTS = "llama-3-8b@r2"


def shape(prefix: str, **cached: Any) -> ClusterShape:
    return ClusterShape(
        blocks=1,
        leaves_per_block=1,
        nodes_per_leaf=2,
        gpu_models=(MODEL,),
        name_prefix=prefix,
        domain_prefix=f"{prefix}-",
        **cached,
    )


PLAIN = shape("loa")
CACHED = shape("lob", cached_artefacts=(IMAGE, WEIGHTS), cached_nodes=1)
CACHED_NODE = "lob-b0-l0-n000"


@pytest.fixture(scope="module")
def locality_cluster(crds: Cluster) -> Iterator[Cluster]:
    add_gpu_nodes(crds, PLAIN, CACHED, topology=True)
    yield crds
    for s in (PLAIN, CACHED):
        for node in node_manifests(s):
            crds.kubectl("delete", "node", node["metadata"]["name"], "--wait=false", check=False)


@pytest.fixture
def running_operator(locality_cluster: Cluster) -> Iterator[OperatorProcess]:
    # Started after the nodes exist, so its first look at them already sees what they hold.
    proc = OperatorProcess(locality_cluster, RUN_DIR / "operator-locality-e2e.log")
    proc.start()
    yield proc
    proc.stop()


def bare_pod(name: str, artefacts: str | None) -> str:
    annotations = {"egpu.io/gpu-model": MODEL}
    if artefacts is not None:
        annotations["egpu.io/artefacts"] = artefacts
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "schedulerName": "egpu-scheduler",
                "containers": [
                    {
                        "name": "main",
                        "image": IMAGE,
                        "resources": {"limits": {"nvidia.com/gpu": "8"}},
                    }
                ],
            },
        }
    )


def pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def bound(cluster: Cluster, namespace: str, name: str) -> bool:
    return bool(pod(cluster, namespace, name)["spec"].get("nodeName"))


def test_a_pod_lands_where_its_artefacts_are_and_says_how_it_started(
    locality_cluster: Cluster, running_operator: OperatorProcess, namespace: str
) -> None:
    node = json.loads(locality_cluster.kubectl("get", "node", CACHED_NODE, "-o", "json").stdout)
    assert node["metadata"]["annotations"]["egpu.io/cached-artefacts"] == f"{IMAGE},{WEIGHTS}"

    apply = ("apply", "-n", namespace, "-f", "-")
    locality_cluster.kubectl(*apply, input=bare_pod("cold", "nowhere@r0"))
    wait_until(lambda: bound(locality_cluster, namespace, "cold"), 60, "the cold pod bound")
    cold = pod(locality_cluster, namespace, "cold")
    # where the engine's own order puts an 8-GPU pod on these empty nodes: the first
    assert cold["spec"]["nodeName"] == "loa-b0-l0-n000"
    assert cold["metadata"]["annotations"]["egpu.io/start-path"] == "Cold"

    locality_cluster.kubectl(*apply, input=bare_pod("warm", f"{IMAGE}, {WEIGHTS}"))
    wait_until(lambda: bound(locality_cluster, namespace, "warm"), 60, "the warm pod bound")
    warm = pod(locality_cluster, namespace, "warm")
    # not loa-b0-l0-n001 in the fuller leaf, where the engine's own order goes next:
    # the node that holds its artefacts
    assert warm["spec"]["nodeName"] == CACHED_NODE
    assert warm["metadata"]["annotations"]["egpu.io/start-path"] == "Cached"

    locality_cluster.kubectl(*apply, input=bare_pod("plain", None))
    wait_until(lambda: bound(locality_cluster, namespace, "plain"), 60, "the plain pod bound")
    assert "egpu.io/start-path" not in pod(locality_cluster, namespace, "plain")["metadata"].get(
        "annotations", {}
    )
    for name in ("warm", "cold", "plain"):
        locality_cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
