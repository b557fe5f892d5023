"""The soak's fault proxy, each fault in turn, in front of a small local HTTP server
that records what reached it (the soak itself runs it in front of the real API server)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from soak.faultproxy import FaultProxy, FaultRates, Request, Upstream

pytestmark = pytest.mark.unit

PLAN = {"metadata": {"annotations": {"egpu.io/assigned-node": "n1", "egpu.io/gpu-ids": "0"}}}


class Backend:
    """An upstream that answers every request with JSON and remembers it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs))
        if request.query.get("watch") == "true":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            for i in range(1000):
                event = {"type": "ADDED", "object": {"metadata": {"name": f"p{i}"}}}
                await resp.write(json.dumps(event).encode() + b"\n")
                await asyncio.sleep(0.01)
            return resp
        return web.json_response({"kind": "Pod", "path": request.path, "pad": "x" * 2000})


Scenario = Callable[[FaultProxy, str, Backend], Awaitable[None]]


def run(rates: FaultRates, scenario: Scenario, seed: int = 7) -> None:
    async def main() -> None:
        backend = Backend()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", backend.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        upstream_port = runner.addresses[0][1]
        import ssl

        proxy = FaultProxy(
            Upstream(f"http://127.0.0.1:{upstream_port}", ssl.create_default_context()),
            rates,
            seed,
        )
        port = await proxy.add_route("op-1")
        try:
            await scenario(proxy, f"http://127.0.0.1:{port}", backend)
        finally:
            await proxy.close()
            await runner.cleanup()

    asyncio.run(main())


async def call(method: str, url: str, body: Any = None, timeout: float = 5) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def test_a_clean_proxy_forwards_requests_and_counts_them() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        status, body = await call("GET", url + "/api/v1/pods?limit=5")
        assert status == 200 and body["path"] == "/api/v1/pods"
        status, _ = await call("POST", url + "/api/v1/namespaces/a/pods", {"kind": "Pod"})
        assert status == 200
        assert backend.seen == [
            ("GET", "/api/v1/pods?limit=5"),
            ("POST", "/api/v1/namespaces/a/pods"),
        ]
        assert proxy.stats()["requests"] == {"GET": 1, "POST": 1}
        assert proxy.stats()["injected"] == {}

    run(FaultRates(), scenario)


def test_5xx_and_429_are_answered_by_the_proxy_and_never_reach_the_server() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        for _ in range(5):
            status, body = await call("GET", url + "/api/v1/nodes")
            assert status in (500, 503) and body["kind"] == "Status" and body["code"] == status
        assert backend.seen == []
        assert proxy.injected["error_5xx"] == 5

    run(FaultRates(error_5xx=1), scenario)

    async def throttled(proxy: FaultProxy, url: str, backend: Backend) -> None:
        async with aiohttp.ClientSession() as session, session.get(url + "/api/v1/nodes") as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert backend.seen == [] and proxy.injected["throttle_429"] == 1

    run(FaultRates(throttle_429=1), throttled)


def test_a_cut_response_reaches_the_server_and_breaks_the_body() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        with pytest.raises(aiohttp.ClientPayloadError):
            await call("PATCH", url + "/api/v1/namespaces/a/pods/p", {"metadata": {}})
        assert backend.seen == [("PATCH", "/api/v1/namespaces/a/pods/p")]
        assert proxy.injected["cut_response"] == 1

    run(FaultRates(cut_response=1), scenario)


def test_a_lost_bind_is_applied_and_its_reply_lost_and_logged_as_a_bind() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        outcomes = set()
        for i in range(12):
            try:
                status, _ = await call("POST", url + f"/api/v1/namespaces/a/pods/p{i}/binding", {})
                outcomes.add(status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcomes.add(type(exc).__name__)
        assert len(backend.seen) == 12  # every one was carried out
        assert 200 not in outcomes and outcomes & {504, "ServerDisconnectedError"}
        assert [b[2] for b in proxy.binds] == [f"a/p{i}" for i in range(12)]
        kinds = {k for k in proxy.injected if k.startswith("lost_bind:")}
        assert proxy.injected["lost_bind"] == 12 and kinds

    run(FaultRates(lost_bind=1, hang_s=0.05), scenario)


def test_reads_and_other_writes_are_not_lost_at_the_bind_rate() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        assert (await call("GET", url + "/api/v1/namespaces/a/pods/p"))[0] == 200
        assert (await call("PATCH", url + "/api/v1/namespaces/a/pods/p", PLAN))[0] == 200
        assert proxy.injected == {}

    run(FaultRates(lost_bind=1), scenario)


async def read_watch(url: str) -> tuple[list[dict[str, Any]], str | None]:
    events: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/api/v1/pods?watch=true&resourceVersion=5") as resp,
    ):
        try:
            async for line in resp.content:
                events.append(json.loads(line))
        except aiohttp.ClientPayloadError as exc:
            return events, type(exc).__name__
    return events, None


def test_watch_gone_ends_the_stream_with_410_expired() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        for _ in range(4):
            events, error = await read_watch(url)
            assert error is None
            assert events[-1]["type"] == "ERROR" and events[-1]["object"]["code"] == 410
            assert all(e["type"] == "ADDED" for e in events[:-1])
        assert proxy.injected["watch_gone"] == 4

    run(FaultRates(watch_gone=1, watch_cut_max_s=0.3), scenario)


def test_watch_cut_breaks_the_stream_after_some_events() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        events, error = await read_watch(url)
        assert error is not None and len(events) < 1000
        assert proxy.injected["watch_cut"] == 1

    run(FaultRates(watch_cut=1, watch_cut_max_s=0.6), scenario)


def test_an_armed_plan_write_freezes_the_route_until_it_is_closed() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        proxy.arm_trigger("op-1", "plan-write", after=1)
        first = await call("PATCH", url + "/api/v1/namespaces/a/pods/p0", PLAN)
        assert first[0] == 200
        held = [
            asyncio.create_task(call("PATCH", url + f"/api/v1/namespaces/a/pods/p{i}", PLAN))
            for i in (1, 2)
        ]
        await asyncio.wait_for(proxy.fired_event.wait(), 2)
        assert proxy.fired is not None and proxy.fired["pod"] in ("a/p1", "a/p2")
        # A read on the frozen route waits as well: the client is stopped mid-write.
        held.append(asyncio.create_task(call("GET", url + "/api/v1/pods")))
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in held)
        await proxy.remove_route("op-1")
        for task in held:
            with pytest.raises((aiohttp.ClientError, TimeoutError)):
                await task
        assert backend.seen == [("PATCH", "/api/v1/namespaces/a/pods/p0")]

    run(FaultRates(), scenario)


def test_a_gang_bind_arm_fires_on_bindings_of_planned_pods_only() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        await call("PATCH", url + "/api/v1/namespaces/a/pods/g0", PLAN)
        await call("PATCH", url + "/api/v1/namespaces/a/pods/g1", PLAN)
        proxy.arm_trigger("op-1", "gang-bind", after=1)
        assert (await call("POST", url + "/api/v1/namespaces/a/pods/lone/binding", {}))[0] == 200
        assert (await call("POST", url + "/api/v1/namespaces/a/pods/g0/binding", {}))[0] == 200
        assert proxy.fired is None
        task = asyncio.create_task(call("POST", url + "/api/v1/namespaces/a/pods/g1/binding", {}))
        await asyncio.wait_for(proxy.fired_event.wait(), 2)
        assert proxy.fired is not None and proxy.fired["pod"] == "a/g1"
        await proxy.remove_route("op-1")
        with pytest.raises((aiohttp.ClientError, TimeoutError)):
            await task
        assert [b[2] for b in proxy.binds] == ["a/lone", "a/g0"]

    run(FaultRates(), scenario)


def test_one_seed_gives_one_sequence_of_decisions() -> None:
    rates = FaultRates(error_5xx=0.1, throttle_429=0.1, slow=0.1, cut_response=0.1, lost_write=0.1)
    req = Request("PATCH", "/api/v1/namespaces/a/pods/p", watch=False, body=b"{}")

    def decisions(seed: int) -> list[str | None]:
        proxy = FaultProxy(Upstream("http://127.0.0.1:1", None), rates, seed)  # type: ignore[arg-type]
        return [proxy.pick(req) for _ in range(200)]

    assert decisions(3) == decisions(3)
    assert decisions(3) != decisions(4)
    assert {d for d in decisions(3)} == {
        None,
        "error_5xx",
        "throttle_429",
        "slow",
        "cut_response",
        "lost_write",
    }


def test_plan_writes_are_told_from_plan_clears_and_other_patches() -> None:
    def req(body: Any, path: str = "/api/v1/namespaces/a/pods/p") -> Request:
        return Request("PATCH", path, watch=False, body=json.dumps(body).encode())

    assert req(PLAN).plan_write
    assert req({"metadata": {"annotations": {"egpu.io/plan": "{}"}}}).plan_write
    assert not req({"metadata": {"annotations": {"egpu.io/assigned-node": None}}}).plan_write
    assert not req({"metadata": {"labels": {"a": "b"}}}).plan_write
    assert not req(PLAN, "/api/v1/namespaces/a/pods/p/status").plan_write
    assert req(PLAN).pod_key == "a/p"


def test_fault_settings_are_checked() -> None:
    assert FaultRates.from_json({"error_5xx": 0.5, "hang_s": 40}).hang_s == 40
    with pytest.raises(ValueError, match="unknown"):
        FaultRates.from_json({"errors": 0.1})
    with pytest.raises(ValueError, match="rates are in"):
        FaultRates.from_json({"slow": 2})


def test_a_frozen_route_holds_requests_and_a_thaw_drops_them() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        proxy.freeze("op-1")
        held = asyncio.create_task(call("POST", url + "/api/v1/namespaces/a/pods/p/binding", {}))
        await asyncio.sleep(0.2)
        assert not held.done() and backend.seen == []
        proxy.thaw("op-1")
        with pytest.raises((aiohttp.ClientError, TimeoutError)):
            await held
        assert (await call("GET", url + "/api/v1/pods"))[0] == 200  # through again
        assert backend.seen == [("GET", "/api/v1/pods")] and proxy.binds == []

    run(FaultRates(), scenario)


def test_a_partition_cuts_running_watches_and_a_stall_holds_one_api_only() -> None:
    async def scenario(proxy: FaultProxy, url: str, backend: Backend) -> None:
        watch = asyncio.create_task(read_watch(url))
        await asyncio.sleep(0.3)
        proxy.freeze("op-1")
        events, error = await asyncio.wait_for(watch, 2)
        assert error is not None and 0 < len(events) < 1000
        proxy.thaw("op-1")
        proxy.freeze("op-1", "/apis/coordination.k8s.io/")
        # A POST: aiohttp sends an idempotent request (a PUT) again by itself when the
        # connection drops, and the proxy would let that one through.
        lease = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
        stalled = asyncio.create_task(call("POST", url + lease, {}))
        assert (await call("GET", url + "/api/v1/pods"))[0] == 200
        await asyncio.sleep(0.2)
        assert not stalled.done()
        proxy.thaw("op-1")
        with pytest.raises((aiohttp.ClientError, TimeoutError)):
            await stalled
        assert ("POST", lease) not in backend.seen

    run(FaultRates(), scenario)
