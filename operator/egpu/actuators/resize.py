"""In-place resize: the `pods/resize` patch, and what the kubelet says about it.

The patch comes from the engine (`build_resize_patch`): a strategic merge patch that
names only cpu and memory of the containers that change. Before it goes out it is
checked once more against the pod as it stands: only cpu and memory, only existing
containers, and the pod's QoS class unchanged (the API server would refuse the last
one anyway; refusing here gives a clearer reason). GPUs and every other resource are
never in the patch, so they can never change.

The kubelet reports progress in two pod conditions: `PodResizePending` (reason
`Deferred`: may fit later; `Infeasible`: cannot fit on this node) and
`PodResizeInProgress` (reason `Error` when actuation failed), and in
`status.observedGeneration`, which catches up with `metadata.generation` once the
kubelet has seen the resized spec.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from egpu.engines.resize import container_resources_from_k8s, pod_qos_class
from egpu.kube.client import JSON, STRATEGIC_PATCH, KubeClient, path_for

RESIZE_PENDING = "PodResizePending"
RESIZE_IN_PROGRESS = "PodResizeInProgress"
DEFERRED = "Deferred"
INFEASIBLE = "Infeasible"
ERROR = "Error"

RESIZABLE_RESOURCES = frozenset({"cpu", "memory"})


@dataclass(frozen=True, slots=True)
class ResizeStatus:
    """What a pod says about its last resize."""

    generation: int | None
    observed_generation: int | None
    pending_reason: str | None = None  # Deferred | Infeasible
    pending_message: str = ""
    in_progress: bool = False
    error_message: str | None = None  # PodResizeInProgress with reason Error
    actuated: bool = True  # the containers run with the resources their spec asks

    @property
    def kubelet_behind(self) -> bool:
        """The kubelet has not yet looked at the current spec."""
        return (
            self.generation is not None
            and self.observed_generation is not None
            and self.observed_generation < self.generation
        )

    @property
    def busy(self) -> bool:
        """A resize is still under way (or stuck): do not start another."""
        return (
            self.pending_reason is not None
            or self.in_progress
            or self.kubelet_behind
            or not self.actuated
        )


def _cpu_memory(resources: Any) -> tuple[int | None, ...]:
    r = container_resources_from_k8s(resources)
    return (r.cpu_request, r.cpu_limit, r.memory_request, r.memory_limit)


def _same_cpu_memory(spec: Any, reported: Any) -> bool:
    """By value ("1000m" is "1"); equal text, the common case, needs no parsing."""
    return spec == reported or _cpu_memory(spec) == _cpu_memory(reported)


def pending_reason(pod: JSON) -> str | None:
    """The reason of a true PodResizePending condition, if any (cheap: no parsing)."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == RESIZE_PENDING and condition.get("status") == "True":
            return str(condition.get("reason") or DEFERRED)
    return None


def read_resize_status(pod: JSON) -> ResizeStatus:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    pending_reason, pending_message, in_progress, error = None, "", False, None
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == RESIZE_PENDING:
            pending_reason = condition.get("reason") or DEFERRED
            pending_message = condition.get("message") or ""
        elif condition.get("type") == RESIZE_IN_PROGRESS:
            in_progress = True
            if condition.get("reason") == ERROR:
                error = condition.get("message") or "the kubelet failed to resize"
    reported = {s.get("name"): s.get("resources") for s in status.get("containerStatuses") or []}
    actuated = all(
        c.get("name") not in reported
        or reported[c.get("name")] is None
        or _same_cpu_memory(c.get("resources"), reported[c.get("name")])
        for c in (pod.get("spec") or {}).get("containers") or []
    )
    return ResizeStatus(
        generation=meta.get("generation"),
        observed_generation=status.get("observedGeneration"),
        pending_reason=pending_reason,
        pending_message=pending_message,
        in_progress=in_progress,
        error_message=error,
        actuated=actuated,
    )


class ResizeRefusedError(Exception):
    """The operator's own last check failed; `reason` is CamelCase for Events."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def resized_containers(pod: JSON, patch: JSON) -> list[JSON]:
    """The pod's containers with the patch's resources merged in by name and key, as
    the API server's strategic merge would do it."""
    containers = [
        {**c, "resources": copy.deepcopy(c.get("resources") or {})}
        for c in (pod.get("spec") or {}).get("containers") or []
    ]
    by_name = {c.get("name"): c for c in containers}
    for change in (patch.get("spec") or {}).get("containers") or []:
        target = by_name[change["name"]]
        resources = target.setdefault("resources", {})
        for part, values in (change.get("resources") or {}).items():
            resources.setdefault(part, {}).update(values)
    return containers


def check_patch(pod: JSON, patch: JSON) -> None:
    """Raise ResizeRefusedError unless the patch only changes cpu/memory of existing
    containers and keeps the pod's QoS class."""
    spec = pod.get("spec") or {}
    names = {c.get("name") for c in spec.get("containers") or []}
    if set(patch) != {"spec"} or set(patch["spec"]) != {"containers"}:
        raise ResizeRefusedError(
            "InvalidResizePatch", "a resize patch may only name spec.containers"
        )
    for change in patch["spec"]["containers"]:
        if change.get("name") not in names:
            raise ResizeRefusedError(
                "InvalidResizePatch", f"container {change.get('name')!r} is not in the pod"
            )
        for part, values in (change.get("resources") or {}).items():
            if part not in ("requests", "limits"):
                raise ResizeRefusedError(
                    "InvalidResizePatch", f"resources.{part} cannot be resized"
                )
            extra = set(values) - RESIZABLE_RESOURCES
            if extra:
                raise ResizeRefusedError(
                    "NotResizableInPlace",
                    f"{', '.join(sorted(extra))} cannot be resized in place; only cpu and memory",
                )
    init = spec.get("initContainers") or []

    def qos(containers: list[JSON]) -> str:
        every = [*init, *containers]
        return pod_qos_class(container_resources_from_k8s(c.get("resources")) for c in every)

    before, after = qos(spec.get("containers") or []), qos(resized_containers(pod, patch))
    if before != after:
        raise ResizeRefusedError(
            "QoSWouldChange", f"the resize would change the pod's QoS class {before} to {after}"
        )


async def apply_resize(client: KubeClient, pod: JSON, patch: JSON) -> JSON:
    """Check, then PATCH pods/resize (strategic merge). Returns the resized pod; raises
    ResizeRefusedError, or the client's ApiError when the API server refuses."""
    check_patch(pod, patch)
    meta = pod["metadata"]
    path = path_for("v1", "pods", meta["namespace"], meta["name"], "resize")
    return await client.patch(path, patch, content_type=STRATEGIC_PATCH)
