"""Pending pods grouped into gangs, each checked before anything is placed.

A gang whose pods cannot be read, or contradict each other, is set aside with a
message for its owner; every other gang goes on. Nothing here raises on user input.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from egpu.domain.pod import PodFacts


@dataclass
class Gang:
    gang_id: str
    namespace: str
    size: int
    min_members: int
    workload: str | None = None  # the GPUWorkload whose members these are
    pending: list[PodFacts] = field(default_factory=list)  # in rank order
    bound: list[PodFacts] = field(default_factory=list)

    @property
    def first(self) -> PodFacts:
        return (self.pending or self.bound)[0]

    @property
    def priority(self) -> int:
        return max((p.priority for p in self.pending), default=0)

    @property
    def created(self) -> str:
        return min((p.created for p in self.pending), default="")

    @property
    def members(self) -> int:
        return len(self.pending) + len(self.bound)


@dataclass(frozen=True, slots=True)
class BadGang:
    """A gang the binder will not place until its pods change, and why."""

    gang_id: str
    namespace: str
    workload: str | None
    pods: tuple[PodFacts, ...]
    message: str
    unsupported: bool = False  # refused for a field the binder does not honour


def _rank_order(pod: PodFacts) -> tuple[int, str]:
    return (pod.rank if pod.rank is not None else -1, pod.name)


def check_gang(gang_id: str, pods: list[PodFacts]) -> Gang | BadGang:
    pending = sorted((p for p in pods if p.pending), key=_rank_order)
    bound = sorted((p for p in pods if p.bound), key=_rank_order)
    first = (pending or bound)[0]

    def bad(message: str, unsupported: bool = False) -> BadGang:
        return BadGang(
            gang_id, first.namespace, first.workload, tuple(pending), message, unsupported
        )

    for pod in pending:
        if pod.unsupported:
            return bad(
                f"pod {pod.name} sets {', '.join(pod.unsupported)}, which egpu-scheduler does "
                "not support (leave schedulerName unset for the default scheduler)",
                unsupported=True,
            )
        if pod.problem:
            return bad(f"pod {pod.name}: {pod.problem}")
        if pod.demand.gpus < 1:
            return bad(
                f"pod {pod.name} asks for no nvidia.com/gpu; egpu-scheduler places GPU pods "
                "only (leave schedulerName unset for the default scheduler)"
            )
    # The pending pods speak for the gang now (a workload that scaled up wrote a new
    # size on its new pods; its running members still carry the old one).
    size = max(p.gang_size for p in pending)
    min_members = min(max(p.gang_min for p in pending), size)
    if len(pods) > 1:
        owners = {p.rank: p.name for p in bound}
        for pod in pending:
            other = owners.get(pod.rank) if pod.rank is not None else None
            if other is not None:
                return bad(f"pods {other} and {pod.name} both claim rank {pod.rank}")
            if pod.rank is not None:
                owners[pod.rank] = pod.name
        if first.workload is None and len(pods) > size:
            return bad(f"{len(pods)} pods claim a gang of {size} (egpu.io/gang-size)")
    return Gang(
        gang_id=gang_id,
        namespace=first.namespace,
        size=size,
        min_members=min_members,
        workload=first.workload,
        pending=pending,
        bound=bound,
    )


def gangs_to_place(
    members: Iterable[tuple[str, Iterable[PodFacts]]], busy: Container[str]
) -> tuple[list[Gang], list[BadGang]]:
    """The gangs with pending pods, best first (priority, then age, then name), and the
    ones set aside. A gang with a pod in `busy` (being bound) waits for that bind."""
    gangs: list[Gang] = []
    bad: list[BadGang] = []
    for gang_id, group in members:
        pods = [p for p in group if p.live]
        if not any(p.pending for p in pods) or any(p.key in busy for p in pods):
            continue
        checked = check_gang(gang_id, pods)
        if isinstance(checked, Gang):
            gangs.append(checked)
        else:
            bad.append(checked)
    gangs.sort(key=lambda g: (-g.priority, g.created, g.gang_id))
    return gangs, bad
