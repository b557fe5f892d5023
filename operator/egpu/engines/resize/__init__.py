"""In-place resize engine: pure decisions of new cpu/memory requests and limits.

Entry point: `decide_resize(PodResizeInput, now) -> PodResizeDecision`; then
`build_resize_patch(decision)` for the `pods/resize` subresource when the verdict is
Apply. No kopf, no Kubernetes client, no clock.
"""

from egpu.engines.resize.engine import decide_resize, decide_resource, recommend_container
from egpu.engines.resize.model import (
    DEFAULT_CPU_POLICY,
    DEFAULT_MEMORY_POLICY,
    GIB,
    ContainerResources,
    ContainerState,
    NodeRoom,
    PodResizeDecision,
    PodResizeInput,
    QoSClass,
    Reason,
    Recommendation,
    ResizeMode,
    ResizePolicy,
    ResourceDecision,
    ResourceKind,
    ResourcePolicy,
    UsageSample,
    Verdict,
)
from egpu.engines.resize.patch import build_resize_patch
from egpu.engines.resize.qos import pod_qos_class, qos_preserved
from egpu.engines.resize.quantity import (
    container_resources_from_k8s,
    format_cpu,
    format_memory,
)

__all__ = [
    "DEFAULT_CPU_POLICY",
    "DEFAULT_MEMORY_POLICY",
    "GIB",
    "ContainerResources",
    "ContainerState",
    "NodeRoom",
    "PodResizeDecision",
    "PodResizeInput",
    "QoSClass",
    "Reason",
    "Recommendation",
    "ResizeMode",
    "ResizePolicy",
    "ResourceDecision",
    "ResourceKind",
    "ResourcePolicy",
    "UsageSample",
    "Verdict",
    "build_resize_patch",
    "container_resources_from_k8s",
    "decide_resize",
    "decide_resource",
    "format_cpu",
    "format_memory",
    "pod_qos_class",
    "qos_preserved",
    "recommend_container",
]
