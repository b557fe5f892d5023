"""The pod QoS class, as the API server computes it."""

from __future__ import annotations

import pytest

from egpu.engines.resize import (
    GIB,
    ContainerResources,
    QoSClass,
    container_resources_from_k8s,
    pod_qos_class,
    qos_preserved,
)

pytestmark = pytest.mark.unit

FULL = ContainerResources(1000, 1000, GIB, GIB)


def test_no_cpu_or_memory_anywhere_is_best_effort() -> None:
    assert pod_qos_class([]) == QoSClass.BEST_EFFORT
    assert pod_qos_class([ContainerResources(), ContainerResources()]) == QoSClass.BEST_EFFORT


def test_gpu_only_container_is_best_effort() -> None:
    gpu_only = container_resources_from_k8s(
        {"requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}}
    )
    assert pod_qos_class([gpu_only]) == QoSClass.BEST_EFFORT


def test_equal_requests_and_limits_for_both_in_every_container_is_guaranteed() -> None:
    assert pod_qos_class([FULL, ContainerResources(500, 500, 2 * GIB, 2 * GIB)]) == (
        QoSClass.GUARANTEED
    )


def test_limits_only_default_requests_to_limits_so_guaranteed() -> None:
    assert pod_qos_class([ContainerResources(cpu_limit=1000, memory_limit=GIB)]) == (
        QoSClass.GUARANTEED
    )


@pytest.mark.parametrize(
    "containers",
    [
        [ContainerResources(500, 1000, GIB, GIB)],  # cpu request below limit
        [ContainerResources(1000, 1000, None, None)],  # memory missing
        [ContainerResources(cpu_request=1000)],  # requests only
        [FULL, ContainerResources()],  # one container without limits
        [ContainerResources(0, 1000, GIB, GIB)],  # a zero request counts as absent
    ],
)
def test_anything_else_with_some_cpu_or_memory_is_burstable(
    containers: list[ContainerResources],
) -> None:
    assert pod_qos_class(containers) == QoSClass.BURSTABLE


def test_zero_quantities_count_as_absent() -> None:
    assert pod_qos_class([ContainerResources(0, 0, 0, 0)]) == QoSClass.BEST_EFFORT


def test_gpus_beside_equal_cpu_and_memory_stay_guaranteed() -> None:
    with_gpu = container_resources_from_k8s(
        {
            "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "8"},
            "limits": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "8"},
        }
    )
    assert pod_qos_class([with_gpu]) == QoSClass.GUARANTEED


def test_qos_preserved_spots_a_class_change() -> None:
    burstable = [ContainerResources(500, 1000, GIB, GIB)]
    assert qos_preserved(burstable, [ContainerResources(1000, 2000, GIB, GIB)])
    assert not qos_preserved(burstable, [FULL])
