"""Free-capacity arithmetic other controllers ask the binder for."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pod_slots(free_histogram: Sequence[int], gpus_per_pod: int) -> int:
    """How many pods of `gpus_per_pod` GPUs fit, GPUs only, given how many nodes have
    exactly k free GPUs (`free_histogram[k]`)."""
    if gpus_per_pod < 1:
        raise ValueError("gpus_per_pod must be at least 1")
    return sum(count * (free // gpus_per_pod) for free, count in enumerate(free_histogram))


def pod_slots_on(free_gpus: Iterable[int], gpus_per_pod: int) -> int:
    """How many pods of `gpus_per_pod` GPUs fit, GPUs only, on nodes with these many
    free GPUs each."""
    if gpus_per_pod < 1:
        raise ValueError("gpus_per_pod must be at least 1")
    return sum(free // gpus_per_pod for free in free_gpus)
