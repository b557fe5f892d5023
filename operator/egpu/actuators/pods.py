"""Pod actuations: create, delete, record a placement, bind."""

from __future__ import annotations

import json
from typing import Any

from egpu import API_VERSION
from egpu.actuators.manifests import (
    ASSIGNED_NODE_ANNOTATION,
    DOMAIN_ANNOTATION,
    GPU_IDS_ANNOTATION,
    MOVED_MEMBERS_ANNOTATION,
    moved_members,
)
from egpu.kube.client import JSON, ApiError, KubeClient, path_for


async def create_pod(client: KubeClient, pod: JSON) -> JSON | None:
    """Create; an existing pod of the same name is not an error (level-based retries)."""
    try:
        return await client.create(path_for("v1", "pods", pod["metadata"]["namespace"]), pod)
    except ApiError as exc:
        if exc.conflict:
            return None
        raise


async def delete_pod(client: KubeClient, namespace: str, name: str, uid: str | None = None) -> None:
    body: dict[str, Any] = {"gracePeriodSeconds": 0}
    if uid:  # never delete a newer pod that took the same name
        body["preconditions"] = {"uid": uid}
    try:
        await client.request("DELETE", path_for("v1", "pods", namespace, name), body=body)
    except ApiError as exc:
        if not (exc.not_found or exc.conflict):
            raise


async def record_assignment(
    client: KubeClient,
    namespace: str,
    name: str,
    node: str,
    gpu_ids: tuple[int, ...],
    domain: dict[str, str],
) -> None:
    """Write the plan on the pod before binding: a restarted operator finds it there."""
    patch = {
        "metadata": {
            "annotations": {
                ASSIGNED_NODE_ANNOTATION: node,
                GPU_IDS_ANNOTATION: ",".join(str(g) for g in gpu_ids),
                DOMAIN_ANNOTATION: json.dumps(domain, separators=(",", ":"), sort_keys=True),
            }
        }
    }
    await client.patch(path_for("v1", "pods", namespace, name), patch)


async def clear_assignment(client: KubeClient, namespace: str, name: str) -> None:
    patch = {
        "metadata": {
            "annotations": {
                ASSIGNED_NODE_ANNOTATION: None,
                GPU_IDS_ANNOTATION: None,
                DOMAIN_ANNOTATION: None,
            }
        }
    }
    try:
        await client.patch(path_for("v1", "pods", namespace, name), patch)
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
