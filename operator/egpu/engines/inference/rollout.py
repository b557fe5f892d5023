"""Which serving and warm pods to create, delete or relabel (pure).

Pods carry a revision (a hash of the pod template) and a role: `serving` pods are
selected by the Service, `warm` pods are placed and started but receive no traffic.
Promotion and demotion are relabels, so a promoted pod serves at once and a demoted
one keeps its GPU and loaded model.

A template change rolls out by surge: new-revision pods are created (at most
`max_surge` beyond the wanted count), and an old pod goes only while the ready pods
that remain still cover the ready count in use (or the wanted count, if lower).
So a rollout never drops below the capacity that is serving now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["serving", "warm"]
SERVING: Role = "serving"
WARM: Role = "warm"


@dataclass(frozen=True)
class ServingPod:
    name: str
    index: int
    revision: str
    role: Role
    ready: bool = False
    bound: bool = False
    deleting: bool = False
    failed: bool = False
    created: float = 0.0


@dataclass(frozen=True)
class Relabel:
    name: str
    role: Role


@dataclass(frozen=True)
class NewPod:
    index: int
    role: Role


@dataclass
class PodPlan:
    create: list[NewPod] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    relabel: list[Relabel] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.delete or self.relabel)


def default_surge(wanted: int) -> int:
    """A quarter of the wanted pods, at least one: GPUs for a surge are scarce."""
    return max(1, math.ceil(wanted / 4))


def removal_order(pod: ServingPod) -> tuple[int, int, int, float]:
    """Pods that give least go first: unplaced, then starting, then the newest ready."""
    return (int(pod.bound), int(pod.ready), -pod.index, -pod.created)


def promotion_order(pod: ServingPod) -> tuple[int, int, float]:
    """Warm pods that can serve soonest are promoted first."""
    return (-int(pod.ready), -int(pod.bound), pod.created)


def free_indices(pods: list[ServingPod], count: int) -> list[int]:
    used = {p.index for p in pods}
    out: list[int] = []
    candidate = 0
    while len(out) < count:
        if candidate not in used:
            out.append(candidate)
        candidate += 1
    return out


@dataclass(frozen=True)
class Counts:
    """What the status reports."""

    serving: int
    ready: int
    warm: int
    warm_ready: int
    updated: int
    pending: int


def count_pods(pods: list[ServingPod], revision: str) -> Counts:
    live = [p for p in pods if not p.deleting and not p.failed]
    serving = [p for p in live if p.role == SERVING]
    warm = [p for p in live if p.role == WARM]
    return Counts(
        serving=len(serving),
        ready=sum(p.ready for p in serving),
        warm=len(warm),
        warm_ready=sum(p.ready for p in warm),
        updated=sum(p.revision == revision for p in serving),
        pending=sum(not p.bound for p in live),
    )


def plan_pods(
    pods: list[ServingPod],
    revision: str,
    serving_wanted: int,
    warm_wanted: int,
    max_surge: int | None = None,
) -> PodPlan:
    """The actions that move `pods` towards the wanted serving and warm counts."""
    plan = PodPlan()
    surge = default_surge(serving_wanted) if max_surge is None else max(0, max_surge)
    live = [p for p in pods if not p.deleting]
    for pod in live:
        if pod.failed:
            plan.delete.append(pod.name)
    live = [p for p in live if not p.failed]

    # Warm pods of an old template never serve: replace them.
    old_warm = [p for p in live if p.role == WARM and p.revision != revision]
    plan.delete += [p.name for p in old_warm]
    warm = [p for p in live if p.role == WARM and p.revision == revision]
    serving = [p for p in live if p.role == SERVING]
    new = [p for p in serving if p.revision == revision]
    old = [p for p in serving if p.revision != revision]

    # Promote warm pods before creating serving ones; park extras in a short pool.
    if len(serving) < serving_wanted and warm:
        take = sorted(warm, key=promotion_order)[: serving_wanted - len(serving)]
        for pod in take:
            plan.relabel.append(Relabel(pod.name, SERVING))
            warm.remove(pod)
            new.append(pod)
    elif len(serving) > serving_wanted and len(warm) < warm_wanted:
        spare = len(serving) - serving_wanted
        room = warm_wanted - len(warm)
        # Only ready, current pods are worth keeping warm; old ones go below.
        candidates = sorted((p for p in new if p.ready), key=removal_order)
        for pod in candidates[: min(spare, room)]:
            plan.relabel.append(Relabel(pod.name, WARM))
            new.remove(pod)
            warm.append(pod)

    _plan_serving(plan, new, old, serving_wanted, surge)
    _plan_warm(plan, warm, warm_wanted)

    # Lowest indices no pod holds, terminating ones included: a name is never reused
    # while its previous pod may still exist.
    indices = free_indices(pods, len(plan.create))
    plan.create = [NewPod(i, c.role) for i, c in zip(indices, plan.create, strict=True)]
    return plan


def _plan_serving(
    plan: PodPlan, new: list[ServingPod], old: list[ServingPod], wanted: int, surge: int
) -> None:
    if not old:
        if len(new) < wanted:
            plan.create += [NewPod(-1, SERVING)] * (wanted - len(new))
        elif len(new) > wanted:
            extra = sorted(new, key=removal_order)[: len(new) - wanted]
            plan.delete += [p.name for p in extra]
        return
    # Rolling update.
    if len(new) > wanted:
        extra = sorted(new, key=removal_order)[: len(new) - wanted]
        plan.delete += [p.name for p in extra]
        new = [p for p in new if p not in extra]
    ready_new = sum(p.ready for p in new)
    old_ready = [p for p in old if p.ready]
    old_unready = [p for p in old if not p.ready]
    # Unready old pods serve nothing: they go at once.
    plan.delete += [p.name for p in old_unready]
    floor = min(wanted, ready_new + len(old_ready))
    removable = max(0, ready_new + len(old_ready) - floor)
    gone = sorted(old_ready, key=removal_order)[: min(len(old_ready), removable)]
    plan.delete += [p.name for p in gone]
    remaining_old = len(old_ready) - len(gone)
    budget = wanted + surge - (len(new) + remaining_old)
    missing = wanted - len(new)
    if missing > 0 and budget > 0:
        plan.create += [NewPod(-1, SERVING)] * min(missing, budget)


def _plan_warm(plan: PodPlan, warm: list[ServingPod], wanted: int) -> None:
    if len(warm) < wanted:
        plan.create += [NewPod(-1, WARM)] * (wanted - len(warm))
    elif len(warm) > wanted:
        extra = sorted(warm, key=removal_order)[: len(warm) - wanted]
        plan.delete += [p.name for p in extra]
