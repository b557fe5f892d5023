"""Traffic simulator: offered load in, queueing and latency out, for real replicas.

    python -m egpu.sim.traffic --config sim.json --out results.json --port 9400

Each service of the config gets a trace of offered load. Every tick the simulator
reads how many of the service's serving pods are Ready (a watch on the API server),
advances a fluid queue with them (`egpu.engines.autoscaling.simulate.step`: each
ready replica completes `slots / service_time` requests per second; the rest
waits, FIFO), and publishes what a real deployment would: per ready pod its
concurrency (in service plus queued at it), its queue, and its request counters; per
service the router's arrival rate and the requests waiting while no replica is ready.
It serves them in the Prometheus text format on 127.0.0.1 for a real Prometheus.

At the end (the longest trace, or SIGTERM) it writes what a benchmark compares: the
share of requests served within the latency target, GPU-hours held by the service's
bound pods (warm and starting ones too), the time from each load jump until the
ready replicas could carry the new load, and a one-second timeline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from egpu.engines.autoscaling.simulate import ServiceModel, SimState, step
from egpu.kube.client import JSON, Credentials, KubeClient
from egpu.sim.traces import Trace, trace_from_spec
from egpu.state.informer import Informer

SERVICE_LABEL = "egpu.io/inference-service"
ROLE_LABEL = "egpu.io/role"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class PodView:
    name: str
    serving: bool
    ready: bool
    bound: bool
    gpus: int


def pod_view(pod: JSON) -> PodView:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    gpus = 0
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        amount = (resources.get("limits") or {}).get(GPU_RESOURCE) or (
            resources.get("requests") or {}
        ).get(GPU_RESOURCE)
        gpus += int(str(amount or 0))
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return PodView(
        name=meta["name"],
        serving=(meta.get("labels") or {}).get(ROLE_LABEL, "serving") == "serving",
        ready=ready and not meta.get("deletionTimestamp"),
        bound=bool(spec.get("nodeName")) and status.get("phase") not in ("Succeeded", "Failed"),
        gpus=gpus,
    )


@dataclass
class PodCounters:
    completed: float = 0.0
    busy_seconds: float = 0.0
    latency_seconds: float = 0.0


@dataclass
class ServiceTraffic:
    """One service's offered load, fluid queue and scorecard."""

    namespace: str
    name: str
    trace: Trace
    model: ServiceModel
    latency_target_s: float
    queue: float = 0.0
    offered: float = 0.0  # requests offered so far
    met: float = 0.0  # of which within the latency target
    gpu_seconds: float = 0.0
    under_capacity_s: float = 0.0
    arrival_rps: float = 0.0
    router_queue: float = 0.0
    per_pod: dict[str, tuple[float, float]] = field(default_factory=dict)  # inflight, queue
    counters: dict[str, PodCounters] = field(default_factory=dict)
    capacity_at: dict[int, float] = field(default_factory=dict)  # jump index -> seconds
    timeline: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[int, list[float]] = field(default_factory=dict)  # second -> offered, met
    peak_pods: int = 0

    def advance(self, t: float, dt: float, pods: Iterable[PodView]) -> None:
        """Move the queue on by `dt` seconds from trace time `t` with these pods.

        The scorecard covers the service's own trace only: in a run with a longer trace
        the service keeps its last offered rate afterwards (so its autoscaler sees no
        change), unscored, and its figures cover the same time as the oracle's."""
        pods = list(pods)
        ready = [p for p in pods if p.serving and p.ready]
        offered = self.trace.mean_rate(t, t + dt)
        state = SimState(time=t, serving=(t,) * len(ready), queue=self.queue)
        after, tick = step(state, offered, dt, self.model)
        self.queue = after.queue
        self.arrival_rps = offered
        held = [p for p in pods if p.bound]
        if self.trace.covers(t):
            self._score(t, dt, offered, len(ready), tick.latency_s, held)
        # What the pods and the router would report.
        self.router_queue = self.queue if not ready else 0.0
        self.per_pod = {}
        names = {p.name for p in ready}
        self.counters = {n: c for n, c in self.counters.items() if n in names}
        if ready:
            share = 1.0 / len(ready)
            in_service = tick.served_rps * self.model.service_time_s
            for pod in ready:
                queued = self.queue * share
                self.per_pod[pod.name] = (in_service * share + queued, queued)
                counter = self.counters.setdefault(pod.name, PodCounters())
                done = tick.served_rps * dt * share
                counter.completed += done
                counter.busy_seconds += done * self.model.service_time_s
                counter.latency_seconds += done * min(tick.latency_s, 1e6)

    def _score(
        self,
        t: float,
        dt: float,
        offered: float,
        ready: int,
        latency_s: float,
        held: list[PodView],
    ) -> None:
        capacity = ready * self.model.replica_rps
        arrived = offered * dt
        self.offered += arrived
        second = self.seconds.setdefault(int(t + 1e-9), [0.0, 0.0])
        second[0] += arrived
        if latency_s <= self.latency_target_s:
            self.met += arrived
            second[1] += arrived
        if offered > capacity + 1e-9:
            self.under_capacity_s += dt
        self.gpu_seconds += sum(p.gpus for p in held) * dt
        self.peak_pods = max(self.peak_pods, len(held))
        for i, jump in enumerate(self.trace.jumps):
            if i not in self.capacity_at and t >= jump.at_s and capacity >= jump.to_rps - 1e-9:
                self.capacity_at[i] = t - jump.at_s
        if not self.timeline or t + dt - self.timeline[-1]["t"] >= 1.0 - 1e-9:
            self.timeline.append(
                {
                    "t": round(t + dt, 3),
                    "offered_rps": round(offered, 3),
                    "ready": ready,
                    "pods": len(held),
                    "queue": round(self.queue, 3),
                    "latency_s": round(min(latency_s, 1e6), 3),
                }
            )

    def result(self) -> dict[str, Any]:
        lags = [self.capacity_at.get(i) for i in range(len(self.trace.jumps))]
        return {
            "namespace": self.namespace,
            "name": self.name,
            "trace": self.trace.name,
            "slo_pct": 100.0 * (self.met / self.offered if self.offered else 1.0),
            "gpu_hours": self.gpu_seconds / 3600.0,
            "capacity_lag_s": lags,
            "under_capacity_s": self.under_capacity_s,
            "peak_pods": self.peak_pods,
            "offered_requests": self.offered,
            "timeline": self.timeline,
            # Requests offered and served in time per trace second, for windowed figures.
            "seconds": [
                [second, round(offered, 3), round(met, 3)]
                for second, (offered, met) in sorted(self.seconds.items())
            ],
        }


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


def exposition(services: Iterable[ServiceTraffic]) -> str:
    """The Prometheus text format of every service's router and pod series."""
    services = list(services)
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("egpu_router_arrival_rate", "gauge", "Offered requests per second at the router.")
    for s in services:
        lines.append(
            f"egpu_router_arrival_rate{_labels(namespace=s.namespace, service=s.name)} "
            f"{s.arrival_rps:.6g}"
        )
    family("egpu_router_queue_length", "gauge", "Requests held at the router: no replica ready.")
    for s in services:
        lines.append(
            f"egpu_router_queue_length{_labels(namespace=s.namespace, service=s.name)} "
            f"{s.router_queue:.6g}"
        )
    family("egpu_inflight_requests", "gauge", "Requests at the pod: in service plus queued.")
    for s in services:
        for pod, (inflight, _) in sorted(s.per_pod.items()):
            lbl = _labels(namespace=s.namespace, service=s.name, pod=pod)
            lines.append(f"egpu_inflight_requests{lbl} {inflight:.6g}")
    family("egpu_queue_length", "gauge", "Requests queued at the pod, not yet in service.")
    for s in services:
        for pod, (_, queued) in sorted(s.per_pod.items()):
            lbl = _labels(namespace=s.namespace, service=s.name, pod=pod)
            lines.append(f"egpu_queue_length{lbl} {queued:.6g}")
    family("egpu_request_service_seconds", "summary", "Time in service, queueing excluded.")
    for s in services:
        for pod, c in sorted(s.counters.items()):
            lbl = _labels(namespace=s.namespace, service=s.name, pod=pod)
            lines.append(f"egpu_request_service_seconds_sum{lbl} {c.busy_seconds:.6g}")
            lines.append(f"egpu_request_service_seconds_count{lbl} {c.completed:.6g}")
    family("egpu_request_duration_seconds", "summary", "Request latency, queueing included.")
    for s in services:
        for pod, c in sorted(s.counters.items()):
            lbl = _labels(namespace=s.namespace, service=s.name, pod=pod)
            lines.append(f"egpu_request_duration_seconds_sum{lbl} {c.latency_seconds:.6g}")
            lines.append(f"egpu_request_duration_seconds_count{lbl} {c.completed:.6g}")
    return "\n".join(lines) + "\n"


def service_from_spec(spec: Mapping[str, Any]) -> ServiceTraffic:
    model = ServiceModel(
        service_time_s=float(spec.get("service_time_s", 1.0)),
        slots_per_replica=int(spec.get("slots", 4)),
    )
    return ServiceTraffic(
        namespace=spec["namespace"],
        name=spec["name"],
        trace=trace_from_spec(spec["trace"]),
        model=model,
        latency_target_s=float(spec.get("latency_target_s", 2.0)),
    )


@dataclass
class Simulator:
    services: list[ServiceTraffic]
    pods: Informer
    tick_s: float = 0.25
    started: float = 0.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def pods_of(self, service: ServiceTraffic) -> list[PodView]:
        out = []
        for pod in self.pods.store.values():
            meta = pod["metadata"]
            if meta.get("namespace") != service.namespace:
                continue
            if (meta.get("labels") or {}).get(SERVICE_LABEL) != service.name:
                continue
            out.append(pod_view(pod))
        return out

    async def run(self, duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        self.started = time.time()
        ticks = 0
        while not self.stopping.is_set():
            t = ticks * self.tick_s
            if t >= duration_s:
                return
            for service in self.services:
                service.advance(t, self.tick_s, self.pods_of(service))
            ticks += 1
            # Keep to the wall clock: a slow tick does not stretch the trace.
            delay = begin + ticks * self.tick_s - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)


async def serve(config: Mapping[str, Any], out: Path, port: int, kubeconfig: str | None) -> int:
    services = [service_from_spec(s) for s in config["services"]]
    client = KubeClient(Credentials.load(kubeconfig))
    pods = Informer(client, "/api/v1/pods", label_selector=SERVICE_LABEL, name="sim-pods")
    sim = Simulator(services, pods, tick_s=float(config.get("tick_s", 0.25)))
    watch = asyncio.create_task(pods.run())
    app = web.Application()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=exposition(sim.services), content_type="text/plain")

    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sim.stopping.set)
    try:
        await asyncio.wait_for(pods.synced.wait(), 60)
        start_at = config.get("start_at")
        if start_at is not None:
            await asyncio.sleep(max(0.0, float(start_at) - time.time()))
        duration = float(
            config.get("duration_s") or max(s.trace.duration_s for s in services) or math.inf
        )
        print(json.dumps({"event": "started", "time": time.time()}), flush=True)
        await sim.run(duration)
    finally:
        results = {"started": sim.started, "services": [s.result() for s in services]}
        write_results(out, results)
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await runner.cleanup()
        await client.close()
    return 0


def write_results(out: Path, results: Mapping[str, Any]) -> None:
    out.write_text(json.dumps(results, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="JSON: services with their traces")
    parser.add_argument("--out", required=True, help="where the results JSON goes")
    parser.add_argument("--port", type=int, required=True, help="metrics port on 127.0.0.1")
    parser.add_argument("--kubeconfig", default=None)
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    return asyncio.run(serve(config, Path(args.out), args.port, args.kubeconfig))


if __name__ == "__main__":
    sys.exit(main())
