"""From a gang's pods to the placement engine's request, and back to the pods."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from egpu.domain.gang import GangRequest
from egpu.domain.placement import Placement, PodAssignment
from egpu.domain.pod import PodFacts
from egpu.engines.binding.gangs import Gang


def required_domain(
    domains: Iterable[Mapping[str, str]], levels: tuple[str, ...], required: str | None
) -> tuple[str, ...]:
    """The domain at the `required` level that the gang's placed members sit in (their
    `domain` maps, level -> value): the others must join them there. Empty when none is
    placed or no domain level is required."""
    if required not in levels:
        return ()
    depth = levels.index(required) + 1
    for domain in domains:
        path = tuple(str(domain.get(level, "")) for level in levels[:depth])
        if all(path):
            return path
    return ()


def gang_request(
    gang: Gang,
    fresh: list[PodFacts],
    placed: int,
    within: tuple[str, ...],
    placed_model: str | None = None,
) -> GangRequest:
    """One request for the `fresh` pods of the gang, `placed` of whose members are bound
    or planned already (inside `within`, on GPUs of `placed_model` when they share one).
    The gang's pods are alike: take the largest. Raises ValueError when the pods make
    no valid request."""
    ask = fresh[0].ask
    missing = len(fresh)
    min_members = max(1, min(missing, gang.min_members - placed))
    moved = next((p.ask.within for p in fresh if p.ask.within), ())
    extras: dict[str, int] = {}
    for p in fresh:
        for resource, amount in p.demand.extras:
            extras[resource] = max(extras.get(resource, 0), amount)
    constraints = tuple(dict.fromkeys(p.constraints for p in fresh if p.constraints.active))
    if len({p.dra for p in fresh}) > 1:
        raise ValueError("the gang's pods mix GPUs through DRA claims and the device plugin")
    if len(moved) > len(within) and moved[: len(within)] == within:
        within = moved  # the narrower of the two, when they agree
    return GangRequest(
        gang_id=gang.gang_id,
        pod_count=missing,
        gpus_per_pod=max(p.demand.gpus for p in fresh),
        cpu_millis_per_pod=max(p.demand.cpu_millis for p in fresh),
        memory_bytes_per_pod=max(p.demand.memory_bytes for p in fresh),
        gpu_model=ask.gpu_model,
        required_level=ask.required_level,
        preferred_level=ask.preferred_level,
        min_members=min_members if min_members < missing else None,
        within=within,
        cpu_headroom_millis=max(p.ask.cpu_headroom_millis for p in fresh),
        memory_headroom_bytes=max(p.ask.memory_headroom_bytes for p in fresh),
        extras=tuple(sorted(extras.items())),
        constraints=constraints,
        dra=fresh[0].dra,
        keep_model=placed_model,
        artefacts=tuple(dict.fromkeys(key for p in fresh for key in p.artefacts)),
    )


def shape_key(r: GangRequest) -> tuple[object, ...]:
    """Everything but the gang's name: two asks with one key get one answer."""
    return (
        r.pod_count,
        r.gpus_per_pod,
        r.cpu_millis_per_pod,
        r.memory_bytes_per_pod,
        r.gpu_model,
        r.required_level,
        r.preferred_level,
        r.min_members,
        r.within,
        r.cpu_headroom_millis,
        r.memory_headroom_bytes,
        r.extras,
        r.constraints,
        r.keep_model,
        r.artefacts,
    )


def pair_with_pods(
    pods: list[PodFacts], placement: Placement
) -> list[tuple[PodFacts, PodAssignment]]:
    """The engine numbers its slots 0..n-1 along the topology; the pods, in rank order,
    take them in turn and keep their own rank. A partial placement places the first."""
    slots = sorted(placement.assignments, key=lambda a: a.rank)
    pairs = []
    for index, (pod, slot) in enumerate(zip(pods, slots, strict=False)):
        pairs.append(
            (
                pod,
                PodAssignment(
                    rank=pod.rank if pod.rank is not None else index,
                    node=slot.node,
                    gpu_indices=slot.gpu_indices,
                    domain=slot.domain,
                    cpu_millis=pod.demand.cpu_millis,
                    memory_bytes=pod.demand.memory_bytes,
                    extras=pod.demand.extras,
                ),
            )
        )
    return pairs
