"""Read-only snapshots the ledger hands out (never its live state)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    model: str | None
    gpu_count: int
    free_gpus: tuple[int, ...]
    used_gpus: tuple[int, ...]
    unhealthy_gpus: tuple[int, ...]
    cpu_free_millis: int
    memory_free_bytes: int
    schedulable: bool
    domain: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DomainStats:
    """Free capacity under one domain (schedulable nodes only).

    `free_histogram[k]` is how many nodes have exactly k free GPUs; `whole_free_nodes`
    how many have every GPU free.
    """

    path: tuple[str, ...]
    level: str
    nodes: int
    free_gpus: int
    whole_free_nodes: int
    free_histogram: tuple[int, ...]
    free_cpu_millis: int
    free_memory_bytes: int


@dataclass(frozen=True, slots=True)
class HeldPod:
    """A reserved pod of a gang, as the ledger holds it."""

    gang_id: str
    rank: int
    node: str
    gpu_indices: tuple[int, ...]
    cpu_millis: int
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """What the ledger counts as used on one node, and by whom (for audits)."""

    name: str
    gpus_used: int
    cpu_used_millis: int
    memory_used_bytes: int
    cpu_allocatable_millis: int
    memory_allocatable_bytes: int
    schedulable: bool
    holders: frozenset[str]  # hold identities: gang ids of reservations, keys of facts
    pods_used: int = 0
    extras_used: tuple[tuple[str, int], ...] = ()  # extended resources and host ports
