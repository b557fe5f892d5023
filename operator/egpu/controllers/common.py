"""Small pieces every controller uses: timestamps, pod readiness, one Event per news."""

from __future__ import annotations

import datetime as dt

from egpu.actuators.events import post_event
from egpu.kube.client import JSON, KubeClient


def now_text() -> str:
    """Now, as Kubernetes writes times in status."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """A Kubernetes timestamp as seconds since the epoch; None when absent or malformed."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


class EventOnce:
    """Posts an Event per distinct (object, reason, message), not one per reconcile."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._last: dict[str, str] = {}

    async def post(self, body: JSON, kind: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        key = f"{meta.get('namespace')}/{meta['name']}/{reason}"
        if self._last.get(key) == message:
            return
        self._last[key] = message
        await post_event(self.client, body, kind, reason, message)
