"""The soak's invariants, rule by rule, on hand-made API objects."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from soak.invariants import (
    Sample,
    Tracker,
    check_gpus,
    check_leaders,
    check_members,
    parse_duration,
    stuck,
)

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0
MODEL = "NVIDIA-H100-80GB-HBM3"


def stamp(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, leaf: str = "l0", gpus: int = 8, ready: bool = True, **spec: Any) -> Any:
    return {
        "metadata": {
            "name": name,
            "labels": {"egpu.io/leaf": leaf, "nvidia.com/gpu.product": MODEL},
        },
        "spec": spec,
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "128", "memory": "2048Gi"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(
    name: str,
    gpus: int,
    node: str | None = None,
    ids: str | None = None,
    scheduler: str = "egpu-scheduler",
    bound_at: float = T0,
    created_at: float | None = None,
    owner: str | None = None,
    rank: int | None = None,
    ready: bool = False,
    ns: str = "a",
) -> Any:
    annotations = {"egpu.io/gpu-ids": ids} if ids is not None else {}
    labels = {"egpu.io/rank": str(rank)} if rank is not None else {}
    conditions = []
    if node:
        conditions.append(
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(bound_at)}
        )
    if ready:
        conditions.append({"type": "Ready", "status": "True"})
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{name}",
        "annotations": annotations,
        "labels": labels,
        "creationTimestamp": stamp(created_at if created_at is not None else bound_at - 1),
    }
    if owner:
        meta["ownerReferences"] = [{"kind": "GPUWorkload", "uid": owner, "controller": True}]
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [
            {
                "name": "main",
                "resources": {
                    "requests": {"nvidia.com/gpu": str(gpus), "cpu": "500m", "memory": "1Gi"},
                    "limits": {"nvidia.com/gpu": str(gpus)},
                },
            }
        ],
    }
    if node:
        spec["nodeName"] = node
    return {
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Running" if node else "Pending", "conditions": conditions},
    }


def workload(name: str, replicas: int, **spec: Any) -> Any:
    return {
        "metadata": {"name": name, "namespace": "a", "uid": f"wl-{name}"},
        "spec": {"replicas": replicas, **spec},
    }


def members(name: str, placed: list[str | None], gpus: int = 8, **kw: Any) -> list[Any]:
    return [
        pod(
            f"{name}-{rank}",
            gpus,
            node=where,
            ids=",".join(str(i) for i in range(gpus)) if where else None,
            owner=f"wl-{name}",
            rank=rank,
            **kw,
        )
        for rank, where in enumerate(placed)
    ]


def sample(
    pods: list[Any], nodes: list[Any], workloads: list[Any] | None = None, now: float = T0
) -> Sample:
    return Sample(pods=pods, nodes=nodes, workloads=workloads or [], now=now)


def kinds(found: list[Any]) -> list[str]:
    return sorted(v.kind for v in found)


# -- GPUs ----------------------------------------------------------------------------------


def test_disjoint_ids_within_allocatable_are_fine() -> None:
    s = sample([pod("p", 4, "n1", "0,1,2,3"), pod("q", 4, "n1", "4,5,6,7")], [node("n1")])
    assert check_gpus(s, 20) == ([], [])


def test_one_gpu_held_by_two_pods_is_a_violation() -> None:
    s = sample([pod("p", 2, "n1", "0,1"), pod("q", 2, "n1", "1,2")], [node("n1")])
    found, _ = check_gpus(s, 20)
    assert kinds(found) == ["gpu-shared"]
    assert "GPU 1 of n1" in found[0].message


def test_a_finished_pod_holds_nothing() -> None:
    done = pod("p", 8, "n1", "0,1,2,3,4,5,6,7")
    done["status"]["phase"] = "Succeeded"
    s = sample([done, pod("q", 8, "n1", "0,1,2,3,4,5,6,7")], [node("n1")])
    assert check_gpus(s, 20) == ([], [])


def test_ids_must_match_the_request_and_the_node() -> None:
    s = sample(
        [pod("p", 1, "n1", "0,1,2,3,4,5,6,7"), pod("q", 1, "n2", "9")], [node("n1"), node("n2")]
    )
    found, _ = check_gpus(s, 20)
    assert kinds(found) == ["gpu-id-invalid", "gpu-id-invalid"]


def test_a_bound_egpu_pod_without_ids_is_a_violation() -> None:
    found, _ = check_gpus(sample([pod("p", 2, "n1")], [node("n1")]), 20)
    assert kinds(found) == ["gpu-ids-missing"]


def test_counts_over_allocatable_blame_the_binder_when_it_came_last() -> None:
    foreign = pod("f", 6, "n1", scheduler="default-scheduler", bound_at=T0 - 60)
    late = pod("p", 4, "n1", "0,1,2,3", bound_at=T0)
    found, notes = check_gpus(sample([foreign, late], [node("n1")]), 20)
    assert kinds(found) == ["gpu-overcommit"] and notes == []
    assert "n1 has 8 GPUs; its live pods ask 10" in found[0].message


def test_counts_over_allocatable_in_a_race_between_schedulers_are_a_note() -> None:
    # The foreign pod came 5 s before the binder's bind, or after it: a race the kubelet
    # arbitrates, not a ledger bug.
    for foreign_at in (T0 - 5, T0 + 30):
        foreign = pod("f", 6, "n1", scheduler="default-scheduler", bound_at=foreign_at)
        ours = pod("p", 4, "n1", "0,1,2,3", bound_at=T0)
        found, notes = check_gpus(sample([foreign, ours], [node("n1")]), 20)
        assert found == [] and len(notes) == 1 and "race" in notes[0]


def test_pods_on_a_deleted_node_are_left_to_the_garbage_collector() -> None:
    s = sample([pod("p", 8, "gone", "0,1,2,3,4,5,6,7"), pod("q", 8, "gone", "0")], [])
    found, _ = check_gpus(s, 20)
    assert kinds(found) == ["gpu-id-invalid", "gpu-shared"]  # ids still checked; no count


# -- members -------------------------------------------------------------------------------


def test_a_gang_across_two_leaves_is_split() -> None:
    nodes = [node("n1", "l0"), node("n2", "l1")]
    wl = workload("g", 2, topology={"required": "egpu.io/leaf"})
    found = check_members(sample(members("g", ["n1", "n2"]), nodes, [wl]))
    assert kinds(found) == ["gang-split"]
    assert check_members(sample(members("g", ["n1", None]), nodes, [wl])) == []


def test_a_member_on_another_gpu_model_is_reported() -> None:
    wl = workload("g", 1, gpuModel="NVIDIA-L40S")
    assert kinds(check_members(sample(members("g", ["n1"]), [node("n1")], [wl]))) == [
        "wrong-gpu-model"
    ]


def test_members_are_named_by_rank_and_ranks_are_unique() -> None:
    pods = members("g", ["n1", None])
    pods[1]["metadata"]["labels"]["egpu.io/rank"] = "0"  # g-1 says it is rank 0
    found = check_members(sample(pods, [node("n1")], [workload("g", 2)]))
    assert kinds(found) == ["member-misnamed"]
    stray = pod("g-x", 1, owner="wl-g")
    assert kinds(check_members(sample([stray], [], [workload("g", 1)]))) == ["member-misnamed"]


def test_pods_of_a_deleted_workload_are_not_judged() -> None:
    assert check_members(sample(members("gone", ["n1", "n2"]), [node("n1")], [])) == []


# -- over time -------------------------------------------------------------------------------


def test_an_original_member_left_unbound_past_the_timeout_is_a_partly_bound_gang() -> None:
    wl = workload("g", 2, gang={"timeout": "20s"})
    pods = members("g", ["n1", None], bound_at=T0, created_at=T0 - 1)
    tracker = Tracker(partial_grace_s=30)
    assert tracker.observe(sample(pods, [node("n1"), node("n2")], [wl], now=T0 + 40)) == []
    found = tracker.observe(sample(pods, [node("n1"), node("n2")], [wl], now=T0 + 51))
    assert kinds(found) == ["gang-partly-bound"]
    # Reported once, however long it lasts.
    assert tracker.observe(sample(pods, [node("n1"), node("n2")], [wl], now=T0 + 60)) == []


def test_a_replacement_member_waiting_for_room_is_not_a_partly_bound_gang() -> None:
    wl = workload("g", 2, gang={"timeout": "20s"})
    pods = members("g", ["n1", None], bound_at=T0)
    pods[1]["metadata"]["creationTimestamp"] = stamp(T0 + 100)  # made after the bind
    tracker = Tracker()
    full = node("n2", gpus=8)
    busy = pod("f", 8, "n2", scheduler="default-scheduler")  # no room anywhere
    assert tracker.observe(sample([*pods, busy], [node("n1"), full], [wl], now=T0 + 300)) == []


def test_pending_work_with_room_is_stuck_only_after_the_liveness_time() -> None:
    nodes = [node("n1")]
    lone = pod("bare", 2, created_at=T0)
    assert list(stuck(sample([lone], nodes))) == ["a/bare"]
    tracker = Tracker(liveness_s=90)
    assert tracker.observe(sample([lone], nodes, now=T0)) == []
    assert tracker.observe(sample([lone], nodes, now=T0 + 60)) == []
    assert kinds(tracker.observe(sample([lone], nodes, now=T0 + 91))) == ["stuck-with-room"]


def test_room_for_a_gang_is_counted_in_one_domain_of_its_level() -> None:
    nodes = [node("n1", "l0"), node("n2", "l1")]
    wl = workload("g", 2, topology={"required": "egpu.io/leaf"})
    pods = members("g", [None, None])
    assert stuck(sample(pods, nodes, [wl])) == {}  # one 8-GPU node per leaf: no room
    nodes.append(node("n3", "l1"))
    assert list(stuck(sample(pods, nodes, [wl]))) == ["a/g"]
    # Partly bound in l0: only l0 counts.
    pods = members("g", ["n1", None])
    assert stuck(sample(pods, nodes, [wl])) == {}


def test_cordoned_faulted_and_not_ready_nodes_offer_no_room() -> None:
    lone = pod("bare", 1)
    faulted = node("n3")
    faulted["metadata"]["labels"]["egpu.io/sim-fault"] = "GPUFallenOffBus"
    nodes = [node("n1", unschedulable=True), node("n2", ready=False), faulted]
    assert stuck(sample([lone], nodes)) == {}


def test_an_unowned_pod_deleted_by_someone_else_is_lost() -> None:
    tracker = Tracker()
    for name in ("mine", "gc", "taken"):
        tracker.created_unowned(f"a/{name}")
    pods = [pod("mine", 1), pod("gc", 1, "n9", "0"), pod("taken", 1, "n1", "0")]
    tracker.observe(sample(pods, [node("n1"), node("n9")], now=T0))
    tracker.deleting("a/mine")
    tracker.node_deleted("n9", T0 + 1)
    found = tracker.observe(sample([], [node("n1")], now=T0 + 2))
    assert [v.key for v in found] == ["a/taken"] and found[0].kind == "unowned-pod-lost"


def test_an_unowned_pod_not_seen_yet_is_not_lost() -> None:
    tracker = Tracker()
    tracker.created_unowned("a/new")  # registered before its create call returns
    assert tracker.observe(sample([], [node("n1")], now=T0)) == []
    tracker.observe(sample([pod("new", 1)], [node("n1")], now=T0 + 2))
    assert kinds(tracker.observe(sample([], [node("n1")], now=T0 + 4))) == ["unowned-pod-lost"]


def test_a_ready_member_of_a_whole_gang_deleted_without_a_cause_was_killed() -> None:
    wl = workload("g", 2)
    nodes = [node("n1"), node("n2")]
    tracker = Tracker()
    tracker.observe(sample(members("g", ["n1", "n2"], ready=True), nodes, [wl], now=T0))
    found = tracker.observe(sample(members("g", ["n1"], ready=True), nodes, [wl], now=T0 + 2))
    assert kinds(found) == ["healthy-member-killed"]


def test_members_gone_by_scale_down_node_loss_or_workload_deletion_were_not_killed() -> None:
    nodes = [node("n1"), node("n2")]
    whole = members("g", ["n1", "n2"], ready=True)
    for cause in ("scale", "node", "workload", "unready"):
        tracker = Tracker()
        tracker.observe(sample(whole, nodes, [workload("g", 2)], now=T0))
        after_nodes, after_wl = nodes, [workload("g", 2)]
        if cause == "scale":
            tracker.scaled("wl-g", 1, T0 + 1)
        elif cause == "node":
            tracker.node_deleted("n2", T0 + 1)
            after_nodes = [nodes[0]]
        elif cause == "workload":
            after_wl = []
        else:
            after_nodes = [nodes[0], node("n2", ready=False)]
        found = tracker.observe(sample(whole[:1], after_nodes, after_wl, now=T0 + 2))
        assert found == [], cause


def test_eventually_members_are_exactly_ranks_0_to_replicas() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    tracker = Tracker()
    assert tracker.eventual(sample(members("g", ["n1", "n2"]), nodes, [workload("g", 2)])) == []
    found = tracker.eventual(sample(members("g", ["n1"]), nodes, [workload("g", 2)]))
    assert kinds(found) == ["members-wrong"]
    found = tracker.eventual(sample(members("g", ["n1", "n2", "n3"]), nodes, [workload("g", 2)]))
    assert kinds(found) == ["members-wrong"]


def test_go_durations() -> None:
    assert parse_duration("20s") == 20
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5


INF = float("inf")


def test_binds_by_two_live_processes_close_together_are_two_leaders() -> None:
    binds = [(100.0, "op-1", "a/p"), (101.0, "op-2", "a/q"), (102.5, "op-1", "a/r")]
    lives = {"op-1": (0.0, INF), "op-2": (0.0, INF)}
    found = check_leaders(binds, lives, [], [], 2.0)
    assert kinds(found) == ["two-leaders"]  # one per pair of processes


def test_a_killed_or_cut_off_process_and_a_takeover_are_not_two_leaders() -> None:
    binds = [(100.0, "op-1", "a/p"), (101.0, "op-2", "a/q")]
    killed = {"op-1": (0.0, 100.5), "op-2": (0.0, INF)}
    assert check_leaders(binds, killed, [], [], 2.0) == []
    alive = {"op-1": (0.0, INF), "op-2": (0.0, INF)}
    assert check_leaders(binds, alive, [("op-1", 100.5, 120.0)], [], 2.0) == []
    later = [(100.0, "op-1", "a/p"), (117.0, "op-2", "a/q")]
    assert check_leaders(later, alive, [], [], 2.0) == []


def test_a_bind_while_another_process_holds_the_lease_is_reported() -> None:
    holders = [(98.0, "op-2"), (100.0, "op-2"), (102.0, "op-2"), (104.0, None)]
    lives = {"op-1": (0.0, INF), "op-2": (0.0, INF)}
    found = check_leaders([(101.0, "op-1", "a/p"), (103.0, "op-2", "a/q")], lives, [], holders, 0.5)
    assert kinds(found) == ["bound-without-lease"] and "op-1 bound a/p" in found[0].message
    # Around a change of holder, nothing is claimed.
    holders = [(98.0, "op-1"), (102.0, "op-2")]
    assert check_leaders([(101.0, "op-1", "a/p")], lives, [], holders, 0.5) == []
