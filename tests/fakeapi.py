"""An in-memory API server for unit tests of controllers' edge cases (errors, lost
replies, conflicts). Never instead of the real one: e2e tests use the local control
plane.

It keeps pods and nodes, answers the calls the controllers make (GET, merge/strategic
PATCH, Binding, DELETE with a UID precondition, Events), and delivers every change to
the informers as a watch would: shortly after the reply (`await api.settle()`).
Faults are queued per call: `api.fail("POST", "/binding", TransportError(...),
applied=True)` makes the next matching call fail, after (applied) or before the
change took effect.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from egpu.kube.client import ApiError

JSON = dict[str, Any]
Listener = Callable[[str, JSON | None, JSON | None], None]


class FakeInformer:
    """What the controllers read of an informer: a store and its listeners."""

    def __init__(self) -> None:
        self.store: dict[str, JSON] = {}
        self.listeners: list[Listener] = []
        self.synced = asyncio.Event()
        self.synced.set()

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def emit(self, event: str, key: str, new: JSON | None) -> None:
        old = self.store.get(key)
        if new is None:
            self.store.pop(key, None)
        else:
            self.store[key] = copy.deepcopy(new)
        for listener in self.listeners:
            listener(event, old, copy.deepcopy(new) if new is not None else None)

    def resync(self) -> None:
        for listener in self.listeners:
            listener("RESYNC", None, None)


@dataclass
class Fault:
    method: str
    path_part: str
    error: Exception
    applied: bool


def _merge(target: JSON, patch: JSON) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeApi:
    def __init__(self) -> None:
        self.pods = FakeInformer()
        self.nodes = FakeInformer()
        self.objects: dict[str, JSON] = {}  # path -> object (pods and nodes live here too)
        self.events: list[JSON] = []
        self.calls: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self._rv = itertools.count(1)
        self._pending: list[tuple[FakeInformer, str, str, JSON | None]] = []

    # -- setting the scene ----------------------------------------------------------

    def add_node(self, node: JSON) -> None:
        node = copy.deepcopy(node)
        node["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[f"/api/v1/nodes/{node['metadata']['name']}"] = node
        self.nodes.emit("ADDED", node["metadata"]["name"], node)

    def add_pod(self, pod: JSON) -> JSON:
        pod = copy.deepcopy(pod)
        meta = pod["metadata"]
        meta.setdefault("uid", f"uid-{meta['name']}-{next(self._rv)}")
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = str(next(self._rv))
        self.objects[self._pod_path(meta["namespace"], meta["name"])] = pod
        self.pods.emit("ADDED", f"{meta['namespace']}/{meta['name']}", pod)
        return pod

    def pod(self, namespace: str, name: str) -> JSON | None:
        return self.objects.get(self._pod_path(namespace, name))

    def fail(self, method: str, path_part: str, error: Exception, applied: bool = False) -> None:
        self.faults.append(Fault(method, path_part, error, applied))

    async def settle(self) -> None:
        """Let every pending watch event reach the informers."""
        for _ in range(3):
            await asyncio.sleep(0)
        while self._pending:
            pending, self._pending = self._pending, []
            for informer, event, key, obj in pending:
                informer.emit(event, key, obj)
            await asyncio.sleep(0)

    # -- the client the controllers see ----------------------------------------------

    @staticmethod
    def _pod_path(namespace: str, name: str) -> str:
        return f"/api/v1/namespaces/{namespace}/pods/{name}"

    def _fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and fault.path_part in path:
                self.faults.remove(fault)
                return fault
        return None

    def _changed(self, path: str, obj: JSON | None, event: str) -> None:
        informer = self.pods if "/pods/" in path else self.nodes
        if obj is not None:
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            key = (
                f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
                if informer is self.pods
                else obj["metadata"]["name"]
            )
        else:
            parts = path.split("/")
            key = f"{parts[4]}/{parts[6]}" if informer is self.pods else parts[-1]
        self._pending.append((informer, event, key, copy.deepcopy(obj)))

    async def _call(self, method: str, path: str, apply: Callable[[], Any]) -> Any:
        self.calls.append((method, path))
        await asyncio.sleep(0)
        fault = self._fault(method, path)
        if fault is not None and not fault.applied:
            raise fault.error
        result = apply()
        if fault is not None:
            raise fault.error  # the change happened; the reply is lost
        return result

    async def get(self, path: str, **_: Any) -> JSON:
        def apply() -> JSON:
            obj = self.objects.get(path)
            if obj is None:
                raise ApiError(404, {"reason": "NotFound", "message": "not found"}, "GET", path)
            return copy.deepcopy(obj)

        result: JSON = await self._call("GET", path, apply)
        return result

    async def patch(self, path: str, body: Any, content_type: str = "") -> JSON:
        def apply() -> JSON:
            target_path = path.removesuffix("/status").removesuffix("/resize")
            obj = self.objects.get(target_path)
            if obj is None:
                raise ApiError(404, {"reason": "NotFound", "message": "not found"}, "PATCH", path)
            uid = (body.get("metadata") or {}).get("uid")
            if uid and uid != obj["metadata"].get("uid"):
                raise ApiError(409, {"reason": "Conflict", "message": "uid"}, "PATCH", path)
            if path.endswith("/status") and "conditions" in (body.get("status") or {}):
                conditions = obj.setdefault("status", {}).setdefault("conditions", [])
                for condition in body["status"]["conditions"]:
                    conditions[:] = [c for c in conditions if c["type"] != condition["type"]]
                    conditions.append(condition)
            else:
                _merge(obj, body)
            self._changed(target_path, obj, "MODIFIED")
            return copy.deepcopy(obj)

        result: JSON = await self._call("PATCH", path, apply)
        return result

    async def create(self, path: str, body: JSON) -> JSON:
        def apply() -> JSON:
            if path.endswith("/events"):
                self.events.append(copy.deepcopy(body))
                return body
            if path.endswith("/binding"):
                pod_path = path.removesuffix("/binding")
                pod = self.objects.get(pod_path)
                if pod is None:
                    raise ApiError(404, {"reason": "NotFound", "message": "gone"}, "POST", path)
                uid = body["metadata"].get("uid")
                if (uid and uid != pod["metadata"]["uid"]) or pod["spec"].get("nodeName"):
                    raise ApiError(409, {"reason": "Conflict", "message": "bound"}, "POST", path)
                pod["spec"]["nodeName"] = body["target"]["name"]
                pod["metadata"].setdefault("annotations", {}).update(
                    body["metadata"].get("annotations") or {}
                )
                self._changed(pod_path, pod, "MODIFIED")
                return {}
            if path.endswith("/pods"):
                pod = copy.deepcopy(body)
                meta = pod["metadata"]
                pod_path = self._pod_path(meta["namespace"], meta["name"])
                if pod_path in self.objects:
                    raise ApiError(409, {"reason": "AlreadyExists", "message": "x"}, "POST", path)
                meta["uid"] = f"uid-{meta['name']}-{next(self._rv)}"
                meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
                self.objects[pod_path] = pod
                self._changed(pod_path, pod, "ADDED")
                return copy.deepcopy(pod)
            raise ApiError(404, {"reason": "NotFound", "message": path}, "POST", path)

        result: JSON = await self._call("POST", path, apply)
        return result

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method != "DELETE":
            raise NotImplementedError(method)

        def apply() -> None:
            obj = self.objects.get(path)
            if obj is None:
                raise ApiError(404, {"reason": "NotFound", "message": "gone"}, "DELETE", path)
            precondition = ((kwargs.get("body") or {}).get("preconditions") or {}).get("uid")
            if precondition and precondition != obj["metadata"]["uid"]:
                raise ApiError(409, {"reason": "Conflict", "message": "uid"}, "DELETE", path)
            del self.objects[path]
            self._changed(path, None, "DELETED")

        return await self._call("DELETE", path, apply)
