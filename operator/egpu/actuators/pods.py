"""Pod actuations: create, delete, record a placement, bind."""

from __future__ import annotations

import json
from typing import Any

from egpu import API_VERSION
from egpu.actuators.manifests import MOVED_MEMBERS_ANNOTATION, moved_members
from egpu.domain.labels import GANG_MIN_ANNOTATION, GANG_SIZE_ANNOTATION, PLAN_ANNOTATION
from egpu.domain.pod import RecordedPlan
from egpu.kube.client import JSON, STRATEGIC_PATCH, ApiError, KubeClient, path_for
from egpu.state.pods import plan_annotation


async def create_pod(client: KubeClient, pod: JSON) -> JSON | None:
    """Create; an existing pod of the same name is not an error (level-based retries)."""
    try:
        return await client.create(path_for("v1", "pods", pod["metadata"]["namespace"]), pod)
    except ApiError as exc:
        if exc.conflict:
            return None
        raise


async def delete_pod(
    client: KubeClient,
    namespace: str,
    name: str,
    uid: str | None = None,
    grace_seconds: int = 0,
) -> None:
    """Delete; with `grace_seconds` the pod gets SIGTERM and that long before SIGKILL."""
    body: dict[str, Any] = {"gracePeriodSeconds": grace_seconds}
    if uid:  # never delete a newer pod that took the same name
        body["preconditions"] = {"uid": uid}
    try:
        await client.request("DELETE", path_for("v1", "pods", namespace, name), body=body)
    except ApiError as exc:
        if not (exc.not_found or exc.conflict):
            raise


async def record_plan(client: KubeClient, namespace: str, name: str, plan: RecordedPlan) -> None:
    """Write the plan on the pod before binding: a restarted operator finds it there.
    Only onto this very pod (its UID): a pod recreated under the same name is not it."""
    patch = {
        "metadata": {
            "uid": plan.uid,
            "annotations": {PLAN_ANNOTATION: plan_annotation(plan)},
        }
    }
    await client.patch(path_for("v1", "pods", namespace, name), patch)


async def clear_plan(client: KubeClient, namespace: str, name: str, uid: str) -> None:
    patch = {"metadata": {"uid": uid, "annotations": {PLAN_ANNOTATION: None}}}
    try:
        await client.patch(path_for("v1", "pods", namespace, name), patch)
    except ApiError as exc:
        if not (exc.not_found or exc.conflict):
            raise


async def set_gang_marks(
    client: KubeClient, namespace: str, name: str, uid: str | None, marks: tuple[str, str]
) -> None:
    """Tell a pending member the gang's size and min members now (this very pod only)."""
    size, minimum = marks
    patch = {
        "metadata": {
            "uid": uid,
            "annotations": {GANG_SIZE_ANNOTATION: size, GANG_MIN_ANNOTATION: minimum},
        }
    }
    try:
        await client.patch(path_for("v1", "pods", namespace, name), patch)
    except ApiError as exc:
        if not (exc.not_found or exc.conflict):
            raise


async def read_pod_object(client: KubeClient, namespace: str, name: str) -> JSON | None:
    """The pod as the API server has it now; None when it is gone."""
    try:
        return await client.get(path_for("v1", "pods", namespace, name))
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


async def set_pod_scheduled(
    client: KubeClient, namespace: str, name: str, reason: str, message: str, now: str
) -> None:
    """PodScheduled=False with the binder's reason, as kube-scheduler reports it."""
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": now,
    }
    try:
        await client.patch(
            path_for("v1", "pods", namespace, name, "status"),
            {"status": {"conditions": [condition]}},
            content_type=STRATEGIC_PATCH,
        )
    except ApiError as exc:
        if not exc.not_found:
            raise


async def bind_pod(
    client: KubeClient,
    namespace: str,
    name: str,
    uid: str,
    node: str,
    annotations: dict[str, str] | None = None,
) -> None:
    """Bind; the Binding's annotations land on the pod in the same write."""
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "annotations": annotations or {},
        },
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    await client.create(path_for("v1", "pods", namespace, name, "binding"), body)


async def record_moved_member(client: KubeClient, workload: JSON, rank: int, record: JSON) -> JSON:
    """Write a moved member's new size and domain onto its GPUWorkload, from which the
    workload controller recreates the rank. Only onto the workload as it was read
    (resourceVersion): a concurrent change is a conflict (ApiError). Returns the
    updated workload."""
    meta = workload["metadata"]
    moved = {**moved_members(workload), str(rank): record}
    patch = {
        "metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": {
                MOVED_MEMBERS_ANNOTATION: json.dumps(moved, separators=(",", ":"), sort_keys=True)
            },
        }
    }
    return await client.patch(
        path_for(API_VERSION, "gpuworkloads", meta["namespace"], meta["name"]), patch
    )
