"""The engine's integers (millicores, bytes) <-> Kubernetes quantities.

Parsing is `egpu.domain.quantity`'s (exact, rounding up as the API server does);
this module adds the container view and the formatting a resize patch needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from egpu.domain.quantity import cpu_millis, memory_bytes
from egpu.engines.resize.model import ContainerResources

QuantityText = str | int | float

_BINARY_UNITS = (
    ("Ei", 2**60),
    ("Pi", 2**50),
    ("Ti", 2**40),
    ("Gi", 2**30),
    ("Mi", 2**20),
    ("Ki", 2**10),
)


def format_cpu(millicores: int) -> str:
    """Whole cores as "3", anything else in millicores ("2500m")."""
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_memory(size: int) -> str:
    """The largest binary unit that divides exactly ("7Gi", "1536Mi"), else bytes."""
    for suffix, unit in _BINARY_UNITS:
        if size != 0 and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def container_resources_from_k8s(
    resources: Mapping[str, Mapping[str, QuantityText]] | None,
) -> ContainerResources:
    """Read a container's `resources` (requests/limits maps). GPUs and every other
    resource are ignored: the engine never sees them, so it can never change them."""
    resources = resources or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    return ContainerResources(
        cpu_request=cpu_millis(requests["cpu"]) if "cpu" in requests else None,
        cpu_limit=cpu_millis(limits["cpu"]) if "cpu" in limits else None,
        memory_request=memory_bytes(requests["memory"]) if "memory" in requests else None,
        memory_limit=memory_bytes(limits["memory"]) if "memory" in limits else None,
    )
