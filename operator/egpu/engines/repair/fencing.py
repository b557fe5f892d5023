"""Fencing: the agents' reports in, the GPUs the placement engine must avoid out.

The repair controller owns only the GPUs it fenced itself (recorded on the node); GPUs
others marked unhealthy are kept as they are. A circuit breaker stops new fences when
too many nodes were fenced within a window, so a broken agent (or a bad driver
rollout) cannot empty the cluster: past `max_fraction` of the GPU nodes (and more than
`min_nodes`) within `window_s`, nothing new is fenced until `reset_after_s` has passed.
Nodes cordoned already (by anyone: the controller never cordons) lose no usable
capacity when fenced, so they do not count against the breaker.

A lost node (not Ready past its grace) is a fault of all its GPUs: the placement
engine already leaves a node that is not Ready out, so it needs no fence, but it counts
against the breaker like a fenced node, so a network partition that makes half the
cluster look lost does not repair (delete) the work of half the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    window_s: float = 300.0
    max_fraction: float = 0.5
    min_nodes: int = 2  # this many nodes may always be fenced within a window
    reset_after_s: float = 600.0

    def __post_init__(self) -> None:
        if not 0 < self.max_fraction <= 1:
            raise ValueError("max_fraction must be in (0, 1]")
        if self.window_s <= 0 or self.reset_after_s < 0 or self.min_nodes < 0:
            raise ValueError("window_s must be positive; reset_after_s, min_nodes >= 0")


@dataclass(frozen=True, slots=True)
class BreakerState:
    fenced_at: tuple[tuple[str, float], ...] = ()  # (node, when we first fenced it)
    tripped_at: float | None = None

    def open(self, policy: BreakerPolicy, now: float) -> bool:
        return self.tripped_at is not None and now - self.tripped_at < policy.reset_after_s


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """What the controller knows of one GPU node."""

    name: str
    gpu_count: int
    reported_unhealthy: frozenset[int] | None  # None: no (readable) agent report
    fenced_by_us: frozenset[int] = frozenset()
    marked_by_others: frozenset[int] = frozenset()
    cordoned: bool = False
    # GPUs reported at risk (precursors, still working), and those of them to fence now
    # because the work on them is being moved off before they fail
    at_risk: frozenset[int] = frozenset()
    move_off: frozenset[int] = frozenset()
    lost: bool = False  # not Ready past its grace: every GPU on it is faulty


@dataclass(frozen=True, slots=True)
class FenceChange:
    node: str
    fenced: frozenset[int]  # what we fence on the node after this pass
    added: frozenset[int]
    removed: frozenset[int]


@dataclass(frozen=True, slots=True)
class FencePlan:
    changes: tuple[FenceChange, ...]
    refused: Mapping[str, frozenset[int]]  # nodes the breaker kept from being fenced
    breaker: BreakerState
    tripped_now: bool = False
    fenced: Mapping[str, frozenset[int]] = field(default_factory=dict)  # every fence, after
    lost: frozenset[str] = frozenset()  # lost nodes whose members may be repaired


def plan_fences(
    nodes: Sequence[NodeHealth], state: BreakerState, policy: BreakerPolicy, now: float
) -> FencePlan:
    """One pass: fence what the agents report unhealthy, unfence what they report healthy
    again, the breaker deciding over nodes not fenced yet."""
    recent = [(n, t) for n, t in state.fenced_at if now - t < policy.window_s]
    tripped_at = state.tripped_at if state.open(policy, now) else None
    gpu_nodes = sum(1 for n in nodes if n.gpu_count > 0)
    limit = max(policy.min_nodes, math.floor(policy.max_fraction * gpu_nodes))
    counted = {n for n, _ in recent}
    changes: list[FenceChange] = []
    refused: dict[str, frozenset[int]] = {}
    fenced: dict[str, frozenset[int]] = {}
    tripped_now = False
    lost: set[str] = set()
    for node in sorted(nodes, key=lambda n: n.name):
        if node.lost:
            if node.cordoned or node.name in counted:
                lost.add(node.name)
            elif tripped_at is not None or len(counted) + 1 > limit:
                if tripped_at is None:
                    tripped_at, tripped_now = now, True
                refused[node.name] = frozenset(range(node.gpu_count))
            else:
                counted.add(node.name)
                recent.append((node.name, now))
                lost.add(node.name)
        ours = node.fenced_by_us
        valid = frozenset(range(node.gpu_count))
        if node.reported_unhealthy is None:
            want = ours & valid  # no report: keep what we fenced, fence nothing new
        else:
            # an at-risk GPU we fenced to move work off stays fenced while at risk
            risky = (node.at_risk & ours) | (node.move_off & node.at_risk)
            want = ((node.reported_unhealthy | risky) - node.marked_by_others) & valid
        new = want - ours
        keep = want & ours
        if new and not ours and not node.cordoned and node.name not in counted:
            if tripped_at is not None or len(counted) + 1 > limit:
                if tripped_at is None:
                    tripped_at, tripped_now = now, True
                refused[node.name] = new
                new = frozenset()
            else:
                counted.add(node.name)
                recent.append((node.name, now))
        after = keep | new
        if after:
            fenced[node.name] = after
        if after != ours:
            changes.append(FenceChange(node.name, after, after - ours, ours - after))
    return FencePlan(
        changes=tuple(changes),
        refused=refused,
        breaker=BreakerState(tuple(recent), tripped_at),
        tripped_now=tripped_now,
        fenced=fenced,
        lost=frozenset(lost),
    )
