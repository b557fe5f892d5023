"""Every repair decision for a workload with members on fenced GPUs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from egpu.engines.repair.workloads import (
    Action,
    Backoff,
    MemberState,
    RepairDecision,
    RepairRecord,
    affected_members,
    decide_move,
    decide_repair,
    resume_point,
)

pytestmark = pytest.mark.unit
NOW = 5_000.0


def gang(n: int = 4, per_node: int = 2) -> list[MemberState]:
    return [
        MemberState(
            f"w-{r}",
            r,
            f"uid-{r}",
            f"node-{r // per_node}",
            tuple(range(4 * (r % per_node), 4 * (r % per_node) + 4)),
        )
        for r in range(n)
    ]


FENCE = {"node-1": frozenset({5})}  # w-3 holds GPUs 4..7 of node-1


def decide(policy: str = "ReplaceMember", **kw: object) -> RepairDecision:
    args: dict[str, object] = {
        "policy": policy,
        "max_restarts": 3,
        "members": gang(),
        "fenced": FENCE,
        "lost_nodes": frozenset(),
        "record": RepairRecord(),
        "now": NOW,
    }
    args.update(kw)
    return decide_repair(**args)  # type: ignore[arg-type]


def test_only_members_on_a_fenced_gpu_are_affected() -> None:
    assert [m.name for m in affected_members(gang(), FENCE, frozenset())] == ["w-3"]


def test_members_with_unknown_gpus_on_a_fenced_node_are_affected() -> None:
    members = [MemberState("w-0", 0, "u0", "node-1"), MemberState("w-1", 1, "u1", "node-2")]
    assert [m.name for m in affected_members(members, FENCE, frozenset())] == ["w-0"]


def test_members_on_a_lost_node_are_affected() -> None:
    assert [m.name for m in affected_members(gang(), {}, frozenset({"node-0"}))] == ["w-0", "w-1"]


def test_deleting_finished_unbound_or_already_asked_members_are_not_affected() -> None:
    base = MemberState("w-3", 3, "uid-3", "node-1", (4, 5, 6, 7))
    for m in (
        MemberState("w-3", 3, "uid-3", "node-1", (4, 5), deleting=True),
        MemberState("w-3", 3, "uid-3", "node-1", (4, 5), finished=True),
        MemberState("w-3", 3, "uid-3", None),
    ):
        assert affected_members([m], FENCE, frozenset()) == []
    assert affected_members([base], FENCE, frozenset(), asked=frozenset({"uid-3"})) == []


def test_nothing_to_do_without_a_fault() -> None:
    d = decide(fenced={})
    assert d.action is Action.NOTHING and d.delete == ()


def test_replace_member_deletes_only_the_affected_member() -> None:
    d = decide()
    assert d.action is Action.REPLACE and d.delete == ("w-3",)
    assert d.record == RepairRecord(1, NOW, None)
    assert "node-1 GPU [5]" in d.message


def test_restart_gang_deletes_every_member_together() -> None:
    d = decide("RestartGang")
    assert d.action is Action.RESTART
    assert d.delete == ("w-0", "w-1", "w-2", "w-3")
    assert d.affected == ("w-3",)


def test_policy_none_only_reports() -> None:
    d = decide("None")
    assert d.action is Action.REPORT and d.delete == () and d.record == RepairRecord()
    assert d.reason == "MemberOnUnhealthyGPU"


def test_the_retry_budget_ends_in_giving_up() -> None:
    d = decide(record=RepairRecord(3, NOW - 9999))
    assert d.action is Action.GIVE_UP and d.delete == ()
    assert d.reason == "RetryBudgetExhausted"
    assert decide(max_restarts=0).action is Action.GIVE_UP


def test_repairs_back_off_doubling() -> None:
    backoff = Backoff(base_s=10, max_s=60)
    assert [backoff.delay(k) for k in range(6)] == [0, 10, 20, 40, 60, 60]
    d = decide(record=RepairRecord(2, NOW - 15), backoff=backoff)
    assert d.action is Action.WAIT and d.retry_in == pytest.approx(5)
    assert d.reason == "RepairBackoff"
    d = decide(record=RepairRecord(2, NOW - 20), backoff=backoff)
    assert d.action is Action.REPLACE and d.record.restarts == 3


def test_an_open_breaker_pauses_repairs() -> None:
    d = decide(breaker_open=True)
    assert d.action is Action.WAIT and d.reason == "RepairsPaused"


def test_the_resume_point_is_the_last_checkpoint_reported() -> None:
    members = gang()
    members[0] = MemberState("w-0", 0, "uid-0", "node-0", (0, 1, 2, 3), checkpoint="step-900")
    members[2] = MemberState("w-2", 2, "uid-2", "node-1", (0, 1, 2, 3), checkpoint="step-800")
    assert resume_point(members, None) == "step-900"
    assert resume_point(gang(), "step-100") == "step-100"  # kept from an earlier repair
    d = decide(members=members, record=RepairRecord(resume_from="step-100"))
    assert d.record.resume_from == "step-900"
    assert d.message.endswith("resuming from step-900")


# -- moving first ----------------------------------------------------------------------

RISK = {"node-1": frozenset({5})}  # w-3's GPU 5 is at risk


def with_checkpoints(step: str) -> list[MemberState]:
    return [replace(m, checkpoint=step) for m in gang()]


def test_members_on_a_gpu_at_risk_are_watched_until_their_next_checkpoint() -> None:
    d = decide_move("ReplaceMember", 3, with_checkpoints("step-5"), RISK, {}, RepairRecord(), NOW)
    assert d.action is Action.WATCH and d.delete == ()
    assert d.watch == {"uid-3": "step-5"} and d.reason == "GPUAtRisk"
    same = decide_move(
        "ReplaceMember", 3, with_checkpoints("step-5"), RISK, d.watch, RepairRecord(), NOW
    )
    assert same.action is Action.WATCH  # no new checkpoint yet


def test_at_the_next_checkpoint_the_member_is_moved_and_its_gpu_fenced() -> None:
    d = decide_move(
        "ReplaceMember", 3, with_checkpoints("step-6"), RISK, {"uid-3": "step-5"},
        RepairRecord(), NOW,
    )  # fmt: skip
    assert d.action is Action.MOVE and d.delete == ("w-3",)
    assert d.fence == {"node-1": frozenset({5})}
    assert d.record == RepairRecord(1, NOW, "step-6") and d.reason == "MovedBeforeFault"
    gang_move = decide_move(
        "RestartGang", 3, with_checkpoints("step-6"), RISK, {"uid-3": "step-5"},
        RepairRecord(), NOW,
    )  # fmt: skip
    assert gang_move.delete == ("w-0", "w-1", "w-2", "w-3")


def test_no_move_without_policy_budget_or_breaker() -> None:
    args = (with_checkpoints("step-6"), RISK, {"uid-3": "step-5"})
    assert decide_move("None", 3, *args, RepairRecord(), NOW).action is Action.NOTHING
    assert decide_move("ReplaceMember", 1, *args, RepairRecord(1), NOW).action is Action.WATCH
    assert (
        decide_move("ReplaceMember", 3, *args, RepairRecord(), NOW, breaker_open=True).action
        is Action.WATCH
    )
    assert decide_move("ReplaceMember", 3, *args, RepairRecord(1, NOW - 1), NOW).action is (
        Action.WATCH
    )  # backoff
    assert decide_move("ReplaceMember", 3, gang(), {}, {}, RepairRecord(), NOW).action is (
        Action.NOTHING
    )


def test_a_replacement_with_no_room_in_its_domain_escalates_to_restarting_the_gang() -> None:
    members = gang()
    members[3] = MemberState("w-3", 3, "uid-3b", None, pending_since=NOW - 40)
    record = RepairRecord(1, NOW - 41)
    d = decide_repair("ReplaceMember", 3, members, FENCE, frozenset(), record, NOW)
    assert d.action is Action.RESTART and d.reason == "GangRestartedNoRoom"
    assert d.delete == ("w-0", "w-1", "w-2", "w-3") and d.record.restarts == 2
    # not yet: waited only 20 s
    members[3] = MemberState("w-3", 3, "uid-3b", None, pending_since=NOW - 20)
    d = decide_repair(
        "ReplaceMember", 3, members, FENCE, frozenset(), RepairRecord(1, NOW - 21), NOW
    )
    assert d.action is Action.NOTHING
    # a member pending from before the repair (the gang never placed) is not ours to fix
    members[3] = MemberState("w-3", 3, "uid-3b", None, pending_since=NOW - 100)
    d = decide_repair(
        "ReplaceMember", 3, members, FENCE, frozenset(), RepairRecord(1, NOW - 41), NOW
    )
    assert d.action is Action.NOTHING


def test_a_hung_member_is_replaced_from_the_last_checkpoint() -> None:
    members = [replace(m, checkpoint=f"step-{9 - m.rank}") for m in gang()]
    d = decide(fenced={}, members=members, hung=frozenset({"uid-2"}))
    assert d.action is Action.REPLACE and d.delete == ("w-2",) and d.reason == "Hung"
    assert "w-2 on node-1 hung (no progress)" in d.message
    assert d.record == RepairRecord(1, NOW, "step-9")


def test_a_hung_tightly_coupled_gang_restarts_together() -> None:
    d = decide("RestartGang", fenced={}, hung=frozenset({"uid-0"}))
    assert d.action is Action.RESTART and d.reason == "Hung"
    assert d.delete == ("w-0", "w-1", "w-2", "w-3")


def test_a_hang_under_policy_none_is_only_reported() -> None:
    d = decide("None", fenced={}, hung=frozenset({"uid-1"}))
    assert d.action is Action.REPORT and d.reason == "Hung" and d.delete == ()


def test_a_hang_spends_the_budget_and_respects_the_backoff_like_any_repair() -> None:
    hung = frozenset({"uid-1"})
    assert decide(fenced={}, hung=hung, record=RepairRecord(3, 1.0)).action is Action.GIVE_UP
    assert decide(fenced={}, hung=hung, record=RepairRecord(1, NOW - 2)).action is Action.WAIT


def test_a_hung_member_not_running_or_already_deleted_is_not_repaired_again() -> None:
    hung = frozenset({"uid-1"})
    assert decide(fenced={}, hung=hung, asked=hung).action is Action.NOTHING
    pending = [replace(m, node=None) if m.rank == 1 else m for m in gang()]
    assert decide(fenced={}, members=pending, hung=hung).action is Action.NOTHING


def test_a_gpu_fault_and_a_hang_together_are_one_repair_named_by_the_fault() -> None:
    d = decide(hung=frozenset({"uid-0"}))
    assert d.action is Action.REPLACE and d.reason == "MemberReplaced"
    assert d.delete == ("w-0", "w-3")


def test_a_shrunk_workload_keeps_its_dropped_ranks_through_a_restart() -> None:
    d = decide("RestartGang", record=RepairRecord(1, 1.0, None, (4,)))
    assert d.action is Action.RESTART and d.record.dropped == (4,)
