"""The placement decision: a gang request and the ledger in, a Placement or a diagnosis out.

Rules:
- The gang goes to the smallest domain that holds all of it, looking from the node
  up (node < lowest level < ... < the whole cluster); among feasible domains of that
  level, first those where every pod keeps inside one NVLink group (when any node
  allows it for this pod size), then best fit; among the first few equally tight
  domains (`TIED_CANDIDATES`), the one whose placement splits the fewest pods, then
  takes the fewest whole free nodes, then the fewest whole free NVLink groups. With
  `required_level` the search stops at that level; a `preferred_level` needs nothing
  extra, since the smallest domain is always tried first: the result says whether it
  was met.
- Partial gangs (min_members < pod_count): only when all pods do not fit. The gang
  then gets the most pods that any one allowed domain can take (exactly counted), if
  that is at least min_members, placed by the same rules.
- Headroom (pods that grow in place): a node must have it free beyond the pod's
  requests to be chosen; the assignment holds the requests only, so headroom is
  asked for at placement and never reserved.
- Filters (`filters.py`: taints, nodeSelector, required node affinity, pod count,
  extended resources, host ports) decide which nodes the gang may use at all; the
  refused nodes are left out of the indexes for the decision and counted in the
  diagnosis. Scores (preferred node affinity, PreferNoSchedule taints, artefact
  locality: nodes that hold what the pods load at start): the gang is placed on the
  best-scoring nodes if it fits there, else on the next tier, else on any feasible
  node; the rules above decide inside a tier.
- The decision reads the ledger and leaves it as it found it; `ClusterLedger.reserve`
  applies it.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import model_matches
from egpu.domain.placement import (
    Placement,
    PlacementResult,
    PodAssignment,
    Unschedulable,
    UnschedulableReason,
)
from egpu.engines.placement.capacity import PodShape, stats_for
from egpu.engines.placement.diagnosis import best_domain, unschedulable
from egpu.engines.placement.fill import Slot, fill_domain, fragmentation
from egpu.engines.placement.filters import excluded_nodes, exclusions, score_tiers, scores
from egpu.engines.placement.gpus import indices
from egpu.engines.placement.ledger import ClusterLedger
from egpu.engines.placement.search import Candidate, feasible_domains, one_node
from egpu.engines.placement.tree import DomainNode, DomainTree
from egpu.engines.placement.wiring import Profile

# What a placement calls the model of nodes that name none.
UNKNOWN_MODEL = "unknown"

# How many equally tight domains a decision compares by fragmentation (the first included).
TIED_CANDIDATES = 4


def level_depth(tree: DomainTree, level: str) -> int | None:
    """Depth of a level: 0 is the cluster, the node is lowest_depth + 1."""
    if level == tree.node_level:
        return tree.lowest_depth + 1
    if level in tree.levels:
        return tree.levels.index(level) + 1
    return None


def place_gang(ledger: ClusterLedger, request: GangRequest) -> PlacementResult:
    tree = ledger.tree
    asks = bool(request.constraints or request.extras)
    local = bool(request.artefacts) and tree.holds_any(request.artefacts)
    if not (asks or local or request.dra or tree.tainted or tree.pods_full or tree.dra_nodes):
        return _decide(tree, request)  # nothing to filter or score: the fast path
    refused = excluded_nodes(tree, request)
    if len(refused) * 2 > len(tree.nodes):  # most nodes refused: index the rest apart
        result = _scored(_feasible_tree(tree, refused), request, {})
    else:
        with _left_out(tree, refused):
            result = _scored(tree, request, refused)
    if isinstance(result, Unschedulable) and refused:
        counted = exclusions(refused.values())
        words = "; ".join(map(str, counted))
        message = result.message
        if result.levels and result.levels[-1].domains == 0:  # the filters left no node
            message = "no schedulable node with GPUs is left by the filters"
        return replace(result, message=f"{message}; {words}", excluded=counted)
    return result


def _scored(tree: DomainTree, request: GangRequest, refused: Collection[str]) -> PlacementResult:
    """Place on the best-scoring tier of nodes that takes the whole gang, else on all.
    `refused` are nodes of `tree` the filters refused (left out of its indexes).

    Artefact locality never costs a gang its compactness: a gang of several pods that
    the nodes holding its artefacts take only in a wider domain than it would get
    without them is placed as if it named none (a lone pod always gets one node)."""
    found = _by_scores(tree, request, refused)
    if request.artefacts and request.pod_count > 1 and isinstance(found, Placement):
        plain = _by_scores(tree, replace(request, artefacts=()), refused)
        if isinstance(plain, Placement) and _depth_of(tree, plain) > _depth_of(tree, found):
            return plain
    return found


def _by_scores(tree: DomainTree, request: GangRequest, refused: Collection[str]) -> PlacementResult:
    if tree.tainted or request.artefacts or any(c.scores for c in request.constraints):
        scored = scores(tree, request, refused)
        feasible = len(tree.nodes) - len(refused)
        for threshold in score_tiers(scored, feasible):
            found = _on_tier(tree, request, refused, scored, threshold, feasible)
            if isinstance(found, Placement) and not found.partial:
                return found  # a partial gang here could be whole on more nodes
    return _decide(tree, request)


def _on_tier(
    tree: DomainTree,
    request: GangRequest,
    refused: Collection[str],
    scored: Mapping[str, int],
    threshold: int,
    feasible: int,
) -> PlacementResult:
    """The decision on the feasible nodes scoring at least `threshold` (unscored nodes
    score 0). A few such nodes (the ones holding a pod's artefacts, say) get a tree of
    their own; else the others are left out of the indexes for the try."""
    if threshold <= 0:  # every unscored node is in: leave out the scored ones below
        below = [name for name, value in scored.items() if value < threshold]
    else:
        kept = [name for name, value in scored.items() if value >= threshold]
        if request.pod_count == 1 and not request.within:
            return _lone_pod(tree, request, kept)
        if len(kept) * 2 < feasible:
            return _decide(_tree_of(tree, kept), request, diagnose=False)
        below = [
            name for name in tree.nodes if scored.get(name, 0) < threshold and name not in refused
        ]
    with _left_out(tree, below):
        return _decide(tree, request, diagnose=False)


def _lone_pod(tree: DomainTree, request: GangRequest, names: Collection[str]) -> PlacementResult:
    """One pod on the best of these nodes. A pod always fits in one node, so the domains
    above play no part: the nodes go in a tree of no levels (cheaper to build than
    their domains), keeping their own domain labels, and any level asked is met."""
    flat = DomainTree((), tree.node_level)
    for name in names:
        state = tree.nodes[name]
        twin = state.clone()
        flat.attach(twin, state.labels)
        twin.domain_labels = state.domain_labels
    loose = replace(request, required_level=None, preferred_level=None)
    found = _decide(flat, loose, diagnose=False)
    if isinstance(found, Placement) and request.preferred_level is not None:
        found = replace(found, preferred_met=True)
    return found


def _tree_of(tree: DomainTree, names: Collection[str]) -> DomainTree:
    """A tree of just these nodes (copies of their states): O(names)."""
    sub = DomainTree(tree.levels, tree.node_level)
    for name in names:
        state = tree.nodes[name]
        sub.attach(state.clone(), state.labels)
    return sub


def _feasible_tree(tree: DomainTree, refused: Container[str]) -> DomainTree:
    """A tree of the nodes not refused (copies of their states, so the ledger's tree is
    untouched): O(feasible nodes), cheaper than leaving most nodes out one by one."""
    return _tree_of(tree, [name for name in tree.nodes if name not in refused])


@contextmanager
def _left_out(tree: DomainTree, names: Collection[str]) -> Iterator[None]:
    """Leave these nodes out of the indexes for the block, then put them back as they
    were: O(levels) each, so refusing a few nodes costs little."""
    states = [tree.nodes[name] for name in names]
    for state in states:
        tree.unindex(state)
    try:
        yield
    finally:
        for state in states:
            tree.index(state)


def _decide(tree: DomainTree, request: GangRequest, diagnose: bool = True) -> PlacementResult:
    result = _one_model(tree, request, diagnose)
    keep = request.keep_model
    if keep is not None and isinstance(result, Placement) and set(result.models) != {keep}:
        # The gang's placed members run on `keep`, which has no room for these pods.
        result = replace(result, note=mixed_models_note(tuple(sorted({*result.models, keep}))))
    return result


def _one_model(tree: DomainTree, request: GangRequest, diagnose: bool) -> PlacementResult:
    """One GPU model per gang: a synchronous gang runs at the pace of its slowest GPU.
    The gang's selector (or, without one, any model) may name several models; each is
    tried alone and the one whose placement lands in the smallest domain wins (then the
    model name); the model of the gang's placed members (`keep_model`) is tried first.
    Only a gang without a selector mixes models, and only when no single model holds
    all of it; the placement says so in `note`."""
    selector = request.gpu_model
    models = sorted(m for m in tree.root.stats if selector is None or model_matches(selector, m))
    keep = request.keep_model
    if keep is not None and keep in models and (selector is None or len(models) > 1):
        found = _place(tree, replace(request, gpu_model=keep), diagnose=False)
        if isinstance(found, Placement) and not found.partial:
            return found
    if selector is not None and len(models) == 1:
        return _place(tree, replace(request, gpu_model=models[0]), diagnose)
    if len(models) < 2:
        return _place(tree, request, diagnose)
    best: Placement | None = None
    best_key: tuple[int, int] = (0, 0)
    for model in models:
        found = _place(tree, replace(request, gpu_model=model), diagnose=False)
        if isinstance(found, Placement):
            key = (len(found.assignments), _depth_of(tree, found))
            if best is None or key > best_key:
                best, best_key = found, key
    if best is not None and not best.partial:
        return best
    if selector is None:
        mixed = _place(tree, request, diagnose)
        if isinstance(mixed, Placement) and (
            best is None or len(mixed.assignments) > len(best.assignments)
        ):
            return mixed
        return best if best is not None else mixed
    if best is not None:
        return best
    refused = _place(tree, replace(request, gpu_model=models[0]), diagnose)
    if isinstance(refused, Unschedulable) and diagnose:
        named = ", ".join(models)
        note = f"; no single model matching {selector!r} ({named}) holds it, and a gang keeps one"
        return replace(refused, message=refused.message + note)
    return refused


def _depth_of(tree: DomainTree, placement: Placement) -> int:
    return level_depth(tree, placement.level) or 0


def _place(tree: DomainTree, request: GangRequest, diagnose: bool = True) -> PlacementResult:
    """The decision on the indexed nodes; without `diagnose`, a refusal is not explained
    (a try on the best-scoring nodes only, whose refusal nobody reads)."""
    depths: dict[str, int] = {}
    for level in (request.required_level, request.preferred_level):
        if level is None:
            continue
        depth = level_depth(tree, level)
        if depth is None:
            known = [*tree.levels, tree.node_level]
            return Unschedulable(
                request.gang_id,
                UnschedulableReason.INVALID_REQUEST,
                f"topology level {level!r} is not one of {known}",
            )
        depths[level] = depth
    limit = depths[request.required_level] if request.required_level else 0
    shape = PodShape.of(request)
    root: DomainNode | None = None
    if request.within:
        root = tree.find(tuple(request.within))
        if root is None:
            return Unschedulable(
                request.gang_id,
                UnschedulableReason.NO_MATCHING_NODES,
                f"the gang's domain {list(request.within)} no longer exists",
            )
        limit = max(limit, root.depth)

    pods = request.pod_count
    found = _smallest_domain(tree, shape, pods, limit, root)
    if found is None and request.min_pods < pods and root is None:
        most = best_domain(tree, limit, shape).pods
        if most >= request.min_pods:
            pods = min(most, pods - 1)
            found = _smallest_domain(tree, shape, pods, limit)
    if found is None:
        if not diagnose:
            return Unschedulable(request.gang_id, UnschedulableReason.INSUFFICIENT_CAPACITY, "")
        return unschedulable(tree, request, shape, limit, request.pod_count)

    depth, domain_path, slots = found
    preferred = request.preferred_level
    models = tuple(sorted({slot.state.model or UNKNOWN_MODEL for slot in slots}))
    return Placement(
        gang_id=request.gang_id,
        assignments=tuple(_assignments(slots, request)),
        level=tree.level_name(depth),
        domain=domain_path,
        requested_pods=request.pod_count,
        preferred_met=None if preferred is None else depth >= depths[preferred],
        models=models,
        note=None if len(models) < 2 else mixed_models_note(models),
    )


def mixed_models_note(models: tuple[str, ...]) -> str:
    return (
        f"no single GPU model has room for the whole gang; its pods mix {', '.join(models)} "
        "and run at the pace of the slowest"
    )


def _smallest_domain(
    tree: DomainTree, shape: PodShape, pods: int, limit: int, root: DomainNode | None = None
) -> tuple[int, Mapping[str, str], list[Slot]] | None:
    slots = one_node(tree, shape, pods, root)
    if slots is not None:
        return tree.lowest_depth + 1, dict(slots[0].state.domain_labels), slots
    for depth in range(tree.lowest_depth, limit - 1, -1):
        candidates = feasible_domains(tree, depth, shape, pods, root)
        for at, candidate in enumerate(candidates):
            slots = fill_domain(candidate.domain, shape, pods, tree.lowest_depth)
            if len(slots) != pods:
                continue
            domain, slots = _least_fragmenting(candidates, at, slots, shape, pods, tree)
            return depth, _path_labels(tree, domain), slots
    return None


def _least_fragmenting(
    candidates: list[Candidate],
    at: int,
    slots: list[Slot],
    shape: PodShape,
    pods: int,
    tree: DomainTree,
) -> tuple[DomainNode, list[Slot]]:
    """Among the next few candidates as tight as the one at `at` (which holds the
    gang as `slots`), the one whose placement fragments the cluster least."""
    best_domain, best_slots = candidates[at].domain, slots
    tied = [
        c
        for c in candidates[at + 1 : at + TIED_CANDIDATES]
        if c.tightness == candidates[at].tightness
    ]
    if not tied:
        return best_domain, best_slots
    best_cost = fragmentation(slots)
    seen = [_free_profiles(best_domain, shape)]
    for candidate in tied:
        profiles = _free_profiles(candidate.domain, shape)
        if profiles in seen:  # nodes wired and free alike: taken as alike (a cheap cut)
            continue
        seen.append(profiles)
        other = fill_domain(candidate.domain, shape, pods, tree.lowest_depth)
        if len(other) == pods:
            cost = fragmentation(other)
            if cost < best_cost:
                best_domain, best_slots, best_cost = candidate.domain, other, cost
    return best_domain, best_slots


def _free_profiles(domain: DomainNode, shape: PodShape) -> dict[Profile, int] | None:
    stats = stats_for(domain, shape.model)
    return None if stats is None else stats.profiles


def _path_labels(tree: DomainTree, domain: DomainNode) -> Mapping[str, str]:
    return dict(zip(tree.levels, domain.path, strict=False))


def _assignments(slots: list[Slot], request: GangRequest) -> list[PodAssignment]:
    return [
        PodAssignment(
            rank=rank,
            node=slot.state.name,
            gpu_indices=indices(slot.mask),
            domain=dict(slot.state.domain_labels),  # plain dicts: callers serialise them
            cpu_millis=request.cpu_millis_per_pod,
            memory_bytes=request.memory_bytes_per_pod,
            extras=request.extras,
        )
        for rank, slot in enumerate(slots)
    ]
