"""The one ledger against pod and node events: it never gives a GPU twice, follows every
change of what a pod holds, counts pods whatever order events come in, and always
equals a ledger rebuilt from scratch."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from egpu.domain.gang import GangRequest
from egpu.domain.placement import Placement, PodAssignment
from egpu.domain.topology import Topology
from egpu.engines.placement import place_gang
from egpu.state.ledger_sync import BOUND, INTENT, PLANNED, LedgerSync
from objects import gpu_node, gpu_pod, plan_annotation

pytestmark = pytest.mark.unit
TOPOLOGY = Topology(levels=("egpu.io/block", "egpu.io/leaf", "kubernetes.io/hostname"))
GIB = 2**30


def fits(sync: LedgerSync, gpus: int, pods: int = 1) -> bool:
    request = GangRequest(gang_id="probe", pod_count=pods, gpus_per_pod=gpus)
    return isinstance(place_gang(sync.ledger, request), Placement)


def used(sync: LedgerSync, node: str) -> tuple[int, int, int]:
    u = sync.ledger.node_usage(node)
    return u.gpus_used, u.cpu_used_millis, u.memory_used_bytes


def with_uid(pod: dict[str, Any], uid: str) -> dict[str, Any]:
    pod["metadata"]["uid"] = uid
    return pod


def test_a_relist_during_a_bind_keeps_the_binds_gpus() -> None:
    node = gpu_node("n1", gpus=1)
    a = with_uid(gpu_pod("a"), "ua")
    b = with_uid(gpu_pod("b"), "ub")
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [a, b])
    sync.reserve_intents([("ns/a", PodAssignment(0, "n1", (0,), {}, 1000, GIB))])
    assert not fits(sync, 1)
    sync.reset(TOPOLOGY, [node], [a, b])  # the caches relisted while a is being bound
    assert not fits(sync, 1), "the GPU being bound to a must not be free for b"
    assert sync.account_of("ns/a") is not None and sync.account_of("ns/a").kind == INTENT  # type: ignore[union-attr]
    bound = copy.deepcopy(a)
    bound["spec"]["nodeName"] = "n1"
    sync.pod_changed(a, bound)
    assert "ns/a" not in sync.intents and sync.account_of("ns/a").kind == BOUND  # type: ignore[union-attr]
    assert used(sync, "n1")[0] == 1


def test_an_in_place_resize_is_counted() -> None:
    node = gpu_node("n1", cpu="8")
    pod = gpu_pod("a", node="n1", cpu="2")
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [pod])
    assert used(sync, "n1")[1] == 2000
    grown = copy.deepcopy(pod)
    grown["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "6"
    sync.pod_changed(pod, grown)
    assert used(sync, "n1")[1] == 6000
    assert sync.audit([node], [grown]) == []


def test_pods_seen_before_their_node_are_counted_when_it_appears() -> None:
    sync = LedgerSync(TOPOLOGY)
    pod = gpu_pod("a", gpus=8, node="n1")
    sync.pod_changed(None, pod)
    sync.node_changed(None, gpu_node("n1"))
    assert used(sync, "n1")[0] == 8
    assert not fits(sync, 1)


def test_pods_on_a_node_that_was_unreadable_are_counted_once_it_is_repaired() -> None:
    broken = gpu_node("n1", **{"egpu.io/gpu-interconnect": "{not json"})
    sync = LedgerSync(TOPOLOGY)
    sync.node_changed(None, broken)
    assert "n1" in sync.bad_nodes
    pod = gpu_pod("a", gpus=3, node="n1")
    sync.pod_changed(None, pod)
    repaired = gpu_node("n1")
    sync.node_changed(broken, repaired)
    assert used(sync, "n1")[0] == 3
    assert sync.audit([repaired], [pod]) == []


def test_a_bound_pod_of_ours_without_gpu_ids_holds_as_many_gpus_as_it_asks() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, [gpu_node("n1")], [gpu_pod("a", gpus=8, node="n1")])
    assert used(sync, "n1")[0] == 8
    assert not fits(sync, 1)


def test_gpu_ids_copied_onto_a_pod_are_not_believed() -> None:
    # A 0-GPU pod claiming GPUs 0-7, and an 8-GPU pod claiming nothing in particular.
    liar = gpu_pod("liar", gpus=0, node="n1", annotations={"egpu.io/gpu-ids": "0,1,2,3,4,5,6,7"})
    honest = gpu_pod("honest", gpus=1, node="n1", annotations={"egpu.io/gpu-ids": "0"})
    sync = LedgerSync.rebuild(TOPOLOGY, [gpu_node("n1")], [liar, honest])
    assert used(sync, "n1")[0] == 1


def test_a_forged_plan_reserves_nothing() -> None:
    forged = gpu_pod(
        "x",
        gpus=8,
        uid="mine",
        annotations={"egpu.io/plan": plan_annotation("theirs", "n1", list(range(8)), "p", 1)},
    )
    sync = LedgerSync.rebuild(TOPOLOGY, [gpu_node("n1")], [forged])
    assert used(sync, "n1")[0] == 0


def test_a_recorded_plan_holds_until_a_fact_takes_its_gpus() -> None:
    planned = gpu_pod(
        "p",
        gpus=2,
        uid="up",
        annotations={"egpu.io/plan": plan_annotation("up", "n1", [0, 1], "p1", 1)},
    )
    node = gpu_node("n1", gpus=2)
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [planned])
    assert sync.account_of("ns/p").kind == PLANNED  # type: ignore[union-attr]
    other = gpu_pod("other", gpus=2, node="n1", ours=False)
    sync.pod_changed(None, other)
    assert sync.account_of("ns/p") is None, "the plan no longer fits: the binder plans again"
    assert sync.audit([node], [planned, other]) == []
    sync.forget("ns/other")
    assert sync.account_of("ns/p") is not None, "room again: the plan holds again"


def test_gpus_asked_beyond_a_node_count_facts_and_holds_not_plans_that_hold_nothing() -> None:
    planned = gpu_pod(
        "p",
        gpus=2,
        uid="up",
        annotations={"egpu.io/plan": plan_annotation("up", "n1", [0, 1], "p1", 1)},
    )
    node = gpu_node("n1", gpus=2)
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [planned])
    assert sync.gpus_asked_beyond("n1") == 0
    # A fact takes the GPUs: the plan holds nothing now, and asks nothing.
    sync.pod_changed(None, gpu_pod("other", gpus=2, node="n1", ours=False))
    assert sync.gpus_asked_beyond("n1") == 0
    # Bound pods are facts even beyond the node's size.
    sync.pod_changed(None, gpu_pod("more", gpus=1, node="n1", ours=False))
    assert sync.gpus_asked_beyond("n1") == 1


def test_giving_up_a_bind_drops_its_plan() -> None:
    plan = plan_annotation("up", "n1", [0], "p1", 1)
    pod = gpu_pod("p", uid="up", annotations={"egpu.io/plan": plan})
    sync = LedgerSync.rebuild(TOPOLOGY, [gpu_node("n1", gpus=1)], [pod])
    sync.reserve_intents([("ns/p", PodAssignment(0, "n1", (0,), {}, 1000, GIB))])
    sync.release_intent("ns/p")
    assert sync.account_of("ns/p") is None
    assert fits(sync, 1)


def test_a_node_that_goes_and_comes_back_counts_its_pods_again() -> None:
    node = gpu_node("n1")
    pod = gpu_pod("a", gpus=4, node="n1")
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [pod])
    sync.node_changed(node, None)
    assert "n1" not in sync.ledger
    sync.node_changed(None, node)
    assert used(sync, "n1")[0] == 4


def test_finished_and_deleted_pods_hold_nothing() -> None:
    node = gpu_node("n1")
    pod = gpu_pod("a", gpus=4, node="n1")
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [pod])
    done = copy.deepcopy(pod)
    done["status"]["phase"] = "Succeeded"
    sync.pod_changed(pod, done)
    assert used(sync, "n1")[0] == 0
    sync.pod_changed(done, pod)
    sync.pod_changed(pod, None)
    assert used(sync, "n1")[0] == 0


def test_any_order_of_events_ends_equal_to_a_rebuild() -> None:
    """Random streams of node and pod changes (binds, resizes, plans, cordons, unreadable
    nodes, deletions): after every step the ledger equals one rebuilt from scratch."""
    rng = random.Random(11)
    for trial in range(30):
        nodes: dict[str, dict[str, Any]] = {}
        pods: dict[str, dict[str, Any]] = {}
        sync = LedgerSync(TOPOLOGY)
        for step in range(60):
            roll = rng.random()
            if roll < 0.2 or not nodes:
                name = f"n{rng.randrange(4)}"
                old = nodes.get(name)
                new = gpu_node(name, gpus=rng.choice([4, 8]), leaf=f"l{rng.randrange(2)}")
                if rng.random() < 0.15:
                    new["metadata"]["annotations"]["egpu.io/unhealthy-gpus"] = "99"  # unreadable
                if rng.random() < 0.2:
                    new["spec"]["unschedulable"] = True
                nodes[name] = new
                sync.node_changed(old, new)
            elif roll < 0.27 and nodes:
                name = rng.choice(sorted(nodes))
                sync.node_changed(nodes.pop(name), None)
            elif roll < 0.85:
                name = f"p{rng.randrange(12)}"
                old = pods.get(name)
                node = f"n{rng.randrange(5)}"
                gpus = rng.randrange(0, 5)
                uid = (old or {}).get("metadata", {}).get("uid") or f"u{trial}-{step}"
                kind = rng.random()
                if kind < 0.5:
                    new = gpu_pod(name, gpus=gpus, node=node, ours=rng.random() < 0.5, uid=uid)
                else:
                    ids = sorted(rng.sample(range(8), gpus))
                    plan = plan_annotation(uid, node, ids, f"plan{step}", 1)
                    new = gpu_pod(name, gpus=gpus, uid=uid, annotations={"egpu.io/plan": plan})
                new["spec"]["containers"][0]["resources"]["requests"]["cpu"] = str(
                    rng.randrange(1, 64)
                )
                if rng.random() < 0.1:
                    new["status"]["phase"] = "Failed"
                pods[name] = new
                sync.pod_changed(old, new)
            elif pods:
                name = rng.choice(sorted(pods))
                sync.pod_changed(pods.pop(name), None)
            problems = sync.audit(list(nodes.values()), list(pods.values()))
            assert problems == [], f"trial {trial} step {step}: {problems}"


def test_a_node_claiming_impossibly_many_gpus_is_left_out_and_said_why() -> None:
    sync = LedgerSync.rebuild(TOPOLOGY, [gpu_node("liar", gpus=100_000)], [])
    assert "liar" not in sync.ledger
    assert "100000 GPUs" in sync.bad_nodes["liar"]


def test_every_pod_on_a_node_counts_toward_its_pod_count_and_extended_resources() -> None:
    node = gpu_node("n1")
    node["status"]["allocatable"].update({"pods": "3", "rdma/ib": "2"})
    node["spec"]["taints"] = [{"key": "gpu", "value": "broken", "effect": "NoSchedule"}]
    cpu_only = gpu_pod("agent", gpus=0, node="n1", ours=False)
    rdma = gpu_pod("job", gpus=1, node="n1", ours=False)
    rdma["spec"]["containers"][0]["resources"]["requests"]["rdma/ib"] = "2"
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [cpu_only, rdma])
    usage = sync.ledger.node_usage("n1")
    assert (usage.pods_used, usage.extras_used) == (2, (("rdma/ib", 2),))
    assert sync.ledger.tree.nodes["n1"].taints[0].key == "gpu"
    # One more pod fills the node by pod count; the filters then refuse it.
    sync.pod_changed(None, gpu_pod("third", gpus=0, node="n1", ours=False))
    assert "n1" in sync.ledger.tree.pods_full
    sync.pod_changed(rdma, None)
    usage = sync.ledger.node_usage("n1")
    assert (usage.pods_used, usage.extras_used) == (2, ())
    assert "n1" not in sync.ledger.tree.pods_full
    pods = [cpu_only, gpu_pod("third", gpus=0, node="n1", ours=False)]
    assert sync.audit([node], pods) == []


def test_a_fence_takes_gpus_out_of_placement_at_once_and_survives_node_events() -> None:
    node = gpu_node("n1", gpus=2)
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [])
    sync.set_fence(node, frozenset({1}))
    assert sync.ledger.node_view("n1").unhealthy_gpus == (1,)
    assert not fits(sync, 2) and fits(sync, 1)
    sync.node_changed(node, copy.deepcopy(node))  # the annotation not written yet
    assert sync.ledger.node_view("n1").unhealthy_gpus == (1,)
    sync.reset(TOPOLOGY, [node], [])  # a relist
    assert sync.ledger.node_view("n1").unhealthy_gpus == (1,)
    assert sync.audit([node], []) == []
    sync.set_fence(node, frozenset())
    assert sync.ledger.node_view("n1").unhealthy_gpus == () and fits(sync, 2)


def test_a_fence_adds_to_what_the_node_annotation_marks() -> None:
    node = gpu_node("n1", gpus=4)
    node["metadata"].setdefault("annotations", {})["egpu.io/unhealthy-gpus"] = "0"
    sync = LedgerSync.rebuild(TOPOLOGY, [node], [])
    sync.set_fence(node, frozenset({2, 9}))  # 9: no such GPU, ignored
    assert sync.ledger.node_view("n1").unhealthy_gpus == (0, 2)
