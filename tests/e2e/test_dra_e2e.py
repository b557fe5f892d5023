"""GPUs through Dynamic Resource Allocation, on the real control plane: simulated DRA
nodes publish their GPUs as ResourceSlices, the controller manager makes each pod's
claim from its workload's template, and the binder allocates every claim to exactly
the devices of its plan before it binds the pod. A claim someone else allocated keeps
the engine off its devices; deleting the workload releases every claim."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from egpu.sim.dra import create_resource_slices, slice_name
from egpu.sim.nodes import ClusterShape, node_manifests
from harness import RUN_DIR, Cluster, OperatorProcess, add_gpu_nodes, wait_until
from objects import gpu_workload

pytestmark = pytest.mark.e2e


def shape(model: str, prefix: str) -> ClusterShape:
    return ClusterShape(
        blocks=1,
        leaves_per_block=1,
        nodes_per_leaf=2,
        gpu_models=(model,),
        name_prefix=prefix,
        domain_prefix=f"{prefix}-",
        dra=True,
    )


GANG = shape("NVIDIA-DRA-GANG-E2E", "drg")
FOREIGN = shape("NVIDIA-DRA-FOREIGN-E2E", "drf")
CRASH = shape("NVIDIA-DRA-CRASH-E2E", "drc")
SHAPES = (CRASH, GANG, FOREIGN)


def names(s: ClusterShape) -> list[str]:
    return [n["metadata"]["name"] for n in node_manifests(s)]


@pytest.fixture(scope="module")
def dra_cluster(crds: Cluster) -> Iterator[Cluster]:
    add_gpu_nodes(crds, *SHAPES, topology=True)
    for s in SHAPES:
        create_resource_slices(s, kubeconfig=crds.kubeconfig)
    yield crds
    for s in SHAPES:
        for name in names(s):
            crds.kubectl("delete", "resourceslice", slice_name(name), "--wait=false", check=False)
            crds.kubectl("delete", "node", name, "--wait=false", check=False)


def workload(name: str, model: str, replicas: int, gpus: int) -> str:
    return gpu_workload(name, model, replicas, gpus, gpuAllocation="DRA")


def get(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)["items"])


def members(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in get(cluster, "pods", "-n", namespace)
        if any(r.get("name") == name for r in p["metadata"].get("ownerReferences", []))
    ]


def all_bound(cluster: Cluster, namespace: str, name: str, count: int) -> bool:
    pods = members(cluster, namespace, name)
    return len(pods) == count and all(p["spec"].get("nodeName") for p in pods)


def claim_of(pod: dict[str, Any]) -> str:
    statuses = pod.get("status", {}).get("resourceClaimStatuses") or []
    return next(s["resourceClaimName"] for s in statuses if s["name"] == "gpus")


def devices(claim: dict[str, Any]) -> set[tuple[str, str]]:
    allocation = claim.get("status", {}).get("allocation") or {}
    return {(r["pool"], r["device"]) for r in allocation.get("devices", {}).get("results", [])}


def planned(pod: dict[str, Any]) -> set[tuple[str, str]]:
    ids = pod["metadata"]["annotations"]["egpu.io/gpu-ids"].split(",")
    return {(pod["spec"]["nodeName"], f"gpu-{i}") for i in ids}


def assert_claims_match_plans(
    cluster: Cluster, namespace: str, pods: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    claims = {c["metadata"]["name"]: c for c in get(cluster, "resourceclaims", "-n", namespace)}
    mine = []
    for pod in pods:
        claim = claims[claim_of(pod)]
        assert devices(claim) == planned(pod), pod["metadata"]["name"]
        reserved = {r["uid"] for r in claim["status"].get("reservedFor", [])}
        assert reserved == {pod["metadata"]["uid"]}
        mine.append(claim)
    everyone = [d for c in get(cluster, "resourceclaims", "-A") for d in devices(c)]
    assert len(everyone) == len(set(everyone)), "a device is in two claims"
    return mine


def test_an_operator_killed_between_allocation_and_bind_resumes_the_same_devices(
    dra_cluster: Cluster, namespace: str
) -> None:
    """The gang fills both nodes: the pods left unbound by the kill can only go where
    their own claims already hold devices, so their plans must be resumed."""
    slow = OperatorProcess(
        dra_cluster, RUN_DIR / "operator-dra-killed.log", env={"EGPU_BIND_DELAY_MS": "500"}
    )
    slow.start()
    model = CRASH.gpu_models[0]
    try:
        dra_cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=workload("crash", model, 4, 4)
        )

        def partly_bound() -> bool:
            pods = members(dra_cluster, namespace, "crash")
            return 1 <= sum(1 for p in pods if p["spec"].get("nodeName")) < 4

        wait_until(partly_bound, 90, "the gang to be partly bound")
    finally:
        slow.kill()
    half = members(dra_cluster, namespace, "crash")
    unbound = [p for p in half if not p["spec"].get("nodeName")]
    assert unbound, "the kill came too late to test anything"
    claims = {c["metadata"]["name"]: c for c in get(dra_cluster, "resourceclaims", "-n", namespace)}
    assert all(devices(claims[claim_of(p)]) for p in unbound), "claims allocated before binds"
    plans = {
        p["metadata"]["name"]: json.loads(p["metadata"]["annotations"]["egpu.io/plan"])
        for p in half
    }

    again = OperatorProcess(dra_cluster, RUN_DIR / "operator-dra-restarted.log")
    again.start()
    try:
        wait_until(lambda: all_bound(dra_cluster, namespace, "crash", 4), 90, "the gang bound")
        pods = members(dra_cluster, namespace, "crash")
        assert_claims_match_plans(dra_cluster, namespace, pods)
        for pod in pods:
            plan = plans[pod["metadata"]["name"]]
            assert pod["spec"]["nodeName"] == plan["node"]
            assert planned(pod) == {(plan["node"], f"gpu-{i}") for i in plan["gpus"]}
        dra_cluster.kubectl("delete", "gpuworkload", "crash", "-n", namespace)
    finally:
        again.stop()


def test_a_gang_on_dra_nodes_gets_exactly_its_planned_devices_and_gives_them_back(
    dra_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    model = GANG.gpu_models[0]
    dra_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("gang", model, 4, 4))
    wait_until(lambda: all_bound(dra_cluster, namespace, "gang", 4), 90, "4 DRA pods bound")
    pods = members(dra_cluster, namespace, "gang")
    assert {p["spec"]["nodeName"] for p in pods} == set(names(GANG))
    assert all("nvidia.com/gpu" not in json.dumps(p["spec"]["containers"]) for p in pods)
    claims = assert_claims_match_plans(dra_cluster, namespace, pods)
    assert len(claims) == 4
    body = json.loads(
        dra_cluster.kubectl("get", "gpuworkload", "gang", "-n", namespace, "-o", "json").stdout
    )
    assert body["status"].get("gpuIdsEnforced") is True

    dra_cluster.kubectl("delete", "gpuworkload", "gang", "-n", namespace)

    def released() -> bool:
        left = get(dra_cluster, "resourceclaims", "-n", namespace)
        return not any(devices(c) for c in left) and not members(dra_cluster, namespace, "gang")

    wait_until(released, 90, "every claim released with its pod")


def test_a_claim_someone_else_allocated_keeps_the_engine_off_its_devices(
    dra_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    first = names(FOREIGN)[0]
    theirs = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "theirs"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpus", "exactly": {"deviceClassName": "gpu.egpu.io", "count": 4}}
                ]
            }
        },
    }
    dra_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(theirs))
    results = [
        {"request": "gpus", "driver": "gpu.egpu.io", "pool": first, "device": f"gpu-{i}"}
        for i in range(4)
    ]
    status = {"status": {"allocation": {"devices": {"results": results}}}}
    dra_cluster.kubectl(
        "patch", "resourceclaim", "theirs", "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    model = FOREIGN.gpu_models[0]
    dra_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload("mine", model, 3, 4))
    wait_until(lambda: all_bound(dra_cluster, namespace, "mine", 3), 90, "3 DRA pods bound")
    pods = members(dra_cluster, namespace, "mine")
    assert_claims_match_plans(dra_cluster, namespace, pods)
    taken = {(first, f"gpu-{i}") for i in range(4)}
    assert not any(planned(p) & taken for p in pods)
    # Nothing of theirs was touched.
    claim = json.loads(
        dra_cluster.kubectl("get", "resourceclaim", "theirs", "-n", namespace, "-o", "json").stdout
    )
    assert devices(claim) == taken and not claim["status"].get("reservedFor")
