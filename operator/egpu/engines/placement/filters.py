"""Filters in the manner of kube-scheduler's framework: which nodes a gang's pods may
go to at all, each refusal with a reason code the diagnosis counts.

Each filter is a pure function of (the gang's request, one node's state) that returns
None (feasible) or a `Refusal`. `excluded_nodes` runs them over the nodes that can
fail one: every node when the pods select nodes by label, ask for an extended
resource or a host port, or get their GPUs through DRA, else only the DRA nodes, the
tainted nodes and the nodes with no pod slot left (the ledger keeps these sets), so a
gang that asks nothing special pays nothing.
Scores (PreferNoSchedule taints, preferred node affinity, artefact locality) rank the
feasible nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from functools import lru_cache

from egpu.domain.artefacts import held_count
from egpu.domain.gang import GangRequest
from egpu.domain.gpu import model_matches
from egpu.domain.placement import Exclusion, FilterReason
from egpu.domain.scheduling import (
    SelectorTerm,
    blocking_taint,
    is_host_port,
    untolerated_soft_taints,
)
from egpu.engines.placement.tree import DomainTree, NodeState


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: FilterReason
    detail: str  # the taint, the label, the resource, the port


Filter = Callable[[GangRequest, NodeState], Refusal | None]


def taint_filter(request: GangRequest, state: NodeState) -> Refusal | None:
    if not state.taints:
        return None
    for ask in request.constraints or (None,):
        taint = blocking_taint(state.taints, ask.tolerations if ask else ())
        if taint is not None:
            return Refusal(FilterReason.TAINT, str(taint))
    return None


def node_selector_filter(request: GangRequest, state: NodeState) -> Refusal | None:
    for ask in request.constraints:
        missing = ask.selector_mismatch(state.labels)
        if missing is not None:
            return Refusal(FilterReason.NODE_SELECTOR, missing)
    return None


def node_affinity_filter(request: GangRequest, state: NodeState) -> Refusal | None:
    for ask in request.constraints:
        if not ask.affinity_matches(state.name, state.labels):
            assert ask.required is not None
            return _affinity_refusal(ask.required)
    return None


@lru_cache(maxsize=256)
def _affinity_refusal(terms: tuple[SelectorTerm, ...]) -> Refusal:
    """One Refusal per set of terms: a scan may refuse thousands of nodes with it."""
    return Refusal(FilterReason.NODE_AFFINITY, " or ".join(map(str, terms)))


def pod_count_filter(request: GangRequest, state: NodeState) -> Refusal | None:
    if state.pods_free == 0:
        return Refusal(FilterReason.TOO_MANY_PODS, f"({state.pods_alloc} pods allocatable)")
    return None


def resource_filter(request: GangRequest, state: NodeState) -> Refusal | None:
    """Room for one pod's extended resources, ephemeral storage and host ports (GPUs,
    CPU and memory are counted by the search itself, per domain)."""
    for resource, amount in request.extras:
        if amount and state.extra_free(resource) < amount:
            if is_host_port(resource):
                return Refusal(FilterReason.HOST_PORT, resource.split("/", 1)[1])
            return Refusal(FilterReason.INSUFFICIENT_RESOURCE, resource)
    return None


def gpu_allocation_filter(request: GangRequest, state: NodeState) -> Refusal | None:
    """Pods whose GPUs come through DRA claims go to DRA nodes only, others only to
    nodes with the device plugin: a pod's claims are fixed before its node is chosen."""
    if state.dra == request.dra:
        return None
    return Refusal(FilterReason.GPU_ALLOCATION, "(DRA node)" if state.dra else "(device plugin)")


FILTERS: tuple[Filter, ...] = (
    gpu_allocation_filter,
    taint_filter,
    node_selector_filter,
    node_affinity_filter,
    pod_count_filter,
    resource_filter,
)


def refusal(request: GangRequest, state: NodeState) -> Refusal | None:
    """The first filter that refuses the node for one of the gang's pods, if any."""
    for check in FILTERS:
        found = check(request, state)
        if found is not None:
            return found
    return None


def filters_for(request: GangRequest) -> tuple[Filter, ...]:
    """The filters that can refuse a node for this request (the others pass every node)."""
    wanted: list[Filter] = [gpu_allocation_filter, taint_filter]
    if any(c.node_selector for c in request.constraints):
        wanted.append(node_selector_filter)
    if any(c.required is not None for c in request.constraints):
        wanted.append(node_affinity_filter)
    wanted.append(pod_count_filter)
    if request.extras:
        wanted.append(resource_filter)
    return tuple(wanted)


def needs_scan(request: GangRequest) -> bool:
    """Whether every node must be visited (else only DRA, tainted and full ones)."""
    return request.dra or bool(request.extras) or any(c.selects for c in request.constraints)


def _relevant(state: NodeState, request: GangRequest) -> bool:
    """A node that could hold one of the pods by its GPUs: schedulable, of the gang's
    model, with enough GPUs. Only such nodes are filtered (and counted as refused)."""
    if not state.schedulable or state.gpu_count < request.gpus_per_pod:
        return False
    return request.gpu_model is None or model_matches(request.gpu_model, state.model)


def excluded_nodes(tree: DomainTree, request: GangRequest) -> dict[str, Refusal]:
    """Nodes that could hold a pod of the gang by GPUs (`_relevant`) but that no pod of
    the gang may go to, with the first filter that said no.

    Without a scan, taints are judged once per distinct set of taints and only the
    groups refused are listed, so a cluster whose GPU nodes all carry one tolerated
    taint costs one check."""
    out: dict[str, Refusal] = {}
    if needs_scan(request):
        checks = filters_for(request)
        for state in tree.nodes.values():
            if not _relevant(state, request):
                continue
            for check in checks:
                found = check(request, state)
                if found is not None:
                    out[state.name] = found
                    break
        return out
    for name, state in tree.dra_nodes.items():  # device-plugin pods: no DRA node
        found = gpu_allocation_filter(request, state)
        if found is not None and _relevant(state, request):
            out[name] = found
    for group in tree.tainted.values():
        first = next(iter(group.values()))
        found = taint_filter(request, first)
        if found is not None:
            for name, state in group.items():
                if name not in out and _relevant(state, request):
                    out[name] = found
    for name, state in tree.pods_full.items():
        if name not in out and _relevant(state, request):
            found = pod_count_filter(request, state)
            if found is not None:
                out[name] = found
    return out


def exclusions(refused: Iterable[Refusal]) -> tuple[Exclusion, ...]:
    """Refusals counted per (reason, detail), most nodes first."""
    counts: dict[tuple[FilterReason, str], int] = {}
    for r in refused:
        counts[(r.reason, r.detail)] = counts.get((r.reason, r.detail), 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(Exclusion(reason, detail, n) for (reason, detail), n in ranked)


# Artefact locality: a node holding every artefact a pod loads at start scores
# ARTEFACT_LOCALITY_WEIGHT, one holding some half of it. Less than one untolerated
# PreferNoSchedule taint (100), so a taint still sends pods elsewhere; enough to decide
# between otherwise equal nodes, and about a middling preferred-affinity weight (1 to
# 100), since a Cached start saves minutes of image pulling and model loading.
ARTEFACT_LOCALITY_WEIGHT = 50
PARTIAL_LOCALITY_WEIGHT = ARTEFACT_LOCALITY_WEIGHT // 2


def locality_score(wanted: tuple[str, ...], held: frozenset[str]) -> int:
    """What holding some of the wanted artefacts is worth (0 when none are wanted)."""
    if not wanted or not held:
        return 0
    count = held_count(wanted, held)
    if count == len(wanted):
        return ARTEFACT_LOCALITY_WEIGHT
    return PARTIAL_LOCALITY_WEIGHT if count else 0


def _constraint_score(request: GangRequest, state: NodeState) -> int:
    total = 0
    for ask in request.constraints or (None,):
        if ask is not None:
            total += ask.preference(state.name, state.labels)
        if state.taints:
            total -= 100 * untolerated_soft_taints(state.taints, ask.tolerations if ask else ())
    return total


def score(request: GangRequest, state: NodeState) -> int:
    """Higher is better: the weights of the preferred node affinity terms the node
    matches, less 100 for each PreferNoSchedule taint the pods do not tolerate (one
    such taint outweighs any single preference, whose weight is 1 to 100), plus the
    node's artefact locality (`locality_score`)."""
    return _constraint_score(request, state) + locality_score(request.artefacts, state.artefacts)


def scores(tree: DomainTree, request: GangRequest, skip: Container[str]) -> dict[str, int]:
    """Scores of the schedulable nodes not in `skip`: of every node when the pods state
    preferences, else only of the nodes that score other than 0, found through the
    ledger's sets: the tainted nodes (one score per set of taints) and the nodes that
    hold some of the pods' artefacts (one locality per set of artefacts)."""
    out: dict[str, int] = {}
    if any(c.scores for c in request.constraints):
        for state in tree.nodes.values():
            if state.schedulable and state.name not in skip:
                out[state.name] = score(request, state)
        return out
    for group in tree.tainted.values():
        value = _constraint_score(request, next(iter(group.values())))
        if value:
            for name, state in group.items():
                if state.schedulable and name not in skip:
                    out[name] = value
    if request.artefacts:
        for held, group in tree.artefact_groups(request.artefacts):
            bonus = locality_score(request.artefacts, held)
            for name, state in group.items():
                if state.schedulable and name not in skip:
                    out[name] = out.get(name, 0) + bonus
    return out


MAX_SCORE_TIERS = 3


def score_tiers(scored: dict[str, int], nodes: int) -> list[int]:
    """The score thresholds to try, best first: the gang goes on the nodes scoring at
    least the first if it fits there, else at least the next, ... (at most
    MAX_SCORE_TIERS tries before all feasible nodes). `nodes` is how many feasible
    nodes there are (those not in `scored` score 0). The lowest score is no tier: at
    it every feasible node is in."""
    values = set(scored.values())
    if len(scored) < nodes:
        values.add(0)
    if not values:
        return []
    ranked = sorted(values, reverse=True)
    return [t for t in ranked[:MAX_SCORE_TIERS] if t > ranked[-1]]
