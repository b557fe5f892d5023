"""Why a gang does not fit: per level, the roomiest domain and how many pods it takes.

Counts here are exact (CPU and memory per node included), found by visiting the most
promising domains first and stopping once no other can beat the best so far. Only
refusals and partial gangs pay for this.
"""

from __future__ import annotations

from dataclasses import dataclass

from egpu.domain.gang import GangRequest
from egpu.domain.placement import LevelDiagnosis, Unschedulable, UnschedulableReason
from egpu.engines.placement.capacity import (
    PodShape,
    domain_pods,
    exact_domain_pods,
    node_pods,
    stats_for,
)
from egpu.engines.placement.fill import nodes_with_free
from egpu.engines.placement.tree import DomainTree


@dataclass(frozen=True, slots=True)
class Best:
    domains: int
    pods: int
    value: str | None
    path: tuple[str, ...]


def best_node(tree: DomainTree, shape: PodShape) -> Best:
    stats = stats_for(tree.root, shape.model)
    if stats is None:
        return Best(0, 0, None, ())
    lowest = list(tree.lowest_domains(tree.root))
    pods, found = 0, None
    for free in range(len(stats.hist) - 1, shape.gpus - 1, -1):
        if free // shape.gpus <= pods:
            break
        if not stats.hist[free]:
            continue
        for domain in lowest:
            for state in nodes_with_free(domain, shape, free):
                fits = node_pods(state, shape)
                if fits > pods:
                    pods, found = fits, state
    if found is None:
        return Best(stats.nodes, 0, None, ())
    return Best(stats.nodes, pods, found.name, (*found.chain[-1].path, found.name))


def best_domain(tree: DomainTree, depth: int, shape: PodShape) -> Best:
    """The domain at `depth` (0 = the whole cluster) that takes the most pods."""
    if depth > tree.lowest_depth:
        return best_node(tree, shape)
    ranked = []
    for domain in tree.domains_at(depth):
        stats = stats_for(domain, shape.model)
        if stats is not None:
            ranked.append((domain_pods(stats, shape), domain.sort_key, domain))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    pods, found = 0, None
    for bound, _, domain in ranked:
        if bound <= pods:
            break
        exact = exact_domain_pods(domain, list(tree.lowest_domains(domain)), shape)
        if exact > pods:
            pods, found = exact, domain
    if found is None:
        return Best(len(ranked), 0, None, ())
    value = found.value if found.depth else "cluster"
    return Best(len(ranked), pods, value, found.path)


def _cpu_words(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _memory_words(size: int) -> str:
    if not size:
        return ""
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size % unit == 0:
            return f"{size // unit}{suffix} memory"
    return f"{size} bytes of memory"


def _model_words(model: str | None) -> str:
    return f" of model {model}" if model else ""


def unschedulable(
    tree: DomainTree,
    request: GangRequest,
    shape: PodShape,
    limit_depth: int,
    pods: int,
) -> Unschedulable:
    """Diagnose every level from the node up to `limit_depth`; `pods` is what was sought."""
    g = shape.gpus
    levels = []
    bests = []
    for depth in range(tree.lowest_depth + 1, limit_depth - 1, -1):
        best = best_domain(tree, depth, shape)
        bests.append(best)
        levels.append(
            LevelDiagnosis(
                level=tree.level_name(depth),
                domains=best.domains,
                needed_pods=pods,
                needed_gpus=pods * g,
                best_domain=best.value,
                best_path=best.path,
                best_pods=best.pods,
                best_gpus=best.pods * g,
            )
        )
    widest, widest_best = levels[-1], bests[-1]
    model = _model_words(shape.model)
    shape_words = f"{pods} pods x {g} GPUs"
    if widest_best.domains == 0:
        reason = UnschedulableReason.NO_MATCHING_NODES
        message = f"no schedulable node has GPUs{model}"
    elif request.required_level is not None:
        reason = UnschedulableReason.REQUIRED_LEVEL
        message = (
            f"no {widest.level} domain has {widest.needed_gpus} free GPUs{model} for "
            f"{shape_words}; best has {widest.best_gpus} ({widest.best_domain})"
        )
    else:
        reason = UnschedulableReason.INSUFFICIENT_CAPACITY
        message = (
            f"the cluster has no room for {shape_words}{model}: "
            f"{widest.needed_gpus} GPUs needed, {widest.best_gpus} usable"
        )
    extras = [f"{_cpu_words(shape.cpu)} CPU" if shape.cpu else "", _memory_words(shape.mem)]
    if any(extras):
        message += f" (each pod also needs {' and '.join(e for e in extras if e)}"
        if request.cpu_headroom_millis or request.memory_headroom_bytes:
            message += ", resize headroom included"
        message += ")"
    if request.min_pods < request.pod_count:
        message += f"; min_members {request.min_pods} do not fit either"
    return Unschedulable(request.gang_id, reason, message, tuple(levels))
