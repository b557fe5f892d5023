"""What the resize loop reads of the cluster, as the resize engine's inputs.

Pure functions of raw objects (pods, nodes, a workload's `spec.resize`), so the loop's
glue stays thin and these are unit-tested without a cluster.

Two rules live here rather than in the engine, because they are about the pod and the
workload, not about sizing:
- a resource the workload's policy does not bound (`cpu` or `memory` unset) is not
  resized: the engine never sees it;
- a resource whose container `resizePolicy` says `RestartContainer` is not resized
  either: the promise is a resize without a restart.
Hiding a resource changes what the engine would compute as the QoS class, so the pod's
own class (`status.qosClass`, or computed from every container) is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from egpu.api.workload import ResizePolicy as ApiResizePolicy
from egpu.domain.quantity import cpu_millis, memory_bytes
from egpu.engines.resize import (
    DEFAULT_CPU_POLICY,
    DEFAULT_MEMORY_POLICY,
    ContainerResources,
    ContainerState,
    NodeRoom,
    PodResizeInput,
    QoSClass,
    ResizeMode,
    ResizePolicy,
    ResourceKind,
    ResourcePolicy,
    UsageSample,
    container_resources_from_k8s,
    pod_qos_class,
)

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkloadResize:
    """A workload's resize policy in the engine's terms, and the resources it bounds."""

    policy: ResizePolicy
    covers: frozenset[ResourceKind]
    move_when_infeasible: bool = False  # `onInfeasible: Move`


def workload_resize(spec_resize: JSON | None) -> WorkloadResize:
    """`spec.resize` of a GPUWorkload -> the engine's policy. Raises ValueError (or
    pydantic's ValidationError, a ValueError) on a policy the engine cannot use."""
    api = ApiResizePolicy.model_validate(spec_resize or {})
    mode = ResizeMode(api.mode)
    cpu, memory, covers = DEFAULT_CPU_POLICY, DEFAULT_MEMORY_POLICY, set()
    if api.cpu is not None:
        cpu = ResourcePolicy(
            min=cpu_millis(api.cpu.min),
            max=cpu_millis(api.cpu.max),
            step=cpu_millis(api.cpu.step),
            target_utilization=DEFAULT_CPU_POLICY.target_utilization,
        )
        covers.add(ResourceKind.CPU)
    if api.memory is not None:
        memory = ResourcePolicy(
            min=memory_bytes(api.memory.min),
            max=memory_bytes(api.memory.max),
            step=memory_bytes(api.memory.step),
            target_utilization=DEFAULT_MEMORY_POLICY.target_utilization,
        )
        covers.add(ResourceKind.MEMORY)
    return WorkloadResize(
        ResizePolicy(mode=mode, cpu=cpu, memory=memory),
        frozenset(covers),
        move_when_infeasible=api.on_infeasible == "Move",
    )


def hidden_resources(container: JSON, covers: frozenset[ResourceKind]) -> set[ResourceKind]:
    """Resources of this container the loop must not resize."""
    hidden = {kind for kind in ResourceKind if kind not in covers}
    for rule in container.get("resizePolicy") or []:
        if rule.get("restartPolicy") == "RestartContainer":
            try:
                hidden.add(ResourceKind(rule.get("resourceName")))
            except ValueError:
                continue
    return hidden


def without(resources: ContainerResources, hidden: Iterable[ResourceKind]) -> ContainerResources:
    """`resources` with the hidden kinds absent (the engine leaves absent kinds alone)."""
    out = resources
    for kind in hidden:
        if kind is ResourceKind.CPU:
            out = replace(out, cpu_request=None, cpu_limit=None)
        else:
            out = replace(out, memory_request=None, memory_limit=None)
    return out


def pod_qos(pod: JSON) -> QoSClass:
    """The pod's QoS class: its status says; else computed from every container."""
    try:
        return QoSClass(str((pod.get("status") or {}).get("qosClass")))
    except ValueError:
        spec = pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        return pod_qos_class(container_resources_from_k8s(c.get("resources")) for c in containers)


def resizable_now(pod: JSON) -> bool:
    """Running on a node, not being deleted, and reporting container resources (without
    them the API server refuses a resize: it reads that as a node without support)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or not spec.get("nodeName"):
        return False
    if status.get("phase") != "Running":
        return False
    statuses = status.get("containerStatuses") or []
    return bool(statuses) and all(s.get("resources") is not None for s in statuses)


def pod_resize_input(
    pod: JSON,
    workload: WorkloadResize,
    node: NodeRoom,
    samples_of: Callable[[str], tuple[UsageSample, ...]],
    *,
    last_resize_at: float | None,
    resize_in_progress: bool,
) -> PodResizeInput:
    """The engine's input for one pod; `samples_of(container)` gives its history."""
    containers = tuple(
        ContainerState(
            name=c["name"],
            resources=without(
                container_resources_from_k8s(c.get("resources")),
                hidden_resources(c, workload.covers),
            ),
            samples=samples_of(c["name"]),
        )
        for c in (pod.get("spec") or {}).get("containers") or []
    )
    return PodResizeInput(
        containers=containers,
        policy=workload.policy,
        node=node,
        last_resize_at=last_resize_at,
        qos=pod_qos(pod),
        resize_in_progress=resize_in_progress,
    )
