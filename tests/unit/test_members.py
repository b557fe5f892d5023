from __future__ import annotations

import pytest

from egpu.engines.members import (
    Member,
    count_members,
    gang_timed_out,
    plan_members,
    stale_gang_marks,
    workload_phase,
)

pytestmark = pytest.mark.unit


def test_missing_ranks_are_created_and_extra_ranks_deleted() -> None:
    members = [Member("w-0", 0), Member("w-2", 2), Member("w-5", 5)]
    plan = plan_members(3, members)
    assert plan.create_ranks == (1,)
    assert plan.delete_names == ("w-5",)


def test_a_member_being_deleted_is_replaced() -> None:
    plan = plan_members(2, [Member("w-0", 0, deleting=True), Member("w-1", 1)])
    assert plan.create_ranks == (0,)
    assert plan.delete_names == ()


def test_failed_members_are_not_replaced_here() -> None:
    plan = plan_members(1, [Member("w-0", 0, phase="Failed")])
    assert plan == plan_members(1, [Member("w-0", 0)])
    assert plan.create_ranks == ()


@pytest.mark.parametrize(
    ("members", "unschedulable", "phase"),
    [
        ([Member("a", 0), Member("b", 1)], True, "Pending"),
        ([Member("a", 0, node="n"), Member("b", 1)], False, "Placing"),
        (
            [Member("a", 0, node="n", ready=True), Member("b", 1, node="n", ready=True)],
            False,
            "Running",
        ),
        ([Member("a", 0, node="n", phase="Failed"), Member("b", 1, node="n")], False, "Degraded"),
        (
            [
                Member("a", 0, node="n", phase="Succeeded"),
                Member("b", 1, node="n", phase="Succeeded"),
            ],
            False,
            "Succeeded",
        ),
    ],
)
def test_phase(members: list[Member], unschedulable: bool, phase: str) -> None:
    assert workload_phase(2, count_members(members), unschedulable) == phase


def test_gang_timeout_counts_from_the_oldest_waiting_member() -> None:
    assert not gang_timed_out(None, 600, 10_000)  # nothing waits
    assert not gang_timed_out(9_500, 600, 10_000)
    assert gang_timed_out(9_300, 600, 10_000)
    assert not gang_timed_out(0, 0, 10_000)  # no timeout set


def test_pending_members_with_an_old_gang_size_are_marked_again() -> None:
    # Scaled from 3 to 2 while pending: the two left still said "a gang of 3", and the
    # binder waited for a third member that would never come (found by the chaos soak).
    members = [
        Member("w-0", 0, gang_marks=("3", "3")),
        Member("w-1", 1, node="n1", gang_marks=("3", "3")),  # running: left as it started
        Member("w-2", 2, gang_marks=("2", "2")),
        Member("w-3", 3, deleting=True, gang_marks=("3", "3")),
        Member("w-4", 4),  # unreadable marks: set them
    ]
    assert stale_gang_marks(members, ("2", "2")) == ("w-0", "w-4")


def test_ranks_an_elastic_repair_dropped_are_not_created_and_their_pods_go() -> None:
    members = [Member("w-0", 0), Member("w-2", 2, node="n1")]
    plan = plan_members(4, members, dropped=frozenset({1, 2}))
    assert plan.create_ranks == (3,) and plan.delete_names == ("w-2",)
