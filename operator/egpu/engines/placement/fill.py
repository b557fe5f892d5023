"""Spreading a gang's pods over the nodes of one chosen domain, in rank order.

Inside a domain the pods go, level by level, to the child that holds all that is
left (best fit: the tightest such child); when none does, to the roomiest child
first, so the gang spans as few children as it can. Inside a lowest-level domain
the smallest holes that take a pod fill first, which keeps whole nodes whole; when
one node takes the whole rest, a node that keeps every pod inside one NVLink group
outranks a tighter one that splits a pod.
Children and nodes are then listed by name: a depth-first walk, so pods that share a
node, then a leaf, then a block get consecutive ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from egpu.engines.placement.capacity import PodShape, domain_pods, node_pods, stats_for
from egpu.engines.placement.gpus import pick_gpus
from egpu.engines.placement.tree import DomainNode, NodeState


@dataclass(frozen=True, slots=True)
class Slot:
    """One pod placed: the node and the GPUs (a bit mask) it gets there."""

    state: NodeState
    mask: int


def fill_node(state: NodeState, shape: PodShape, pods: int) -> list[Slot]:
    free = state.free_mask
    slots: list[Slot] = []
    for _ in range(pods):
        mask = pick_gpus(free, state.group_masks, state.numa_masks, shape.gpus)
        if not mask:
            break
        free &= ~mask
        slots.append(Slot(state, mask))
    return slots


def splits_nvlink(state: NodeState, shape: PodShape, pods: int) -> bool:
    """True when not every pod can have GPUs of a single NVLink group on this node."""
    free = state.free_mask
    whole_group_pods = sum((free & group).bit_count() // shape.gpus for group in state.group_masks)
    return whole_group_pods < pods


def nodes_with_free(domain: DomainNode, shape: PodShape, free: int) -> list[NodeState]:
    """Nodes of a lowest-level domain with exactly `free` free GPUs, by name."""
    models = [shape.model] if shape.model is not None else list(domain.buckets)
    found: list[NodeState] = []
    for model in models:
        buckets = domain.buckets.get(model)
        if buckets and free < len(buckets):
            found.extend(buckets[free].values())
    found.sort(key=lambda s: s.sort_key)
    return found


class Budget:
    """How many more nodes a search for an NVLink-keeping node may look at: the
    search gives up (and best fit by count decides) rather than visit the cluster."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


NVLINK_SEARCH_NODES = 256


def best_node_in(
    domain: DomainNode,
    shape: PodShape,
    free: int,
    pods: int,
    keep_groups: Budget | None = None,
) -> NodeState | None:
    """A node with exactly `free` free GPUs that takes all `pods`, NVLink-friendly first.
    With `keep_groups`, only a node where every pod gets GPUs of one NVLink group."""
    fitting = [s for s in nodes_with_free(domain, shape, free) if node_pods(s, shape) >= pods]
    if keep_groups is not None:
        keep_groups.left -= len(fitting)
        return next((s for s in fitting if not splits_nvlink(s, shape, pods)), None)
    if not fitting:
        return None
    return min(fitting, key=lambda s: splits_nvlink(s, shape, pods))


def may_keep_groups(state: NodeState, shape: PodShape) -> bool:
    """Whether a pod of this shape fits inside one of the node's NVLink groups at all."""
    return any(group.bit_count() >= shape.gpus for group in state.group_masks) and (
        len(state.group_masks) > 1
    )


def _bucket_count(domain: DomainNode, model: str | None) -> int:
    models = [model] if model is not None else list(domain.buckets)
    return max((len(domain.buckets.get(m, ())) for m in models), default=0)


def fill_lowest(domain: DomainNode, shape: PodShape, pods: int) -> list[Slot]:
    top = _bucket_count(domain, shape.model)
    first: NodeState | None = None
    for free in range(pods * shape.gpus, top):
        first = best_node_in(domain, shape, free, pods)
        if first is not None:
            break
    if first is not None and splits_nvlink(first, shape, pods) and may_keep_groups(first, shape):
        # Keeping every pod inside one NVLink group outranks a tighter count.
        budget = Budget(NVLINK_SEARCH_NODES)
        for free in range(first.free_mask.bit_count() + 1, top):
            node = best_node_in(domain, shape, free, pods, budget)
            if node is not None:
                return fill_node(node, shape, pods)
            if budget.left <= 0:
                break
    if first is not None:
        return fill_node(first, shape, pods)
    chosen: list[tuple[NodeState, int]] = []
    remaining = pods
    for free in range(shape.gpus, top):
        for state in nodes_with_free(domain, shape, free):
            take = min(node_pods(state, shape), remaining)
            if take:
                chosen.append((state, take))
                remaining -= take
                if not remaining:
                    break
        if not remaining:
            break
    chosen.sort(key=lambda pair: pair[0].sort_key)
    return [slot for state, take in chosen for slot in fill_node(state, shape, take)]


def fill_domain(domain: DomainNode, shape: PodShape, pods: int, lowest_depth: int) -> list[Slot]:
    """Up to `pods` pods under `domain` (fewer only if CPU/memory bounds were optimistic)."""
    if domain.depth == lowest_depth:
        return fill_lowest(domain, shape, pods)
    open_children: list[tuple[DomainNode, int, int]] = []
    for child in domain.children.values():
        stats = stats_for(child, shape.model)
        room = domain_pods(stats, shape)
        if stats is not None and room > 0:
            open_children.append((child, room, stats.free_gpus))
    parts: list[tuple[DomainNode, list[Slot]]] = []
    remaining = pods
    while remaining and open_children:
        fitting = [c for c in open_children if c[1] >= remaining]
        if fitting:
            pick = min(fitting, key=lambda c: (c[1], c[2], c[0].sort_key))
        else:
            pick = min(open_children, key=lambda c: (-c[1], c[2], c[0].sort_key))
        open_children.remove(pick)
        got = fill_domain(pick[0], shape, min(pick[1], remaining), lowest_depth)
        if got:
            parts.append((pick[0], got))
            remaining -= len(got)
    parts.sort(key=lambda part: part[0].sort_key)
    return [slot for _, slots in parts for slot in slots]
