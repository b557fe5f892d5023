"""Reading container resources into the resize engine and writing quantities out."""

from __future__ import annotations

import pytest

from egpu.domain.quantity import cpu_millis, memory_bytes
from egpu.engines.resize import (
    GIB,
    ContainerResources,
    container_resources_from_k8s,
    format_cpu,
    format_memory,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("millicores", "text"), [(2500, "2500m"), (3000, "3"), (500, "500m")])
def test_format_cpu(millicores: int, text: str) -> None:
    assert format_cpu(millicores) == text
    assert cpu_millis(text) == millicores


@pytest.mark.parametrize(
    ("size", "text"),
    [(7 * GIB, "7Gi"), (1536 * 2**20, "1536Mi"), (3 * 2**10, "3Ki"), (1000, "1000"), (0, "0")],
)
def test_format_memory(size: int, text: str) -> None:
    assert format_memory(size) == text
    assert memory_bytes(text) == size


def test_reading_container_resources_ignores_gpus() -> None:
    resources = container_resources_from_k8s(
        {
            "requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "4"},
            "limits": {"cpu": "4", "nvidia.com/gpu": "4"},
        }
    )
    assert resources == ContainerResources(2000, 4000, 8 * GIB, None)


def test_reading_absent_or_numeric_resources() -> None:
    assert container_resources_from_k8s(None) == ContainerResources()
    assert container_resources_from_k8s({"limits": {"cpu": 1, "memory": 1024}}) == (
        ContainerResources(cpu_limit=1000, memory_limit=1024)
    )
