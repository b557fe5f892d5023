"""How many pods of a gang's shape fit: per node exactly, per domain as an upper bound."""

from __future__ import annotations

from dataclasses import dataclass

from egpu.domain.gang import GangRequest
from egpu.engines.placement.tree import DomainNode, NodeState, Stats


@dataclass(frozen=True, slots=True)
class PodShape:
    """One pod of the gang as the fit checks see it: GPUs, CPU millicores, memory bytes
    (requests plus headroom), the GPU model (None: any), and the other resources it
    holds (ephemeral storage, extended resources, host ports). Every pod also takes one
    of the node's pod slots."""

    gpus: int
    cpu: int
    mem: int
    model: str | None
    extras: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, request: GangRequest) -> PodShape:
        return cls(
            request.gpus_per_pod,
            request.cpu_millis_per_pod + request.cpu_headroom_millis,
            request.memory_bytes_per_pod + request.memory_headroom_bytes,
            request.gpu_model,
            tuple((r, n) for r, n in request.extras if n > 0),
        )

    def matches(self, state: NodeState) -> bool:
        return self.model is None or state.model == self.model


def stats_for(domain: DomainNode, model: str | None) -> Stats | None:
    """Counts for one model, or summed over models when any model will do."""
    if model is not None:
        return domain.stats.get(model)
    if len(domain.stats) < 2:
        return next(iter(domain.stats.values()), None)
    found = list(domain.stats.values())
    total = found[0]
    for more in found[1:]:
        total = total.merged_with(more)
    return total


def pods_by_gpus(hist: list[int], gpus: int) -> int:
    pods = 0
    for free in range(gpus, len(hist)):
        pods += hist[free] * (free // gpus)
    return pods


def domain_has_room(stats: Stats | None, shape: PodShape, pods: int) -> bool:
    """Whether the domain may take `pods` pods: totals first (cheap), then the histogram."""
    if stats is None or stats.free_gpus < pods * shape.gpus:
        return False
    if stats.free_cpu < pods * shape.cpu or stats.free_mem < pods * shape.mem:
        return False
    return domain_pods(stats, shape) >= pods


def domain_pods(stats: Stats | None, shape: PodShape) -> int:
    """An upper bound on the pods the domain takes: exact in GPUs, CPU/memory only as totals.

    Exact whenever CPU and memory are not the binding limit on any node; the fill step
    checks nodes exactly, so an optimistic bound costs a retry, never a wrong answer.
    """
    if stats is None:
        return 0
    pods = pods_by_gpus(stats.hist, shape.gpus)
    if shape.cpu:
        pods = min(pods, stats.free_cpu // shape.cpu)
    if shape.mem:
        pods = min(pods, stats.free_mem // shape.mem)
    return pods


def node_pods(state: NodeState, shape: PodShape) -> int:
    """Exactly how many pods of this shape the node takes now."""
    if not shape.matches(state):
        return 0
    pods = state.free_mask.bit_count() // shape.gpus
    if shape.cpu:
        pods = min(pods, state.cpu_free // shape.cpu)
    if shape.mem:
        pods = min(pods, state.mem_free // shape.mem)
    slots = state.pods_alloc - state.pods_used
    if state.pods_alloc >= 0 and slots < pods:
        pods = max(0, slots)
    return other_limits(state, shape, pods) if shape.extras else pods


def other_limits(state: NodeState, shape: PodShape, pods: int) -> int:
    """`pods`, cut to what the node's pod slots and the pod's other resources allow."""
    if state.pods_alloc >= 0 and state.pods_free < pods:
        pods = state.pods_free
    for resource, amount in shape.extras:
        pods = min(pods, state.extra_free(resource) // amount)
    return pods


def candidate_nodes(domain: DomainNode, shape: PodShape, min_free: int) -> list[NodeState]:
    """Schedulable nodes of the model in a lowest-level domain with at least `min_free` GPUs."""
    models = [shape.model] if shape.model is not None else list(domain.buckets)
    found: list[NodeState] = []
    for model in models:
        buckets = domain.buckets.get(model, [])
        for free in range(min_free, len(buckets)):
            found.extend(buckets[free].values())
    return found


def exact_domain_pods(domain: DomainNode, lowest: list[DomainNode], shape: PodShape) -> int:
    """Exactly how many pods fit under `domain` (given its lowest-level domains).

    Uses the histogram when the pods need no CPU or memory (then it is exact), else
    visits every node with enough free GPUs: O(nodes), so only the diagnosis and
    partial-gang paths call it. The loop is written out because it is their hot spot.
    """
    if not shape.cpu and not shape.mem and not shape.extras:
        # Pod slots are left out here: with 110 of them a node runs out of GPUs first
        # (a node with no slot left is filtered out before this is asked).
        return domain_pods(stats_for(domain, shape.model), shape)
    gpus, cpu, mem, extras = shape.gpus, shape.cpu, shape.mem, shape.extras
    total = 0
    for lowest_domain in lowest:
        for model, buckets in lowest_domain.buckets.items():
            if shape.model is not None and model != shape.model:
                continue
            for free in range(gpus, len(buckets)):
                by_gpus = free // gpus
                for state in buckets[free].values():
                    pods = by_gpus
                    if cpu and state.cpu_alloc - state.cpu_used < pods * cpu:
                        pods = max(0, state.cpu_alloc - state.cpu_used) // cpu
                    if mem and state.mem_alloc - state.mem_used < pods * mem:
                        pods = max(0, state.mem_alloc - state.mem_used) // mem
                    slots = state.pods_alloc - state.pods_used
                    if state.pods_alloc >= 0 and slots < pods:
                        pods = max(0, slots)
                    total += other_limits(state, shape, pods) if extras else pods
    return total
