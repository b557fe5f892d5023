"""The one ledger with GPUs published through DRA: ResourceSlices give a node its GPUs
and wiring, and every allocated ResourceClaim (whoever allocated it) holds its devices."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from egpu.domain.dra import GPU_DRIVER
from egpu.domain.topology import Topology
from egpu.sim.dra import device_name, resource_slice_manifests
from egpu.sim.nodes import ClusterShape, node_manifests
from egpu.state.ledger_sync import LedgerSync
from objects import gpu_pod, plan_annotation

pytestmark = pytest.mark.unit
TOPOLOGY = Topology(levels=("egpu.io/block", "egpu.io/leaf", "kubernetes.io/hostname"))
SHAPE = ClusterShape(blocks=1, leaves_per_block=1, nodes_per_leaf=2, dra=True)


def ready(node: dict[str, Any]) -> dict[str, Any]:
    node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return node


NODES = [ready(n) for n in node_manifests(SHAPE)]
SLICES = list(resource_slice_manifests(SHAPE))
N0 = NODES[0]["metadata"]["name"]


def claim(name: str, node: str, gpus: list[int], *users: str) -> dict[str, Any]:
    results = [
        {"request": "gpus", "driver": GPU_DRIVER, "pool": node, "device": device_name(i)}
        for i in gpus
    ]
    return {
        "metadata": {"namespace": "other", "name": name, "uid": f"uid-{name}"},
        "spec": {"devices": {"requests": []}},
        "status": {
            "allocation": {"devices": {"results": results}},
            "reservedFor": [{"resource": "pods", "name": u, "uid": u} for u in users],
        },
    }


def free(sync: LedgerSync, node: str = N0) -> tuple[int, ...]:
    return sync.ledger.node_view(node).free_gpus


def test_a_dra_node_takes_its_gpus_from_its_slice() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=SLICES)
    assert "nvidia.com/gpu" not in NODES[0]["status"]["allocatable"]
    assert free(sync) == tuple(range(8))
    two = copy.deepcopy(SLICES)
    two[0]["spec"]["devices"] = two[0]["spec"]["devices"][:2]
    assert free(LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=two)) == (0, 1)


def test_a_foreign_claim_keeps_its_devices_used_until_it_is_released() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=SLICES)
    foreign = claim("theirs", N0, [0, 5])
    sync.claim_changed(None, foreign)
    assert free(sync) == (1, 2, 3, 4, 6, 7)
    assert sync.claimed_gpus(N0) == {"other/theirs": (0, 5)}
    assert sync.audit(NODES, [], SLICES, [foreign]) == []
    released = copy.deepcopy(foreign)
    released["status"] = {}
    sync.claim_changed(foreign, released)
    assert free(sync) == tuple(range(8))
    sync.claim_changed(None, foreign)
    sync.claim_changed(foreign, None)  # deleted
    assert free(sync) == tuple(range(8))
    assert sync.audit(NODES, [], SLICES, []) == []


def test_pods_counted_by_gpu_count_never_take_a_claimed_device() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=SLICES)
    pod = gpu_pod("p", gpus=6, node=N0, ours=False)
    sync.pod_changed(None, pod)
    sync.claim_changed(None, claim("theirs", N0, [0, 1]))
    # The claim's devices are facts: the pod's six GPUs are laid out around them.
    assert free(sync) == ()
    assert sync.audit(NODES, [pod], SLICES, [claim("theirs", N0, [0, 1])]) == []


def test_claims_and_slices_seen_in_any_order_give_the_same_ledger() -> None:
    foreign = claim("theirs", N0, [3])
    sync = LedgerSync(TOPOLOGY)
    sync.claim_changed(None, foreign)  # before the slice: its pool is not known yet
    for node in NODES:
        sync.node_changed(None, node)
    assert free(sync) == tuple(range(8))  # counted by its GPU labels until the slice comes
    sync.slices_changed(SLICES)
    assert free(sync) == (0, 1, 2, 4, 5, 6, 7)
    assert sync.audit(NODES, [], SLICES, [foreign]) == []


def test_a_bad_slice_leaves_its_node_out_and_no_other() -> None:
    bad = copy.deepcopy(SLICES)
    bad[0]["spec"]["devices"][1]["name"] = bad[0]["spec"]["devices"][0]["name"]
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=bad)
    assert N0 in sync.bad_nodes and "ResourceSlice" in sync.bad_nodes[N0]
    assert N0 not in sync.ledger
    other = NODES[1]["metadata"]["name"]
    assert free(sync, other) == tuple(range(8))
    sync.slices_changed(SLICES)  # repaired
    assert N0 not in sync.bad_nodes and free(sync) == tuple(range(8))


def test_a_claims_devices_take_no_pod_slot() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=SLICES)
    before = sync.ledger.node_usage(N0).pods_used
    sync.claim_changed(None, claim("theirs", N0, [2]))
    assert sync.ledger.node_usage(N0).pods_used == before
    assert sync.ledger.node_usage(N0).gpus_used == 1


def planned_dra_pod(gpus: list[int], node: str | None = None) -> dict[str, Any]:
    """Our DRA pod with a recorded plan on N0 (bound to `node` when given)."""
    annotations = {
        "egpu.io/dra-gpus": str(len(gpus)),
        "egpu.io/plan": plan_annotation("mine", N0, gpus, "p1", 1),
    }
    if node is not None:
        annotations["egpu.io/gpu-ids"] = ",".join(map(str, gpus))
    pod = gpu_pod("mine", gpus=0, uid="mine", annotations=annotations, node=node)
    pod["spec"]["resourceClaims"] = [{"name": "gpus", "resourceClaimTemplateName": "t"}]
    return pod


def test_a_pods_own_claim_on_its_planned_gpus_does_not_push_its_plan_out() -> None:
    """The operator restarted after allocating a claim and before binding its pod: the
    plan and the claim are one hold, so the plan is resumed, not replaced."""
    pod, own = planned_dra_pod([0, 1, 2, 3]), claim("mine-gpus", N0, [0, 1, 2, 3], "mine")
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [pod], slices=SLICES, claims=[own])
    account = sync.account_of("ns/mine")
    assert account is not None and account.kind == "planned" and account.gpus == (0, 1, 2, 3)
    assert free(sync) == (4, 5, 6, 7)
    assert sync.ledger.node_usage(N0).pods_used == 1
    for first_claim in (True, False):  # seen one by one, in either order: the same
        live = LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=SLICES)
        if first_claim:
            live.claim_changed(None, own)
        live.pod_changed(None, pod)
        live.claim_changed(None, own)  # a second sighting changes nothing
        assert live.account_of("ns/mine") == account
        assert live.audit(NODES, [pod], SLICES, [own]) == []


def test_a_claim_whose_pod_holds_other_gpus_is_counted_apart() -> None:
    pod, own = planned_dra_pod([0, 1]), claim("mine-gpus", N0, [4, 5], "mine")
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [pod], slices=SLICES, claims=[own])
    assert free(sync) == (2, 3, 6, 7)
    sync.drop_plans(["ns/mine"])  # the binder gave the plan up: the claim still holds
    assert free(sync) == (0, 1, 2, 3, 6, 7)
    assert sync.audit(NODES, [pod], SLICES, [own]) == []


def test_a_bound_pods_claim_is_counted_once_with_the_pod() -> None:
    pod, own = planned_dra_pod([2, 3], node=N0), claim("mine-gpus", N0, [2, 3], "mine")
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [pod], slices=SLICES, claims=[own])
    assert free(sync) == (0, 1, 4, 5, 6, 7)
    assert sync.ledger.node_usage(N0).holders == frozenset({"ns/mine"})


def test_slices_seen_one_by_one_give_the_ledger_a_relist_gives() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [])
    for item in SLICES:
        sync.slice_changed(None, item)
    assert free(sync) == tuple(range(8))
    fewer = copy.deepcopy(SLICES[0])
    fewer["spec"]["devices"] = fewer["spec"]["devices"][:4]
    sync.slice_changed(SLICES[0], fewer)
    assert free(sync) == (0, 1, 2, 3)
    assert sync.audit(NODES, [], [fewer, *SLICES[1:]], []) == []
    sync.slice_changed(fewer, None)  # the driver went: counted by its labels again
    assert N0 not in sync.dra_nodes
    assert sync.audit(NODES, [], SLICES[1:], []) == []


def test_holders_names_the_other_claims_on_the_devices_asked_about() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, NODES, [], slices=SLICES)
    sync.claim_changed(None, claim("theirs", N0, [0, 1]))
    sync.claim_changed(None, claim("mine", N0, [2]))
    theirs, mine = sync.claims["other/theirs"], sync.claims["other/mine"]
    asked = [theirs.devices[1], mine.devices[0]]
    assert sync.holders(asked, except_claim="other/mine") == {theirs.devices[1]: "other/theirs"}
    assert sync.holders(asked, except_claim="other/theirs") == {mine.devices[0]: "other/mine"}
