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
from egpu.state.ledger_sync import pod_demand

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


# --- the node's free room --------------------------------------------------------------


def holds_node_resources(pod: JSON) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return bool((pod.get("spec") or {}).get("nodeName")) and phase not in ("Succeeded", "Failed")


def requested_by_node(pods: Iterable[JSON]) -> dict[str, tuple[int, int]]:
    """(cpu millicores, memory bytes) requested on each node by the pods bound there."""
    out: dict[str, tuple[int, int]] = {}
    for pod in pods:
        if not holds_node_resources(pod):
            continue
        try:
            demand = pod_demand(pod)
        except ValueError:
            continue  # a quantity the API server would not have stored
        node = pod["spec"]["nodeName"]
        cpu, memory = out.get(node, (0, 0))
        out[node] = (cpu + demand.cpu_millis, memory + demand.memory_bytes)
    return out


class NodeRequests:
    """`requested_by_node`, kept current from pod events at O(1) per event: the resize
    loop asks on every pass, and a cluster has many more pods than events per pass.
    A pod's demand is parsed again only when its node, uid or generation moves (its
    resources change only through a resize, which moves the generation)."""

    def __init__(self) -> None:
        self._share: dict[str, tuple[str, str, Any, int, int]] = {}
        self.totals: dict[str, tuple[int, int]] = {}

    def rebuild(self, pods: Iterable[tuple[str, JSON]]) -> None:
        self._share, self.totals = {}, {}
        for key, pod in pods:
            self.update(key, pod)

    def _add(self, node: str, cpu: int, memory: int) -> None:
        old_cpu, old_memory = self.totals.get(node, (0, 0))
        self.totals[node] = (old_cpu + cpu, old_memory + memory)

    def update(self, key: str, pod: JSON | None) -> None:
        """The pod at `key` is now `pod` (None: deleted)."""
        old = self._share.pop(key, None)
        if old is not None:
            self._add(old[0], -old[3], -old[4])
        if pod is None or not holds_node_resources(pod):
            return
        meta = pod["metadata"]
        signature = (pod["spec"]["nodeName"], meta.get("uid", ""), meta.get("generation"))
        if old is not None and old[:3] == signature:
            cpu, memory = old[3], old[4]
        else:
            try:
                demand = pod_demand(pod)
            except ValueError:
                return  # a quantity the API server would not have stored
            cpu, memory = demand.cpu_millis, demand.memory_bytes
        self._share[key] = (*signature, cpu, memory)
        self._add(signature[0], cpu, memory)


def node_room(node: JSON | None, requested: tuple[int, int]) -> NodeRoom:
    """Allocatable minus requested; a node the cache does not hold has no room."""
    allocatable = ((node or {}).get("status") or {}).get("allocatable") or {}
    try:
        cpu = cpu_millis(allocatable.get("cpu", 0))
        memory = memory_bytes(allocatable.get("memory", 0))
    except ValueError:
        cpu = memory = 0
    return NodeRoom(free_cpu_millicores=cpu - requested[0], free_memory_bytes=memory - requested[1])
