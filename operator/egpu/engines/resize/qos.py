"""The pod QoS class, computed the way the API server computes it.

Only cpu and memory count (GPUs, hugepages and other extended resources do not);
zero quantities count as absent; requests and limits are summed over all containers
(init containers included) and compared per resource. Absent requests are first
defaulted to the limit, as the API server does on admission.
"""

from __future__ import annotations

from collections.abc import Iterable

from egpu.engines.resize.model import ContainerResources, QoSClass, ResourceKind


def pod_qos_class(containers: Iterable[ContainerResources]) -> QoSClass:
    requests: dict[ResourceKind, int] = {}
    limits: dict[ResourceKind, int] = {}
    every_container_limits_both = True
    for raw in containers:
        resources = raw.with_defaulted_requests()
        limited: set[ResourceKind] = set()
        for kind in ResourceKind:
            request = resources.request(kind)
            if request is not None and request > 0:
                requests[kind] = requests.get(kind, 0) + request
            limit = resources.limit(kind)
            if limit is not None and limit > 0:
                limits[kind] = limits.get(kind, 0) + limit
                limited.add(kind)
        if limited != set(ResourceKind):
            every_container_limits_both = False
    if not requests and not limits:
        return QoSClass.BEST_EFFORT
    if every_container_limits_both and requests == limits:
        return QoSClass.GUARANTEED
    return QoSClass.BURSTABLE


def qos_preserved(
    before: Iterable[ContainerResources], after: Iterable[ContainerResources]
) -> bool:
    """The API server refuses a resize that changes the pod's QoS class."""
    return pod_qos_class(before) == pod_qos_class(after)
