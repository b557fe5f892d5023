"""Elastic workloads (`repair.policy: Shrink`): lost members are dropped instead of
replaced while their domain has no room, down to `minReplicas`, and come back when
room returns there.

- Which to drop: the lost member farthest from the rest first, by topology distance
  (the domain levels two members do not share, plus one for different nodes), so the
  members left sit as close together as they can; the rank breaks ties (highest first).
- Lost members the domain has room for now are replaced, not dropped.
- Growing back: dropped ranks return, lowest first, as room appears in the domain of
  the running members (the gang's required level; anywhere without one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from egpu.domain.gpu import model_matches

if TYPE_CHECKING:  # workloads imports this module
    from egpu.engines.repair.workloads import MemberState


def topology_distance(a: Mapping[str, str], b: Mapping[str, str], same_node: bool) -> int:
    """0 on one node; 1 per domain level the two do not share, plus 1 for two nodes.
    In a tree (leaf inside block) a different leaf in the same block is 2, a different
    block 3: the order of the levels is not needed."""
    if same_node:
        return 0
    return 1 + sum(1 for level in set(a) | set(b) if a.get(level) != b.get(level))


def farthest_first(hit: Sequence[MemberState], rest: Sequence[MemberState]) -> list[MemberState]:
    """`hit` ordered by their summed distance to `rest`, farthest first."""

    def distance(m: MemberState) -> int:
        mine = dict(m.domain)
        return sum(topology_distance(mine, dict(o.domain), m.node == o.node) for o in rest)

    return sorted(hit, key=lambda m: (-distance(m), -m.rank))


@dataclass(frozen=True, slots=True)
class FreeNode:
    """What the room check needs of one node (as the ledger sees it now)."""

    name: str
    model: str | None
    free_gpus: int  # healthy, unheld, on a schedulable node
    domain: Mapping[str, str]


def room_for_members(
    nodes: Sequence[FreeNode], within: Mapping[str, str], gpus_per_pod: int, model: str | None
) -> int:
    """How many members of `gpus_per_pod` GPUs fit in the domain `within` (level ->
    value; empty: anywhere), counting GPUs only: the binder checks CPU and memory when
    it places them, so this may be too hopeful, never too strict on GPUs."""
    if gpus_per_pod < 1:
        return 0
    room = 0
    for node in nodes:
        if model is not None and not (node.model and model_matches(model, node.model)):
            continue  # the binder's rule: GPU Feature Discovery products, whole words
        if all(node.domain.get(k) == v for k, v in within.items()):
            room += node.free_gpus // gpus_per_pod
    return room


def domain_of_running(
    members: Sequence[MemberState], level: str | None, skip: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The domain the running members share at `level` (the gang's required level), as
    {level: value}; empty when there is no level or no running member to take it from."""
    if level is None:
        return {}
    for m in sorted(members, key=lambda m: m.rank):
        if m.node is None or m.deleting or m.finished or m.uid in skip:
            continue
        value = dict(m.domain).get(level)
        if value is not None:
            return {level: value}
    return {}
