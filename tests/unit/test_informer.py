"""The list+watch cache against a scripted API: it applies watch events in order,
relists whole after 410 Gone, an ERROR event or a broken stream (so nothing missed in
between survives), tells its listeners with RESYNC, and outlives a faulty listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from egpu.kube.client import ApiError, TransportError
from egpu.state.informer import Informer

pytestmark = pytest.mark.unit


def pod(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}


class ScriptedApi:
    """Each LIST returns the next listing; each WATCH plays the next script, a list of
    events, ending with an exception to raise (or None: the server closed it)."""

    def __init__(self, listings: list[list[dict[str, Any]]], watches: list[list[Any]]) -> None:
        self.listings = listings
        self.watches = watches
        self.lists = 0
        self.watched_from: list[str] = []
        self.done = asyncio.Event()

    async def list_all(self, path: str, **_: Any) -> tuple[list[dict[str, Any]], str]:
        items = self.listings[min(self.lists, len(self.listings) - 1)]
        self.lists += 1
        return items, f"list-{self.lists}"

    async def watch(self, path: str, rv: str, **_: Any) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(rv)
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()  # hang like an idle watch
        script = self.watches.pop(0)
        for step in script:
            if isinstance(step, BaseException):
                raise step
            yield step
            await asyncio.sleep(0)


def run_until_done(informer: Informer, api: ScriptedApi) -> None:
    async def go() -> None:
        task = asyncio.create_task(informer.run())
        await asyncio.wait_for(api.done.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())


def test_watch_events_apply_in_order_after_the_list() -> None:
    api = ScriptedApi(
        [[pod("a", "1")]],
        [
            [
                {"type": "ADDED", "object": pod("b", "2")},
                {"type": "MODIFIED", "object": pod("a", "3")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "4"}}},
                {"type": "DELETED", "object": pod("b", "5")},
            ]
        ],
    )
    informer = Informer(api, "/api/v1/pods")  # type: ignore[arg-type]
    seen: list[tuple[str, str | None]] = []
    informer.add_listener(
        lambda e, old, new: seen.append((e, (new or old or {}).get("metadata", {}).get("name")))
    )
    run_until_done(informer, api)
    assert seen == [("RESYNC", None), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert (
        set(informer.store) == {"ns/a"}
        and informer.store["ns/a"]["metadata"]["resourceVersion"] == "3"
    )
    assert api.watched_from[-1] == "5", "the next watch goes on from the last event"


@pytest.mark.parametrize(
    "break_with",
    [
        ApiError(410, {"reason": "Expired", "message": "too old"}, "WATCH", "/api/v1/pods"),
        TransportError("connection cut mid-stream"),
        {"type": "ERROR", "object": {"code": 500, "message": "etcd"}},
    ],
)
def test_any_break_relists_whole_and_says_so(
    break_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_wait)
    # b is deleted while the watch is broken: only a relist can tell.
    api = ScriptedApi(
        [[pod("a", "1"), pod("b", "1")], [pod("a", "9")]],
        [[{"type": "MODIFIED", "object": pod("a", "2")}, break_with]],
    )
    informer = Informer(api, "/api/v1/pods")  # type: ignore[arg-type]
    resyncs: list[str] = []
    informer.add_listener(lambda e, old, new: resyncs.append(e) if e == "RESYNC" else None)
    run_until_done(informer, api)
    assert api.lists == 2 and resyncs == ["RESYNC", "RESYNC"]
    assert set(informer.store) == {"ns/a"}
    assert informer.store["ns/a"]["metadata"]["resourceVersion"] == "9"


_real_sleep = asyncio.sleep


async def _no_wait(delay: float, *args: Any) -> Any:
    return await _real_sleep(0)


def test_a_faulty_listener_does_not_stop_the_cache() -> None:
    api = ScriptedApi([[]], [[{"type": "ADDED", "object": pod("a", "2")}]])
    informer = Informer(api, "/api/v1/pods")  # type: ignore[arg-type]

    def broken(event: str, old: Any, new: Any) -> None:
        raise RuntimeError("listener bug")

    informer.add_listener(broken)
    run_until_done(informer, api)
    assert "ns/a" in informer.store
