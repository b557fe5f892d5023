"""ResourceClaim actuations of the binder as DRA allocator: read a pod's claim, allocate
it to the planned devices (finalizer first, as kube-scheduler does, so the controller
manager clears the allocation before the claim can go), clear a stale allocation.

Every write carries the resourceVersion it was decided on: a claim that changed
meanwhile is refused by the API server (409), never overwritten."""

from __future__ import annotations

from typing import Any

from egpu.domain.dra import CLAIM_FINALIZER, DRA_API_VERSION
from egpu.kube.client import JSON, ApiError, KubeClient, path_for


def claim_path(namespace: str, name: str) -> str:
    return path_for(DRA_API_VERSION, "resourceclaims", namespace, name)


async def read_claim(client: KubeClient, namespace: str, name: str) -> JSON | None:
    try:
        return await client.get(claim_path(namespace, name))
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


async def allocate_claim(
    client: KubeClient, claim: JSON, allocation: dict[str, Any], pod: JSON
) -> JSON:
    """Allocate `claim` (as read) and reserve it for `pod` (its name and UID)."""
    meta = claim["metadata"]
    path = claim_path(meta["namespace"], meta["name"])
    finalizers = list(meta.get("finalizers") or [])
    if CLAIM_FINALIZER not in finalizers:
        claim = await client.patch(
            path,
            {
                "metadata": {
                    "resourceVersion": meta["resourceVersion"],
                    "finalizers": [*finalizers, CLAIM_FINALIZER],
                }
            },
        )
    status = {
        "allocation": (claim.get("status") or {}).get("allocation") or allocation,
        "reservedFor": [{"resource": "pods", "name": pod["name"], "uid": pod["uid"]}],
    }
    return await client.patch(
        f"{path}/status",
        {"metadata": {"resourceVersion": claim["metadata"]["resourceVersion"]}, "status": status},
    )


async def clear_allocation(client: KubeClient, claim: JSON) -> JSON:
    """Deallocate a claim no pod runs with (its reservations go with it)."""
    meta = claim["metadata"]
    return await client.patch(
        f"{claim_path(meta['namespace'], meta['name'])}/status",
        {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "status": {"allocation": None, "reservedFor": None},
        },
    )
