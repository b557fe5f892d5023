"""List-then-watch caches of raw objects (nodes, pods), level-based.

A paginated LIST fills the store, a WATCH from the list's resourceVersion keeps
it current, and any break (410 Gone, a dropped connection) leads to a fresh
LIST that replaces the store whole, so a missed event never leaves it wrong.
Listeners get every change and one `resync` after each LIST.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from egpu.kube.client import JSON, ApiError, KubeClient

log = logging.getLogger("egpu.state.informer")

Listener = Callable[[str, JSON | None, JSON | None], None]
"""listener(event, old, new) with event in ADDED, MODIFIED, DELETED, RESYNC."""


def slim(obj: JSON) -> JSON:
    """What the caches keep: the object less `managedFields`, which no controller reads
    and which is often the larger part of a pod (tens of thousands of pods are cached)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def object_key(obj: JSON) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


class Informer:
    def __init__(
        self,
        client: KubeClient,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        name: str = "",
    ) -> None:
        self.client = client
        self.path = path
        self.name = name or path
        self.params: dict[str, Any] = {}
        if label_selector:
            self.params["labelSelector"] = label_selector
        if field_selector:
            self.params["fieldSelector"] = field_selector
        self.store: dict[str, JSON] = {}
        self.listeners: list[Listener] = []
        self.synced = asyncio.Event()
        self.resource_version = ""

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def _emit(self, event: str, old: JSON | None, new: JSON | None) -> None:
        for listener in self.listeners:
            try:
                listener(event, old, new)
            except Exception:  # a faulty listener must not stop the cache
                log.exception("informer listener failed", extra={"informer": self.name})

    async def relist(self) -> None:
        items, rv = await self.client.list_all(self.path, **self.params)
        self.store = {object_key(o): slim(o) for o in items}
        self.resource_version = rv
        self._emit("RESYNC", None, None)
        self.synced.set()

    def apply(self, event: JSON) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        rv = obj.get("metadata", {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        if kind == "BOOKMARK":
            return
        if kind == "ERROR":
            raise ApiError(int(obj.get("code", 500)), obj, "WATCH", self.path)
        key = object_key(slim(obj))
        old = self.store.get(key)
        if kind == "DELETED":
            self.store.pop(key, None)
            self._emit("DELETED", old, None)
        else:
            self.store[key] = obj
            self._emit("MODIFIED" if old is not None else "ADDED", old, obj)

    async def run(self) -> None:
        backoff = 0.5
        need_list = True
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                async for event in self.client.watch(
                    self.path, self.resource_version, **self.params
                ):
                    self.apply(event)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                need_list = True
                if exc.status != 410:  # 410: resourceVersion too old, relist at once
                    log.warning("watch failed: %s", exc, extra={"informer": self.name})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception as exc:
                need_list = True
                log.warning("watch broke: %r", exc, extra={"informer": self.name})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
