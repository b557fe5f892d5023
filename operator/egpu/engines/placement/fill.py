"""Spreading a gang's pods over the nodes of one chosen domain, in rank order.

Wiring before count: where the domain's nodes can hold every pod inside one NVLink
group, its rooms count only such pods (then NUMA nodes, then GPUs), so a pod kept
inside a group outranks a tighter fit by free GPUs.
Inside a domain the pods go, level by level, to the child that holds all that is
left (best fit: the tightest such child). When none does, to the fewest children
that hold it, and among those the set that needs the fewest lowest-level domains,
then the tightest set (an exhaustive look over at most `SPAN_SETS` sets of children,
else greedily the roomiest children, then the tightest one for the rest).
Inside a lowest-level domain: one node if one takes every pod (ranked by wiring,
then fewest free GPUs, then fewest whole NVLink groups broken), else the smallest holes
first, every pod inside a group where some node still allows it, which keeps whole
nodes whole.
Children and nodes are then listed by name: a depth-first walk, so pods that share a
node, then a leaf, then a block get consecutive ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

from egpu.engines.placement.capacity import PodShape, domain_pods, node_pods, stats_for
from egpu.engines.placement.gpus import pick_gpus
from egpu.engines.placement.tree import DomainNode, NodeState, Stats
from egpu.engines.placement.wiring import (
    BY_COUNT,
    IN_GROUP,
    IN_NUMA,
    Profile,
    free_of,
    group_pods,
    keep_class,
    tier_pods,
    whole_groups_taken,
    wiring_matters,
)

# The most sets of children the spanning search compares before it goes greedy.
SPAN_SETS = 2000


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


def nodes_with_profile(domain: DomainNode, shape: PodShape, profile: Profile) -> list[NodeState]:
    """Nodes of a lowest-level domain with exactly this wiring profile, by name."""
    models = [shape.model] if shape.model is not None else list(domain.profiled)
    found: list[NodeState] = []
    for model in models:
        same = domain.profiled.get(model, {}).get(profile)
        if same:
            found.extend(same.values())
    found.sort(key=lambda s: s.sort_key)
    return found


# -- all pods on one node ------------------------------------------------------------------


def node_rank(profile: Profile, shape: PodShape, pods: int) -> tuple[int, int, int]:
    """How good a node of this profile is for all `pods`: wiring class, then fewest
    free GPUs, then the fewest whole free NVLink groups broken."""
    return (
        keep_class(profile, shape.gpus, pods),
        free_of(profile),
        whole_groups_taken(profile, shape.gpus, pods),
    )


def single_node(top: DomainNode, shape: PodShape, pods: int, lowest_depth: int) -> NodeState | None:
    """The best node under `top` that takes all `pods`, by `node_rank`; exact, since
    every domain counts its nodes by wiring profile."""
    stats = stats_for(top, shape.model)
    if stats is None:
        return None
    need = pods * shape.gpus
    ranked = sorted(
        (node_rank(profile, shape, pods), profile)
        for profile in stats.profiles
        if free_of(profile) >= need
    )
    for _, profile in ranked:
        state = _descend(top, shape, profile, pods, lowest_depth)
        if state is not None:
            return state
    return None


def _descend(
    domain: DomainNode, shape: PodShape, profile: Profile, pods: int, lowest_depth: int
) -> NodeState | None:
    if domain.depth == lowest_depth:
        for state in nodes_with_profile(domain, shape, profile):
            if node_pods(state, shape) >= pods:
                return state
        return None
    ranked = []
    for child in domain.children.values():
        stats = stats_for(child, shape.model)
        if stats is not None and profile in stats.profiles:
            ranked.append((domain_pods(stats, shape), stats.free_gpus, child.sort_key, child))
    ranked.sort(key=lambda r: r[:3])
    for *_, child in ranked:
        found = _descend(child, shape, profile, pods, lowest_depth)
        if found is not None:
            return found
    return None


# -- rooms -----------------------------------------------------------------------------------


def grouped_pods(stats: Stats, shape: PodShape) -> int:
    """Pods of the shape that fit inside one NVLink group each (GPUs only)."""
    gpus = shape.gpus
    return sum(count * group_pods(profile, gpus) for profile, count in stats.profiles.items())


def room(stats: Stats | None, shape: PodShape, grouped: bool) -> int:
    """Pods the domain may take: every pod inside a group when `grouped`, else by GPUs."""
    pods = domain_pods(stats, shape)
    if grouped and stats is not None:
        pods = min(pods, grouped_pods(stats, shape))
    return pods


def keeps_groups(stats: Stats | None, shape: PodShape, pods: int) -> bool:
    """Whether the domain's nodes can hold all `pods` with every pod inside a group,
    where wiring matters for this shape at all."""
    if stats is None or not wiring_matters(stats.profiles, shape.gpus):
        return False
    return grouped_pods(stats, shape) >= pods


# -- the lowest level ------------------------------------------------------------------------


def fill_lowest(domain: DomainNode, shape: PodShape, pods: int) -> list[Slot]:
    first = single_node(domain, shape, pods, domain.depth)
    if first is not None:
        return fill_node(first, shape, pods)
    stats = stats_for(domain, shape.model)
    if stats is None:
        return []
    wired = wiring_matters(stats.profiles, shape.gpus)
    models = [shape.model] if shape.model is not None else list(domain.buckets)
    top = max((len(domain.buckets.get(m, ())) for m in models), default=0)
    # Smallest holes first. With wiring, a first pass takes only pods that fit inside
    # a group, later passes add pods inside a NUMA node, then any (`tier_pods`).
    visited: list[tuple[NodeState, int, tuple[int, int, int]]] = []  # node, pods, tiers
    taken: dict[str, int] = {}
    remaining = pods
    for free in range(shape.gpus, top):
        for state in nodes_with_free(domain, shape, free):
            fits = node_pods(state, shape)
            if not fits:
                continue
            tiers = tier_pods(state.ix_profile, shape.gpus) if wired else (fits, fits, fits)
            take = min(fits, tiers[IN_GROUP], remaining)
            visited.append((state, fits, tiers))
            taken[state.name] = take
            remaining -= take
            if not remaining:
                break
        if not remaining:
            break
    for tier in (IN_NUMA, BY_COUNT) if wired else ():
        for state, fits, tiers in visited:
            if not remaining:
                break
            allowed = fits if tier == BY_COUNT else min(fits, tiers[tier])
            more = min(max(0, allowed - taken[state.name]), remaining)
            taken[state.name] += more
            remaining -= more
    chosen = sorted((v[0] for v in visited if taken[v[0].name]), key=lambda s: s.sort_key)
    return [slot for state in chosen for slot in fill_node(state, shape, taken[state.name])]


# -- domains above the lowest level -------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    child: DomainNode
    room: int
    free: int


def fill_domain(domain: DomainNode, shape: PodShape, pods: int, lowest_depth: int) -> list[Slot]:
    """Up to `pods` pods under `domain` (fewer only if CPU/memory bounds were optimistic)."""
    if domain.depth == lowest_depth:
        return fill_lowest(domain, shape, pods)
    grouped = keeps_groups(stats_for(domain, shape.model), shape, pods)
    open_children: list[_Open] = []
    for child in domain.children.values():
        stats = stats_for(child, shape.model)
        child_room = room(stats, shape, grouped)
        if stats is not None and child_room > 0:
            open_children.append(_Open(child, child_room, stats.free_gpus))
    parts: list[tuple[DomainNode, list[Slot]]] = []
    remaining = pods
    planned = _span_plan(open_children, remaining, shape, grouped, lowest_depth)
    for pick, share in planned:
        open_children.remove(pick)
        got = fill_domain(pick.child, shape, share, lowest_depth)
        if got:
            parts.append((pick.child, got))
            remaining -= len(got)
    while remaining and open_children:
        fitting = [c for c in open_children if c.room >= remaining]
        if fitting:
            pick = min(fitting, key=lambda c: (c.room, c.free, c.child.sort_key))
        else:
            pick = min(open_children, key=lambda c: (-c.room, c.free, c.child.sort_key))
        open_children.remove(pick)
        got = fill_domain(pick.child, shape, min(pick.room, remaining), lowest_depth)
        if got:
            parts.append((pick.child, got))
            remaining -= len(got)
    parts.sort(key=lambda part: part[0].sort_key)
    return [slot for _, slots in parts for slot in slots]


def _span_plan(
    children: list[_Open], need: int, shape: PodShape, grouped: bool, lowest_depth: int
) -> list[tuple[_Open, int]]:
    """The fewest children that hold `need` pods, each with its share: among sets of
    that size, the one needing the fewest lowest-level domains, then the tightest.
    Empty when one child holds it all (best fit decides), when no set does, or when
    there are more than SPAN_SETS sets to compare (the greedy loop decides)."""
    if any(c.room >= need for c in children):
        return []
    ordered = sorted(children, key=lambda c: (-c.room, c.child.sort_key))
    total, size = 0, 0
    for c in ordered:
        total += c.room
        size += 1
        if total >= need:
            break
    else:
        return []
    lowest_children = ordered[0].child.depth == lowest_depth
    if lowest_children:
        # Children of equal room are alike here: keep `size` of each room at most.
        seen: dict[int, int] = {}
        kept = []
        for c in ordered:
            if seen.get(c.room, 0) < size:
                seen[c.room] = seen.get(c.room, 0) + 1
                kept.append(c)
        ordered = kept
    if comb(len(ordered), size) > SPAN_SETS:
        return []
    if lowest_children:
        return _tightest_set(ordered, size, need)
    lows: dict[int, list[int]] = {}
    best: tuple[tuple[int, int, tuple[object, ...]], list[tuple[_Open, int]]] | None = None
    for chosen in combinations(ordered, size):
        rooms = sum(c.room for c in chosen)
        if rooms < need:
            continue
        cost, plan = _fewest_lows(chosen, need, shape, grouped, lows)
        key = (cost, rooms - need, tuple(c.child.sort_key for c in chosen))
        if best is None or key < best[0]:
            best = (key, plan)
    return [] if best is None else best[1]


def _tightest_set(ordered: list[_Open], size: int, need: int) -> list[tuple[_Open, int]]:
    """Lowest-level children: every set of `size` costs the same, so the one with the
    least room left over wins (the first such, roomiest first, then by name). Sums
    are taken over plain tuples of rooms: this runs up to SPAN_SETS times."""
    rooms = [c.room for c in ordered]
    best_left = -1
    best_set: tuple[int, ...] = ()
    for picked, sizes in zip(
        combinations(range(len(ordered)), size), combinations(rooms, size), strict=True
    ):
        left = sum(sizes) - need
        if left >= 0 and (best_left < 0 or left < best_left):
            best_left, best_set = left, picked
            if not left:
                break
    if best_left < 0:
        return []
    return _shares(tuple(ordered[i] for i in best_set), need, None)


def _shares(chosen: tuple[_Open, ...], need: int, partial: _Open | None) -> list[tuple[_Open, int]]:
    """Every child full but `partial` (default: the last), which takes the rest."""
    partial = partial or chosen[-1]
    rest = need - sum(c.room for c in chosen if c is not partial)
    return [(c, rest if c is partial else c.room) for c in chosen]


def _fewest_lows(
    chosen: tuple[_Open, ...],
    need: int,
    shape: PodShape,
    grouped: bool,
    lows: dict[int, list[int]],
) -> tuple[int, list[tuple[_Open, int]]]:
    """Lowest-level domains this set needs (each child full but one), and its shares."""
    counted = [(c, _low_rooms(c.child, shape, grouped, lows)) for c in chosen]
    best: tuple[int, _Open] | None = None
    full = {id(c): _lows_for(rooms, c.room) for c, rooms in counted}
    for part, rooms in counted:
        rest = need - sum(c.room for c in chosen if c is not part)
        cost = sum(full[id(c)] for c in chosen if c is not part) + _lows_for(rooms, rest)
        if best is None or cost < best[0]:
            best = (cost, part)
    assert best is not None
    return best[0], _shares(chosen, need, best[1])


def _low_rooms(
    domain: DomainNode, shape: PodShape, grouped: bool, lows: dict[int, list[int]]
) -> list[int]:
    """Rooms of the lowest-level domains under `domain`, roomiest first (memoised)."""
    found = lows.get(id(domain))
    if found is None:
        frontier = [domain]
        while frontier and frontier[0].children:
            frontier = [c for d in frontier for c in d.children.values()]
        found = sorted(
            (room(stats_for(d, shape.model), shape, grouped) for d in frontier), reverse=True
        )
        lows[id(domain)] = found
    return found


def _lows_for(rooms: list[int], pods: int) -> int:
    """How many of these rooms (roomiest first) hold `pods`."""
    total = 0
    for used, r in enumerate(rooms, start=1):
        total += r
        if total >= pods:
            return used
    return len(rooms) + 1


# -- what a placement costs the cluster --------------------------------------------------------


def fragmentation(slots: list[Slot]) -> tuple[int, int, int]:
    """(pods split across NVLink groups, whole free nodes taken, whole free groups
    taken): lower keeps more of the cluster whole for the next gang."""
    split = 0
    used: dict[str, tuple[NodeState, int]] = {}
    for slot in slots:
        state = slot.state
        if len(state.group_masks) > 1 and sum(1 for g in state.group_masks if slot.mask & g) > 1:
            split += 1
        _, mask = used.get(state.name, (state, 0))
        used[state.name] = (state, mask | slot.mask)
    nodes = groups = 0
    for state, mask in used.values():
        free = state.free_mask
        nodes += state.gpu_count > 0 and free == state.all_mask
        groups += sum(1 for g in state.group_masks if free & g == g and mask & g)
    return split, nodes, groups
