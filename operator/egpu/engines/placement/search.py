"""Finding the smallest domain that holds a whole gang, best fit first.

Domains are visited top-down and a subtree is skipped as soon as its counts show it
cannot hold the gang, so a decision reads the domains on the way and never all nodes.
Among domains of one level that can hold the gang, those where every pod keeps
inside one NVLink group come first (when some node allows it for this pod size), then
the best fit: the fewest pods of this shape left over, then the fewest free GPUs,
then the fullest parent, so big holes stay for big gangs.

All pods on one node: the node that keeps every pod inside one NVLink group, else
one NUMA node, if any node allows it; among those the fewest free GPUs, then the fewest
whole free groups broken (`fill.single_node`, exact: domains count nodes by wiring profile).
"""

from __future__ import annotations

from dataclasses import dataclass

from egpu.engines.placement.capacity import PodShape, domain_has_room, domain_pods, stats_for
from egpu.engines.placement.fill import Slot, fill_node, grouped_pods, keeps_groups, single_node
from egpu.engines.placement.tree import DomainNode, DomainTree


@dataclass(frozen=True, slots=True)
class Candidate:
    """A domain that may hold the gang, and how tight it is (lower is tighter):
    (splits some pod across groups, pods left over, free GPUs)."""

    domain: DomainNode
    tightness: tuple[bool, int, int]


def _room(domain: DomainNode, shape: PodShape, pods: int) -> tuple[int, int] | None:
    """(pods it may take, free GPUs) for a domain that may take `pods`, else None."""
    stats = stats_for(domain, shape.model)
    if stats is None or not domain_has_room(stats, shape, pods):
        return None
    return domain_pods(stats, shape), stats.free_gpus


def one_node(
    tree: DomainTree, shape: PodShape, pods: int, root: DomainNode | None = None
) -> list[Slot] | None:
    """All pods on one node, the best one by wiring, then count (`fill.node_rank`).

    `root` limits the search to one domain's subtree (default: the whole cluster).
    """
    top = tree.root if root is None else root
    state = single_node(top, shape, pods, tree.lowest_depth)
    return None if state is None else fill_node(state, shape, pods)


def feasible_domains(
    tree: DomainTree, depth: int, shape: PodShape, pods: int, root: DomainNode | None = None
) -> list[Candidate]:
    """Domains at `depth` (inside `root`, default the cluster) that can hold `pods`,
    best first."""
    top = tree.root if root is None else root
    if depth < top.depth:
        return []
    room_at_top = _room(top, shape, pods)
    if room_at_top is None:
        return []
    # (domain, room, free GPUs, parent's room, parent's free GPUs)
    frontier = [(top, *room_at_top, 0, 0)]
    for _ in range(depth - top.depth):
        deeper = []
        for parent, parent_room, parent_free, _, _ in frontier:
            for child in parent.children.values():
                room = _room(child, shape, pods)
                if room is not None:
                    deeper.append((child, *room, parent_room, parent_free))
        frontier = deeper
    wiring = keeps_groups(stats_for(top, shape.model), shape, pods)
    ranked = []
    for domain, pods_room, free, parent_room, parent_free in frontier:
        splits = False
        if wiring:
            stats = stats_for(domain, shape.model)
            splits = stats is None or grouped_pods(stats, shape) < pods
        ranked.append(
            ((splits, pods_room, free), parent_room, parent_free, domain.sort_key, domain)
        )
    ranked.sort(key=lambda r: r[:4])
    return [Candidate(r[4], r[0]) for r in ranked]
