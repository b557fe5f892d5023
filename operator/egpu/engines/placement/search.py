"""Finding the smallest domain that holds a whole gang, best fit first.

Domains are visited top-down and a subtree is skipped as soon as its counts show it
cannot hold the gang, so a decision reads the domains on the way and never all nodes.
Among domains of one level that can hold the gang, the best fit comes first: the
fewest pods of this shape left over, then the fewest free GPUs, then the fullest
parent, so big holes stay for big gangs.

All pods on one node: the node with the fewest free GPUs that takes them, except
that a node where every pod gets GPUs of one NVLink group outranks a tighter node
that would split a pod across groups (looked for among a bounded number of nodes,
`NVLINK_SEARCH_NODES`; pods larger than any group are placed by count alone).
"""

from __future__ import annotations

from egpu.engines.placement.capacity import PodShape, domain_has_room, domain_pods, stats_for
from egpu.engines.placement.fill import (
    NVLINK_SEARCH_NODES,
    Budget,
    Slot,
    best_node_in,
    fill_node,
    may_keep_groups,
    splits_nvlink,
)
from egpu.engines.placement.tree import DomainNode, DomainTree


def _room(domain: DomainNode, shape: PodShape, pods: int) -> tuple[int, int] | None:
    """(pods it may take, free GPUs) for a domain that may take `pods`, else None."""
    stats = stats_for(domain, shape.model)
    if stats is None or not domain_has_room(stats, shape, pods):
        return None
    return domain_pods(stats, shape), stats.free_gpus


def one_node(
    tree: DomainTree, shape: PodShape, pods: int, root: DomainNode | None = None
) -> list[Slot] | None:
    """All pods on one node: the node with the fewest free GPUs that takes them all.

    `root` limits the search to one domain's subtree (default: the whole cluster).
    """
    top = tree.root if root is None else root
    stats = stats_for(top, shape.model)
    if stats is None:
        return None
    for free in range(pods * shape.gpus, len(stats.hist)):
        if stats.hist[free]:
            slots = _descend(tree, top, shape, free, pods)
            if slots is not None:
                break
    else:
        return None
    first = slots[0].state
    if splits_nvlink(first, shape, pods) and may_keep_groups(first, shape):
        # Keeping every pod inside one NVLink group outranks a tighter count: look a
        # little further (a bounded number of nodes) for a node that allows it.
        budget = Budget(NVLINK_SEARCH_NODES)
        for more in range(free + 1, len(stats.hist)):
            if stats.hist[more]:
                kept = _descend(tree, top, shape, more, pods, budget)
                if kept is not None:
                    return kept
                if budget.left <= 0:
                    break
    return slots


def _descend(
    tree: DomainTree,
    domain: DomainNode,
    shape: PodShape,
    free: int,
    pods: int,
    keep_groups: Budget | None = None,
) -> list[Slot] | None:
    if keep_groups is not None and keep_groups.left <= 0:
        return None
    if domain.depth == tree.lowest_depth:
        node = best_node_in(domain, shape, free, pods, keep_groups)
        return fill_node(node, shape, pods) if node is not None else None
    ranked = []
    for child in domain.children.values():
        stats = stats_for(child, shape.model)
        if stats is not None and free < len(stats.hist) and stats.hist[free]:
            ranked.append((domain_pods(stats, shape), stats.free_gpus, child.sort_key, child))
    ranked.sort(key=lambda r: r[:3])
    for *_, child in ranked:
        slots = _descend(tree, child, shape, free, pods, keep_groups)
        if slots is not None:
            return slots
    return None


def feasible_domains(
    tree: DomainTree, depth: int, shape: PodShape, pods: int, root: DomainNode | None = None
) -> list[DomainNode]:
    """Domains at `depth` (inside `root`, default the cluster) that can hold `pods`,
    best fit first."""
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
    frontier.sort(key=lambda f: (f[1], f[2], f[3], f[4], f[0].sort_key))
    return [f[0] for f in frontier]
