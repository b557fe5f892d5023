from __future__ import annotations

import pytest

from egpu.engines.members import (
    Member,
    count_members,
    gang_timed_out,
    plan_members,
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
