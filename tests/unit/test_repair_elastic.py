"""Elastic workloads: topology distance, which lost member is dropped, room in the
domain, shrink and grow decisions (policy Shrink)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from egpu.engines.repair.elastic import (
    FreeNode,
    domain_of_running,
    farthest_first,
    room_for_members,
    topology_distance,
)
from egpu.engines.repair.workloads import (
    Action,
    MemberState,
    RepairDecision,
    RepairRecord,
    decide_grow,
    decide_regrow_stuck,
    decide_repair,
)

pytestmark = pytest.mark.unit
NOW = 5_000.0
LEAF, BLOCK = "egpu.io/leaf", "egpu.io/block"


def member(rank: int, node: str, leaf: str, block: str = "b0") -> MemberState:
    return MemberState(
        f"w-{rank}", rank, f"uid-{rank}", node, (0, 1, 2, 3), domain=((BLOCK, block), (LEAF, leaf))
    )


def test_topology_distance_counts_the_levels_not_shared() -> None:
    a = {BLOCK: "b0", LEAF: "l0"}
    assert topology_distance(a, a, same_node=True) == 0
    assert topology_distance(a, a, same_node=False) == 1
    assert topology_distance(a, {BLOCK: "b0", LEAF: "l1"}, same_node=False) == 2
    assert topology_distance(a, {BLOCK: "b1", LEAF: "l2"}, same_node=False) == 3


def test_the_member_farthest_from_the_rest_comes_first() -> None:
    rest = [member(0, "n0", "l0"), member(1, "n0", "l0"), member(2, "n1", "l0")]
    near = member(3, "n1", "l0")  # same node as rank 2, same leaf as all
    other_leaf = member(4, "n5", "l1")
    other_block = member(5, "n9", "l7", block="b1")
    order = farthest_first([near, other_leaf, other_block], rest)
    assert [m.name for m in order] == ["w-5", "w-4", "w-3"]
    # a tie goes to the highest rank
    twins = farthest_first([member(6, "n7", "l3"), member(7, "n8", "l3")], rest)
    assert [m.name for m in twins] == ["w-7", "w-6"]


def test_room_counts_whole_members_in_the_domain_of_the_model() -> None:
    nodes = [
        FreeNode("a", "H100", 8, {LEAF: "l0"}),
        FreeNode("b", "H100", 3, {LEAF: "l0"}),  # too few for a member of 4
        FreeNode("c", "A100", 8, {LEAF: "l0"}),  # another model
        FreeNode("d", "H100", 8, {LEAF: "l1"}),  # another leaf
    ]
    assert room_for_members(nodes, {LEAF: "l0"}, 4, "H100") == 2
    assert room_for_members(nodes, {LEAF: "l0"}, 4, None) == 4
    assert room_for_members(nodes, {}, 4, "H100") == 4
    assert room_for_members(nodes, {LEAF: "l0"}, 0, None) == 0


def test_room_matches_models_as_placement_does() -> None:
    """A gpuModel of H200 runs on GPU Feature Discovery's NVIDIA-H200-141GB-HBM3e: the
    room to grow back there must be counted, as the binder would place there."""
    nodes = [FreeNode("a", "NVIDIA-H200-141GB-HBM3e", 8, {LEAF: "l0"})]
    assert room_for_members(nodes, {LEAF: "l0"}, 8, "H200") == 1
    assert room_for_members(nodes, {LEAF: "l0"}, 8, "H100") == 0


def test_the_domain_comes_from_a_running_member_not_a_lost_one() -> None:
    members = [member(0, "n0", "l9"), member(1, "n1", "l0")]
    assert domain_of_running(members, LEAF, frozenset({"uid-0"})) == {LEAF: "l0"}
    assert domain_of_running(members, None) == {}
    assert domain_of_running(members, LEAF, frozenset({"uid-0", "uid-1"})) == {}


def gang() -> list[MemberState]:
    # ranks 0-2 in leaf l0, rank 3 alone in leaf l1
    return [
        member(0, "n0", "l0"),
        member(1, "n0", "l0"),
        member(2, "n1", "l0"),
        member(3, "n4", "l1"),
    ]


def shrink(**kw: object) -> RepairDecision:
    args: dict[str, object] = {
        "policy": "Shrink",
        "max_restarts": 5,
        "members": gang(),
        "fenced": {},
        "lost_nodes": frozenset(),
        "record": RepairRecord(),
        "now": NOW,
        "min_members": 2,
        "room": 0,
    }
    args.update(kw)
    return decide_repair(**args)  # type: ignore[arg-type]


def test_a_lost_member_without_room_is_dropped_not_replaced() -> None:
    d = shrink(lost_nodes=frozenset({"n1"}))
    assert d.action is Action.SHRINK and d.reason == "Shrunk"
    assert d.delete == ("w-2",)
    assert d.record == RepairRecord(1, NOW, None, (2,))
    assert "shrinking from 4 to 3 members" in d.message


def test_farthest_first_down_to_the_minimum_the_rest_replaced() -> None:
    # n0 (ranks 0, 1) and n4 (rank 3) lost; min 2 allows dropping two of the three
    d = shrink(lost_nodes=frozenset({"n0", "n4"}))
    assert d.action is Action.SHRINK
    assert set(d.delete) == {"w-0", "w-1", "w-3"}
    # rank 3 (other leaf) is farthest from rank 2, then rank 1 (tie with 0, higher rank)
    assert d.record.dropped == (1, 3)
    assert "replacing w-0" in d.message


def test_room_in_the_domain_replaces_instead_of_shrinking() -> None:
    d = shrink(lost_nodes=frozenset({"n1"}), room=1)
    assert d.action is Action.REPLACE and d.delete == ("w-2",)
    assert d.record.dropped == ()


def test_at_the_minimum_a_lost_member_is_replaced() -> None:
    d = shrink(lost_nodes=frozenset({"n1"}), min_members=4)
    assert d.action is Action.REPLACE


def test_a_shrink_spends_the_budget_and_waits_out_the_backoff() -> None:
    spent = shrink(lost_nodes=frozenset({"n1"}), record=RepairRecord(5, 1.0), max_restarts=5)
    assert spent.action is Action.GIVE_UP
    waiting = shrink(lost_nodes=frozenset({"n1"}), record=RepairRecord(1, NOW - 1))
    assert waiting.action is Action.WAIT


def test_dropped_ranks_survive_later_repairs() -> None:
    d = shrink(
        members=gang()[:3], lost_nodes=frozenset({"n1"}), record=RepairRecord(1, 1.0, None, (3,))
    )
    assert d.action is Action.SHRINK and d.record.dropped == (2, 3)
    replaced = shrink(
        members=gang()[:3],
        fenced={"n0": frozenset({1})},
        record=RepairRecord(1, 1.0, None, (3,)),
        min_members=3,
    )
    assert replaced.action is Action.REPLACE and replaced.record.dropped == (3,)


def test_room_returning_grows_the_lowest_dropped_ranks_back() -> None:
    record = RepairRecord(2, 1.0, "step-9", (1, 3))
    d = decide_grow(4, record, room=1)
    assert d.action is Action.GROW and d.reason == "GrewBack"
    # no budget spent; the rank grown back is noted, with when
    assert d.record == RepairRecord(2, 1.0, "step-9", (3,), grown=(1,), grown_at=0.0)
    assert "growing from 2 to 3 of 4" in d.message
    assert decide_grow(4, record, room=5).record.dropped == ()


def test_without_room_or_with_an_open_breaker_it_stays_shrunk() -> None:
    record = RepairRecord(1, 1.0, None, (2,))
    for d in (decide_grow(4, record, room=0), decide_grow(4, record, room=3, breaker_open=True)):
        assert d.action is Action.NOTHING and d.reason == "Shrunk"
        assert "running 3 of 4 wanted members" in d.message


def test_ranks_scaled_away_are_forgotten() -> None:
    d = decide_grow(2, RepairRecord(1, 1.0, None, (2, 3)), room=0)
    assert d.action is Action.GROW and d.record.dropped == ()
    assert decide_grow(4, RepairRecord(), room=3).action is Action.NOTHING


def test_a_grown_back_rank_that_finds_no_room_is_dropped_again_and_growth_waits() -> None:
    grown = RepairRecord(1, 1.0, "ckpt-3", dropped=(3,), grown=(2,), grown_at=NOW)
    assert decide_grow(4, RepairRecord(1, 1.0, dropped=(2, 3)), room=1, now=NOW).record == replace(
        RepairRecord(1, 1.0, dropped=(3,)), grown=(2,), grown_at=NOW
    )
    pending = replace(member(2, "", "l0"), node=None, pending_since=NOW + 1)
    running = [member(0, "n0", "l0"), member(1, "n1", "l0"), pending]
    # still within the time a placement may take: nothing
    assert decide_regrow_stuck(running, grown, NOW + 20) is None
    stuck = decide_regrow_stuck(running, grown, NOW + 31, after_s=30, retry_after_s=300)
    assert stuck is not None and stuck.action is Action.SHRINK
    assert stuck.delete == ("w-2",) and stuck.reason == "GrowBackFailed"
    assert stuck.record.dropped == (2, 3) and stuck.record.grown == ()
    assert stuck.record.grow_failed_at == NOW + 31 and stuck.record.restarts == 1  # no budget
    # the room check (GPUs only) says yes again at once: not tried until the hold is over
    held = decide_grow(4, stuck.record, room=2, now=NOW + 40, retry_after_s=300)
    assert held.action is Action.NOTHING and held.reason == "Shrunk"
    assert "tried again in 291s" in held.message
    again = decide_grow(4, stuck.record, room=2, now=NOW + 332, retry_after_s=300)
    assert again.action is Action.GROW and again.record.dropped == ()


def test_a_grown_back_rank_that_was_placed_or_an_older_pending_pod_is_left_alone() -> None:
    grown = RepairRecord(1, 1.0, dropped=(), grown=(2,), grown_at=NOW)
    placed = [member(0, "n0", "l0"), member(2, "n2", "l0")]
    assert decide_regrow_stuck(placed, grown, NOW + 100) is None
    older = replace(member(2, "", "l0"), node=None, pending_since=NOW - 50)  # not this growth's
    assert decide_regrow_stuck([member(0, "n0", "l0"), older], grown, NOW + 100) is None
