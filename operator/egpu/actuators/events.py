"""Kubernetes Events about the operator's objects, and status patches."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from egpu.kube.client import JSON, ApiError, KubeClient, path_for

log = logging.getLogger("egpu.actuators.events")
COMPONENT = "egpu-operator"


async def post_event(
    client: KubeClient, obj: JSON, event_type: str, reason: str, message: str
) -> None:
    """Best effort: an Event that cannot be posted is logged, never raised."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": None,
        "count": 1,
    }
    try:
        await client.create(path_for("v1", "events", namespace), body)
    except ApiError as exc:
        log.warning("could not post event %s: %s", reason, exc)


async def patch_status(
    client: KubeClient,
    api_version: str,
    plural: str,
    namespace: str | None,
    name: str,
    status: JSON,
) -> None:
    try:
        await client.patch(
            path_for(api_version, plural, namespace, name, "status"), {"status": status}
        )
    except ApiError as exc:
        if not exc.not_found:  # deleted meanwhile
            raise
