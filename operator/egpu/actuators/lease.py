"""The Lease the replicas elect their leader with: read it, take it, renew it, give it up.

Every write is an optimistic-concurrency update (the resourceVersion read), so two
replicas can never both succeed in taking it.
"""

from __future__ import annotations

import datetime as dt

from egpu.engines.leadership import LeaseRecord
from egpu.kube.client import JSON, ApiError, KubeClient, path_for

LEASE_API = "coordination.k8s.io/v1"


def micro_time(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(lease: JSON | None) -> LeaseRecord | None:
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        renew_time=spec.get("renewTime"),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        transitions=int(spec.get("leaseTransitions") or 0),
    )


async def read_lease(client: KubeClient, namespace: str, name: str) -> JSON | None:
    try:
        return await client.get(path_for(LEASE_API, "leases", namespace, name))
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


async def write_lease(
    client: KubeClient,
    namespace: str,
    name: str,
    current: JSON | None,
    holder: str | None,
    duration_s: float,
    now: dt.datetime,
) -> JSON:
    """Create the Lease, or replace its spec if it is still `current` (else ApiError 409).
    `holder` None gives it up (renewTime in the past, so anyone may take it at once)."""
    previous = record_of(current)
    transitions = previous.transitions if previous else 0
    if previous is not None and holder is not None and previous.holder != holder:
        transitions += 1
    spec: JSON = {
        "holderIdentity": holder or "",
        "leaseDurationSeconds": max(1, round(duration_s)),
        "renewTime": micro_time(now if holder else dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
        "leaseTransitions": transitions,
    }
    if holder and (previous is None or previous.holder != holder):
        spec["acquireTime"] = micro_time(now)
    elif current is not None:
        acquired = (current.get("spec") or {}).get("acquireTime")
        if acquired:
            spec["acquireTime"] = acquired
    body: JSON = {
        "apiVersion": LEASE_API,
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    if current is None:
        return await client.create(path_for(LEASE_API, "leases", namespace), body)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    result: JSON = await client.request(
        "PUT", path_for(LEASE_API, "leases", namespace, name), body=body
    )
    return result
