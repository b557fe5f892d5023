"""The body of a `pods/resize` patch built from a decision.

A strategic merge patch: containers merge by name and the requests/limits maps merge
by key, so GPUs and every other resource the patch does not name stay as they are.
Only cpu and memory are ever written, and only for containers that change.
"""

from __future__ import annotations

from egpu.engines.resize.model import PodResizeDecision, Recommendation
from egpu.engines.resize.quantity import format_cpu, format_memory

ResourceMap = dict[str, str]
ContainerPatch = dict[str, str | dict[str, ResourceMap]]


def container_patch(recommendation: Recommendation) -> ContainerPatch:
    target = recommendation.target
    requests: ResourceMap = {}
    limits: ResourceMap = {}
    if target.cpu_request is not None:
        requests["cpu"] = format_cpu(target.cpu_request)
    if target.memory_request is not None:
        requests["memory"] = format_memory(target.memory_request)
    if target.cpu_limit is not None:
        limits["cpu"] = format_cpu(target.cpu_limit)
    if target.memory_limit is not None:
        limits["memory"] = format_memory(target.memory_limit)
    resources: dict[str, ResourceMap] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": recommendation.container, "resources": resources}


def build_resize_patch(decision: PodResizeDecision) -> dict[str, dict[str, list[ContainerPatch]]]:
    """`{"spec": {"containers": [...]}}` for the containers whose resources change."""
    return {"spec": {"containers": [container_patch(r) for r in decision.changes]}}
