"""Pure decisions about the member pods of a GPUWorkload: which to create or
delete, and what the workload's status says about them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Member:
    """What the workload controller needs to know of one member pod."""

    name: str
    rank: int
    node: str | None = None
    phase: str = "Pending"
    ready: bool = False
    deleting: bool = False
    gpu_ids: tuple[int, ...] = ()
    domain: dict[str, str] = field(default_factory=dict)
    gang_marks: tuple[str, str] | None = None  # (gang size, min members) on the pod


@dataclass(frozen=True, slots=True)
class MemberPlan:
    create_ranks: tuple[int, ...]
    delete_names: tuple[str, ...]


def plan_members(
    replicas: int, members: list[Member], dropped: frozenset[int] = frozenset()
) -> MemberPlan:
    """Ranks 0..replicas-1 must each have one live pod, except the ranks an elastic
    repair dropped; the rest go.

    A member that failed or finished is replaced only by the repair policy,
    not here, so a finished training job is not started again.
    """
    live = {m.rank: m for m in members if not m.deleting}
    create = tuple(r for r in range(replicas) if r not in live and r not in dropped)
    delete = tuple(sorted(m.name for m in live.values() if m.rank >= replicas or m.rank in dropped))
    return MemberPlan(create_ranks=create, delete_names=delete)


def stale_gang_marks(members: list[Member], marks: tuple[str, str]) -> tuple[str, ...]:
    """Pending members whose gang size / min members differ from the workload's now.

    The binder reads a gang's size from its pending pods; a workload scaled while its
    members wait must say so on them, or the binder waits for members that will never
    come. Running members keep what they started with (their env was set from it)."""
    return tuple(
        sorted(
            m.name for m in members if not m.deleting and m.node is None and m.gang_marks != marks
        )
    )


@dataclass(frozen=True, slots=True)
class MemberCounts:
    replicas: int
    bound: int
    ready: int
    failed: int
    succeeded: int


def count_members(members: list[Member]) -> MemberCounts:
    live = [m for m in members if not m.deleting]
    return MemberCounts(
        replicas=len(live),
        bound=sum(1 for m in live if m.node),
        ready=sum(1 for m in live if m.ready),
        failed=sum(1 for m in live if m.phase == "Failed"),
        succeeded=sum(1 for m in live if m.phase == "Succeeded"),
    )


def workload_phase(replicas: int, counts: MemberCounts, unschedulable: bool) -> str:
    """One word for the whole workload, from its members."""
    if replicas > 0 and counts.succeeded == replicas:
        return "Succeeded"
    if counts.failed:
        return "Degraded"
    if replicas > 0 and counts.ready == replicas:
        return "Running"
    if counts.bound == 0:
        return "Pending"
    if counts.bound < replicas:
        return "Placing" if not unschedulable else "Degraded"
    return "Placing"


def gang_timed_out(waiting_since: float | None, timeout_s: float, now: float) -> bool:
    """A gang still unplaced `timeout_s` after its oldest waiting member appeared."""
    return waiting_since is not None and timeout_s > 0 and now - waiting_since > timeout_s
