#!/usr/bin/env python3
"""A fault-injecting proxy in front of a real kube-apiserver.

    python hack/soak/faultproxy.py --kubeconfig ADMIN_KUBECONFIG [--seed 1] [--rates JSON]

Clients speak plain HTTP to 127.0.0.1 (one listening port per client, a "route",
made through the control API); the proxy forwards to the API server with the
kubeconfig's real credentials (client certificates over TLS) and, at seeded,
configurable rates, injects the faults a production API server and network
produce:

- `error_5xx`: 500 / 503 before the request reaches the API server;
- `throttle_429`: 429 TooManyRequests with Retry-After;
- `slow`: the request waits up to `slow_max_s` before it is forwarded;
- `cut_response`: status and headers sent, the body cut part-way (the request was
  carried out: for a write, the change happened);
- `lost_write` (writes) and `lost_bind` (pods/binding, instead of lost_write): the
  API server applies the write, the client never learns it: the connection is cut
  before any reply, or a 504 Timeout comes back, or the reply hangs until the
  client gives up;
- `watch_cut`: a watch stream is cut after a random time (up to `watch_cut_max_s`);
- `watch_gone`: a watch ends with `ERROR 410 Expired` (at once or after a while),
  as the API server says a resourceVersion is too old.

The control API (its port is printed on stdout as JSON when the proxy is up):

    POST   /routes {"name": n}         -> {"port": p}   a listening port for one client
    DELETE /routes/{n}                 close it; requests it holds are dropped
    POST   /routes/{n}/freeze          hold every request of the route and cut its watches
                                       (a partition); {"path_prefix": p}: only requests
                                       whose path starts with p (one API stalled)
    POST   /routes/{n}/thaw            drop the held requests; let new ones through
    PUT    /faults {rate: value, ...}  replace the fault rates (all zero: a clean proxy)
    POST   /arm {"route", "kind", "after"}  kind plan-write | gang-bind: let `after`
                                       such requests of the route through, then hold
                                       every request of that route (the client is
                                       frozen mid-write, ready to be killed)
    GET    /trigger?timeout=s          wait for an armed trigger to fire
    GET    /stats                      requests and faults injected, by kind
    GET    /binds?since=t              successful bindings: [time, route, pod]

The random draws are seeded: one seed gives one sequence of fault decisions in
the order requests arrive (the order itself depends on timing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

HOP_HEADERS = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "accept-encoding",
    "proxy-connection",
    "te",
    "upgrade",
    "authorization",
}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
PLAN_ANNOTATIONS = ("egpu.io/assigned-node", "egpu.io/plan")
PLAN_MEMORY_S = 120.0


@dataclass
class FaultRates:
    """Probability per request of each fault (a request gets at most one, watch cuts aside)."""

    error_5xx: float = 0.0
    throttle_429: float = 0.0
    slow: float = 0.0
    cut_response: float = 0.0
    lost_write: float = 0.0
    lost_bind: float = 0.0
    watch_cut: float = 0.0
    watch_gone: float = 0.0
    slow_max_s: float = 2.0
    watch_cut_max_s: float = 30.0
    hang_s: float = 35.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRates:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        rates = cls(**{k: float(v) for k, v in data.items()})
        for f in dataclasses.fields(cls):
            value = getattr(rates, f.name)
            if value < 0 or (not f.name.endswith("_s") and value > 1):
                raise ValueError(f"{f.name}={value}: rates are in [0, 1], times >= 0")
        return rates


@dataclass(frozen=True)
class Upstream:
    server: str
    ssl_context: ssl.SSLContext

    @classmethod
    def from_kubeconfig(cls, path: str) -> Upstream:
        config = yaml.safe_load(Path(path).read_text())
        context_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        ctx = ssl.create_default_context(cafile=cluster.get("certificate-authority"))
        if user.get("client-certificate"):
            ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        return cls(server=str(cluster["server"]).rstrip("/"), ssl_context=ctx)


@dataclass
class Request:
    """What the fault decisions look at."""

    method: str
    path: str
    watch: bool
    body: bytes

    @property
    def write(self) -> bool:
        return self.method in WRITES

    @property
    def pod_key(self) -> str | None:
        """namespace/name for /api/v1/namespaces/NS/pods/NAME[/sub]."""
        parts = self.path.strip("/").split("/")
        if len(parts) >= 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            return f"{parts[3]}/{parts[5]}"
        return None

    @property
    def binding(self) -> bool:
        return self.method == "POST" and self.path.rstrip("/").endswith("/binding")

    @property
    def plan_write(self) -> bool:
        """A write of the binder's plan onto a pod (not the clearing of one)."""
        if self.method not in ("PATCH", "PUT") or self.pod_key is None:
            return False
        if self.path.strip("/").count("/") != 5:  # a subresource
            return False
        try:
            annotations = json.loads(self.body or b"{}").get("metadata", {}).get("annotations")
        except (json.JSONDecodeError, AttributeError):
            return False
        if not isinstance(annotations, dict):
            return False
        return any(isinstance(annotations.get(a), str) for a in PLAN_ANNOTATIONS)


@dataclass
class Route:
    name: str
    runner: web.AppRunner
    port: int
    frozen: bool = False
    frozen_prefix: str = ""  # only requests whose path starts with it are held ("": all)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    streams: dict[int, web.Request] = field(default_factory=dict)  # watches being streamed

    def holds(self, path: str) -> bool:
        return self.frozen and path.startswith(self.frozen_prefix)


@dataclass
class Arm:
    route: str
    kind: str
    after: int
    seen: int = 0


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def gone_event() -> bytes:
    status = status_body(410, "Expired", "too old resource version (injected by the soak proxy)")
    return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"


def drop(request: web.Request) -> web.StreamResponse:
    """Cut the client's connection without a reply."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


class FaultProxy:
    def __init__(self, upstream: Upstream, rates: FaultRates, seed: int) -> None:
        self.upstream = upstream
        self.rates = rates
        self.rng = random.Random(seed)
        self.requests: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.routes: dict[str, Route] = {}
        self.binds: list[tuple[float, str, str]] = []
        self.planned: dict[str, float] = {}
        self.arm: Arm | None = None
        self.fired: dict[str, Any] | None = None
        self.fired_event = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.upstream.ssl_context, limit=0),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    # -- routes ----------------------------------------------------------------------

    async def add_route(self, name: str) -> int:
        if name in self.routes:
            raise ValueError(f"route {name} exists")
        app = web.Application(client_max_size=64 * 1024 * 1024)

        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.handle(name, request)

        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        self.routes[name] = Route(name, runner, port)
        return port

    def freeze(self, name: str, prefix: str = "") -> None:
        """Hold the route's requests until `thaw`: all of them, and its watch streams are
        cut (a partitioned client); or only those whose path starts with `prefix` (one
        API stalled, e.g. the Lease's)."""
        route = self.routes[name]
        route.frozen, route.frozen_prefix = True, prefix
        if not prefix:
            for stream in list(route.streams.values()):
                drop(stream)

    def thaw(self, name: str) -> None:
        """Drop the requests the route holds (their connections are cut) and let new ones
        through again."""
        route = self.routes[name]
        route.released.set()
        route.released = asyncio.Event()
        route.frozen, route.frozen_prefix = False, ""

    async def remove_route(self, name: str) -> None:
        route = self.routes.pop(name, None)
        if route is None:
            return
        route.released.set()
        await route.runner.cleanup()

    def arm_trigger(self, route: str, kind: str, after: int) -> None:
        """Let `after` requests of this kind through on the route, then freeze it."""
        if kind not in ("plan-write", "gang-bind"):
            raise ValueError("kind: plan-write or gang-bind")
        self.arm = Arm(route, kind, after)
        self.fired = None
        self.fired_event.clear()

    # -- requests ----------------------------------------------------------------------

    def pick(self, req: Request) -> str | None:
        """At most one fault for this request, by the configured rates."""
        r = self.rates
        choices: list[tuple[str, float]] = [
            ("error_5xx", r.error_5xx),
            ("throttle_429", r.throttle_429),
            ("slow", r.slow),
        ]
        if req.watch:
            choices.append(("watch_gone", r.watch_gone))
        else:
            choices.append(("cut_response", r.cut_response))
            if req.binding:
                choices.append(("lost_bind", r.lost_bind))
            elif req.write:
                choices.append(("lost_write", r.lost_write))
        draw = self.rng.random()
        for name, rate in choices:
            if draw < rate:
                return name
            draw -= rate
        return None

    async def handle(self, route_name: str, request: web.Request) -> web.StreamResponse:
        route = self.routes.get(route_name)
        if route is None:
            return drop(request)
        req = Request(
            method=request.method,
            path=request.path,
            watch=request.query.get("watch") in ("true", "1"),
            body=await request.read(),
        )
        self.requests["watch" if req.watch else req.method] += 1
        if route.holds(req.path) or self._trips_arm(route, req):
            await route.released.wait()
            return drop(request)
        fault = self.pick(req)
        if fault is not None:
            self.injected[fault] += 1
        if fault == "error_5xx":
            code, reason = self.rng.choice([(500, "InternalError"), (503, "ServiceUnavailable")])
            body = status_body(code, reason, "injected by the soak proxy")
            return web.json_response(body, status=code)
        if fault == "throttle_429":
            body = status_body(429, "TooManyRequests", "injected by the soak proxy")
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        if fault == "slow":
            await asyncio.sleep(self.rng.uniform(0.1, self.rates.slow_max_s))
        if fault in ("lost_write", "lost_bind"):
            return await self.lose_reply(route, req, request)
        if req.watch:
            route.streams[id(request)] = request
            try:
                return await self.watch(route, req, request, gone=fault == "watch_gone")
            finally:
                route.streams.pop(id(request), None)
        return await self.forward(route, req, request, cut=fault == "cut_response")

    def _trips_arm(self, route: Route, req: Request) -> bool:
        arm = self.arm
        if arm is None or arm.route != route.name:
            return False
        planned = req.pod_key is not None and req.pod_key in self.planned
        matches = (arm.kind == "plan-write" and req.plan_write) or (
            arm.kind == "gang-bind" and req.binding and planned
        )
        if not matches:
            return False
        arm.seen += 1
        if arm.seen <= arm.after:
            return False
        route.frozen = True
        self.arm = None
        self.fired = {
            "route": route.name,
            "kind": arm.kind,
            "after": arm.after,
            "pod": req.pod_key,
            "at": time.time(),
        }
        self.fired_event.set()
        return True

    def _note(self, route: Route, req: Request, status: int) -> None:
        if status >= 300 or req.pod_key is None:
            return
        now = time.time()
        if req.binding:
            self.binds.append((now, route.name, req.pod_key))
        elif req.plan_write:
            self.planned[req.pod_key] = now
            if len(self.planned) > 10000:
                self.planned = {k: t for k, t in self.planned.items() if now - t < PLAN_MEMORY_S}

    def _upstream(self, req: Request, request: web.Request, **kwargs: Any) -> Any:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        return self.session.request(
            req.method,
            self.upstream.server + request.rel_url.raw_path_qs,
            data=req.body or None,
            headers=headers,
            **kwargs,
        )

    @staticmethod
    def _reply_headers(up: aiohttp.ClientResponse) -> dict[str, str]:
        return {k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS}

    async def forward(
        self, route: Route, req: Request, request: web.Request, cut: bool
    ) -> web.StreamResponse:
        try:
            async with self._upstream(req, request) as up:
                payload = await up.read()
                self._note(route, req, up.status)
                resp = web.StreamResponse(status=up.status, headers=self._reply_headers(up))
                resp.content_length = len(payload)
                await resp.prepare(request)
                if cut:
                    await resp.write(payload[: self.rng.randint(0, max(0, len(payload) - 1))])
                    return drop(request)
                await resp.write(payload)
                await resp.write_eof()
                return resp
        except ConnectionResetError:
            return drop(request)
        except aiohttp.ClientError as exc:
            body = status_body(502, "BadGateway", f"soak proxy: upstream failed: {exc}")
            return web.json_response(body, status=502)

    async def lose_reply(
        self, route: Route, req: Request, request: web.Request
    ) -> web.StreamResponse:
        """The write reaches the API server; its reply does not reach the client."""
        try:
            async with self._upstream(req, request) as up:
                await up.read()
                self._note(route, req, up.status)
        except aiohttp.ClientError:
            return drop(request)
        how = self.rng.choices(["cut", "timeout", "hang"], weights=[5, 3, 2])[0]
        self.injected[f"{'lost_bind' if req.binding else 'lost_write'}:{how}"] += 1
        if how == "timeout":
            body = status_body(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, "
                "but may still be processing the request (injected by the soak proxy)",
            )
            return web.json_response(body, status=504)
        if how == "hang":
            await asyncio.sleep(self.rates.hang_s)
        return drop(request)

    async def watch(
        self, route: Route, req: Request, request: web.Request, gone: bool
    ) -> web.StreamResponse:
        """Stream a watch through, cutting it or ending it with 410 when told to."""
        r = self.rates
        end_with_gone = gone
        gone_after = self.rng.choice([0.0, self.rng.uniform(0.5, r.watch_cut_max_s)])
        cut_after = None
        if not gone and self.rng.random() < r.watch_cut:
            self.injected["watch_cut"] += 1
            cut_after = self.rng.uniform(0.5, r.watch_cut_max_s)
        if end_with_gone and gone_after == 0.0:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(gone_event())
            await resp.write_eof()
            return resp
        deadline = asyncio.get_running_loop().time() + (
            gone_after if end_with_gone else cut_after if cut_after is not None else 1e9
        )
        try:
            async with self._upstream(req, request) as up:
                resp = web.StreamResponse(status=up.status, headers=self._reply_headers(up))
                await resp.prepare(request)
                chunks = up.content.iter_any().__aiter__()
                while True:
                    left = deadline - asyncio.get_running_loop().time()
                    try:
                        chunk = await asyncio.wait_for(chunks.__anext__(), max(0.0, left))
                    except StopAsyncIteration:
                        await resp.write_eof()
                        return resp
                    except TimeoutError:
                        if end_with_gone:
                            await resp.write(gone_event())
                            await resp.write_eof()
                            return resp
                        return drop(request)
                    await resp.write(chunk)
        except ConnectionResetError:  # the client went (or was cut off)
            return drop(request)
        except aiohttp.ClientError as exc:
            body = status_body(502, "BadGateway", f"soak proxy: upstream failed: {exc}")
            return web.json_response(body, status=502)

    # -- control ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "injected": dict(self.injected),
            "binds": len(self.binds),
            "routes": {name: route.port for name, route in self.routes.items()},
        }

    def control_app(self) -> web.Application:
        app = web.Application()

        async def add(request: web.Request) -> web.Response:
            data = await request.json()
            try:
                port = await self.add_route(str(data["name"]))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=409)
            return web.json_response({"port": port})

        async def remove(request: web.Request) -> web.Response:
            await self.remove_route(request.match_info["name"])
            return web.json_response({})

        async def freeze(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in self.routes:
                return web.json_response({"error": f"no route {name}"}, status=404)
            if request.match_info["action"] == "freeze":
                body = await request.json() if request.can_read_body else {}
                self.freeze(name, str(body.get("path_prefix", "")))
            else:
                self.thaw(name)
            return web.json_response({})

        async def faults(request: web.Request) -> web.Response:
            try:
                self.rates = FaultRates.from_json(await request.json())
            except (ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(dataclasses.asdict(self.rates))

        async def arm(request: web.Request) -> web.Response:
            data = await request.json()
            try:
                self.arm_trigger(str(data["route"]), str(data["kind"]), int(data.get("after", 0)))
            except (KeyError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response({})

        async def disarm(_: web.Request) -> web.Response:
            self.arm = None
            return web.json_response({})

        async def trigger(request: web.Request) -> web.Response:
            timeout = float(request.query.get("timeout", "0"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.fired_event.wait(), timeout)
            return web.json_response({"fired": self.fired})

        async def stats(_: web.Request) -> web.Response:
            return web.json_response(self.stats())

        async def binds(request: web.Request) -> web.Response:
            since = float(request.query.get("since", "0"))
            return web.json_response([b for b in self.binds if b[0] >= since])

        app.router.add_post("/routes", add)
        app.router.add_delete("/routes/{name}", remove)
        app.router.add_post("/routes/{name}/{action:freeze|thaw}", freeze)
        app.router.add_put("/faults", faults)
        app.router.add_post("/arm", arm)
        app.router.add_delete("/arm", disarm)
        app.router.add_get("/trigger", trigger)
        app.router.add_get("/stats", stats)
        app.router.add_get("/binds", binds)
        return app

    async def close(self) -> None:
        for name in list(self.routes):
            await self.remove_route(name)
        if self._session is not None:
            await self._session.close()


async def serve(args: argparse.Namespace) -> None:
    rates = FaultRates.from_json(json.loads(args.rates)) if args.rates else FaultRates()
    proxy = FaultProxy(Upstream.from_kubeconfig(args.kubeconfig), rates, args.seed)
    runner = web.AppRunner(proxy.control_app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.control_port)
    await site.start()
    port = int(runner.addresses[0][1])
    print(json.dumps({"control_port": port}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.close()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", required=True, help="the real API server and credentials")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rates", default="", help="JSON object of FaultRates fields")
    p.add_argument("--control-port", type=int, default=0, help="0: any free port")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
