"""The binder's pure policy: gangs checked before anything is placed, requests built from
their pods, an earlier leader's plans resumed only when whole, unschedulable gangs parked."""

from __future__ import annotations

import json

import pytest

from egpu.domain.placement import Placement, PodAssignment
from egpu.engines.binding import (
    BadGang,
    Gang,
    Parking,
    check_gang,
    gang_request,
    gangs_to_place,
    pair_with_pods,
    pod_slots,
    required_domain,
    shape_key,
    split_resumable,
)
from egpu.state.pods import read_pod
from objects import gpu_pod, member_pod, plan_annotation

pytestmark = pytest.mark.unit
LEVELS = ("egpu.io/block", "egpu.io/leaf")
LEAF = "egpu.io/leaf"


def members(workload: str, size: int, bound: int = 0, **annotations: str) -> list:  # type: ignore[type-arg]
    pods = []
    for rank in range(size):
        node = f"n{rank}" if rank < bound else None
        pods.append(
            read_pod(
                member_pod(
                    workload,
                    rank,
                    size,
                    node=node,
                    uid=f"u{rank}",
                    annotations={"egpu.io/topology-required": LEAF, **annotations},
                )
            )
        )
    return pods


def test_a_gang_of_good_pods_is_ready_to_place_in_rank_order() -> None:
    gang = check_gang("ns/train", list(reversed(members("train", 4))))
    assert isinstance(gang, Gang)
    assert [p.rank for p in gang.pending] == [0, 1, 2, 3]
    assert (gang.size, gang.min_members, gang.workload) == (4, 4, "train")


def test_one_unreadable_pod_sets_its_gang_aside_and_says_why() -> None:
    pods = members("train", 2)
    bad = read_pod(
        gpu_pod("g-0", labels={"egpu.io/gang": "g"}, annotations={"egpu.io/gang-size": "abc"})
    )
    good = read_pod(gpu_pod("solo"))
    gangs, set_aside = gangs_to_place(
        [("ns/train", pods), (bad.gang_id, [bad]), (good.gang_id, [good])], busy=set()
    )
    assert {g.gang_id for g in gangs} == {"ns/train", good.gang_id}
    (aside,) = set_aside
    assert "egpu.io/gang-size='abc'" in aside.message and aside.workload is None


def test_two_pods_that_claim_one_rank_are_refused() -> None:
    a = read_pod(
        gpu_pod(
            "a",
            labels={"egpu.io/gang": "g", "egpu.io/rank": "1"},
            annotations={"egpu.io/gang-size": "2"},
        )
    )
    b = read_pod(
        gpu_pod(
            "b",
            labels={"egpu.io/gang": "g", "egpu.io/rank": "1"},
            annotations={"egpu.io/gang-size": "2"},
        )
    )
    checked = check_gang(a.gang_id, [a, b])
    assert isinstance(checked, BadGang) and "both claim rank 1" in checked.message


def test_more_pods_than_the_group_size_are_refused() -> None:
    pods = [
        read_pod(
            gpu_pod(f"p{i}", labels={"egpu.io/gang": "g"}, annotations={"egpu.io/gang-size": "2"})
        )
        for i in range(3)
    ]
    checked = check_gang(pods[0].gang_id, pods)
    assert isinstance(checked, BadGang) and "3 pods claim a gang of 2" in checked.message


def test_a_pod_without_gpus_is_refused_with_a_hint() -> None:
    zero = read_pod(gpu_pod("cpu-only", gpus=0))
    checked = check_gang(zero.gang_id, [zero])
    assert isinstance(checked, BadGang) and "default scheduler" in checked.message


def test_a_gang_being_bound_waits_and_priority_then_age_orders_the_rest() -> None:
    low = read_pod(gpu_pod("low"))
    high_pod = gpu_pod("high")
    high_pod["spec"]["priority"] = 100
    high = read_pod(high_pod)
    busy = read_pod(gpu_pod("busy"))
    gangs, _ = gangs_to_place([(p.gang_id, [p]) for p in (low, high, busy)], busy={busy.key})
    assert [g.gang_id for g in gangs] == [high.gang_id, low.gang_id]


def test_the_rest_of_a_partly_placed_gang_joins_its_domain() -> None:
    where = [{"egpu.io/block": "b1", "egpu.io/leaf": "b1-l2", "kubernetes.io/hostname": "n"}]
    assert required_domain(where, LEVELS, LEAF) == ("b1", "b1-l2")
    assert required_domain(where, LEVELS, None) == ()
    assert required_domain([], LEVELS, LEAF) == ()
    gang = check_gang("ns/train", members("train", 4, bound=2))
    assert isinstance(gang, Gang)
    request = gang_request(gang, gang.pending, placed=2, within=("b1", "b1-l2"))
    assert request.within == ("b1", "b1-l2")
    assert (request.pod_count, request.gpus_per_pod, request.min_members) == (2, 8, None)


def test_a_moved_member_may_only_narrow_the_domain() -> None:
    moved = members("train", 1, **{"egpu.io/within": json.dumps(["b1", "b1-l2"])})
    gang = check_gang("ns/train", moved)
    assert isinstance(gang, Gang)
    assert gang_request(gang, gang.pending, 0, ("b1",)).within == ("b1", "b1-l2")
    assert gang_request(gang, gang.pending, 0, ("b9",)).within == ("b9",), "disagrees: ignored"


def test_shape_key_ignores_the_gang_name_only() -> None:
    a = check_gang("ns/a", members("a", 1))
    b = check_gang("ns/b", members("b", 1))
    assert isinstance(a, Gang) and isinstance(b, Gang)
    ra, rb = gang_request(a, a.pending, 0, ()), gang_request(b, b.pending, 0, ())
    assert ra.gang_id != rb.gang_id and shape_key(ra) == shape_key(rb)


def test_pods_take_the_engines_slots_in_rank_order_and_keep_their_rank() -> None:
    gang = check_gang("ns/train", members("train", 2))
    assert isinstance(gang, Gang)
    slots = (
        PodAssignment(1, "n9", (4, 5), {"egpu.io/leaf": "l"}),
        PodAssignment(0, "n8", (0, 1), {"egpu.io/leaf": "l"}),
    )
    pairs = pair_with_pods(gang.pending, Placement("ns/train", slots, LEAF, {}, 2))
    assert [(p.rank, a.node, a.rank) for p, a in pairs] == [(0, "n8", 0), (1, "n9", 1)]
    assert pairs[0][1].cpu_millis == gang.pending[0].demand.cpu_millis


def planned(workload: str, size: int, recorded: int, plan_size: int) -> list:  # type: ignore[type-arg]
    pods = []
    for rank in range(size):
        annotations = {}
        if rank < recorded:
            annotations["egpu.io/plan"] = plan_annotation(
                f"u{rank}", f"n{rank}", [0], "p1", plan_size
            )
        pods.append(
            read_pod(
                member_pod(workload, rank, size, gpus=1, uid=f"u{rank}", annotations=annotations)
            )
        )
    return pods


def test_a_whole_plan_is_resumed_where_it_was_recorded() -> None:
    gang = check_gang("ns/w", planned("w", 3, recorded=3, plan_size=3))
    assert isinstance(gang, Gang)
    resume = split_resumable(gang, held={p.key for p in gang.pending})
    assert [a.node for _, a in resume.resumed] == ["n0", "n1", "n2"]
    assert resume.stale == [] and resume.fresh == []


def test_a_plan_cut_short_is_dropped_and_the_whole_gang_placed_again() -> None:
    # The leader died after recording 2 of the 3 plans.
    gang = check_gang("ns/w", planned("w", 3, recorded=2, plan_size=3))
    assert isinstance(gang, Gang)
    resume = split_resumable(gang, held={p.key for p in gang.pending})
    assert resume.resumed == []
    assert resume.stale == ["ns/w-0", "ns/w-1"]
    assert [p.rank for p in resume.fresh] == [0, 1, 2]


def test_a_whole_plan_whose_reservation_no_longer_holds_is_placed_again() -> None:
    gang = check_gang("ns/w", planned("w", 2, recorded=2, plan_size=2))
    assert isinstance(gang, Gang)
    resume = split_resumable(gang, held={"ns/w-0"})
    assert [p.key for p, _ in resume.resumed] == ["ns/w-0"]
    assert [p.key for p in resume.fresh] == ["ns/w-1"]


def test_parking_backs_off_and_any_capacity_change_lets_gangs_try_again() -> None:
    parking = Parking(min_s=1, max_s=4)
    assert parking.park("g", now=0) == 1
    assert parking.parked("g", now=0.5) and not parking.parked("g", now=1.5)
    assert parking.park("g", now=2) == 2
    assert parking.park("g", now=3) == 4 and parking.park("g", now=4) == 4
    parking.capacity_changed()
    assert not parking.parked("g", now=4.1)
    parking.keep_only(set())
    assert len(parking) == 0


def test_free_pod_slots_count_whole_pods_per_node() -> None:
    assert pod_slots((0, 2, 0, 0, 1), 2) == 2  # two nodes with 1 free: none; one with 4: two
    with pytest.raises(ValueError):
        pod_slots((1,), 0)
