"""Container CPU and memory use, read the way the resize loop consumes it.

One interface, `UsageReader`: asked about some pods, a source answers with the latest
sample of each of their containers, keyed by (namespace, pod, container). Sources:

- `AnnotationUsageReader`: the simulation's stand-in for the metrics API. Simulated
  containers "use" what their pod's `egpu.io/sim-usage` annotation says (see
  `egpu.sim.usage`); it is read from the pod cache, so a change reaches the loop with
  the pod's watch event. This is the source the tests and the benchmark use.
- `MetricsApiUsageReader`: `metrics.k8s.io/v1beta1` PodMetrics (metrics-server).
- `PrometheusUsageReader`: cAdvisor's series through Prometheus's HTTP API, with CPU
  throttling, which metrics-server does not report.
- `KubeletUsageReader`: each node's kubelet resource metrics (`/metrics/resource`)
  through the API server's nodes/proxy subresource; no metrics add-on needed.
- `AutoUsageReader` (the default): pods on simulated (KWOK) nodes from their
  annotation, pods on real nodes from their kubelet.

The two real sources are unit-tested against recorded answers only; no test here runs
metrics-server or Prometheus.

`UsageHistory` keeps a bounded window of samples per container for the engine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import aiohttp

from egpu.domain.kubelet_metrics import CpuCounter, cpu_millicores, parse_resource_metrics
from egpu.domain.quantity import parse_quantity
from egpu.engines.resize import UsageSample
from egpu.kube.client import JSON, KubeClient

log = logging.getLogger("egpu.state.usage")

USAGE_ANNOTATION = "egpu.io/sim-usage"
"""JSON {container: {"cpu": quantity, "memory": quantity, "throttled": 0..1}}."""

PodRef = tuple[str, str]
"""(namespace, pod name)."""
ContainerRef = tuple[str, str, str]
"""(namespace, pod name, container name)."""


class UsageReader(Protocol):
    async def read(self, pods: Collection[PodRef], now: float) -> dict[ContainerRef, UsageSample]:
        """The latest sample of every container of `pods` the source knows about.
        Containers without data are left out; `now` stamps samples whose source has no
        time of its own."""
        ...


@runtime_checkable
class PacedReader(Protocol):
    """A source with a schedule of its own (the kubelet reader's per-node scrapes): the
    loop reads it again as soon as something new can be there, not a poll later."""

    def next_read_at(self) -> float | None:
        """When the next read can bring something new (the clock of `read`'s `now`);
        None when the source has nothing scheduled."""
        ...


# --- the simulation's source: pod annotations ----------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    cpu_millicores: float
    memory_bytes: float
    throttled: float | None = None


def parse_usage_annotation(text: str) -> dict[str, ContainerUsage]:
    """`{"main": {"cpu": "1500m", "memory": "3Gi"}}` -> per container use.
    Raises ValueError on anything else, naming what is wrong."""
    return dict(_parse_usage_cached(text))


@functools.lru_cache(maxsize=4096)
def _parse_usage_cached(text: str) -> tuple[tuple[str, ContainerUsage], ...]:
    """Polled every half second for every pod, mostly unchanged: parse each text once."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{USAGE_ANNOTATION} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{USAGE_ANNOTATION} must be an object of containers")
    out: dict[str, ContainerUsage] = {}
    for container, use in raw.items():
        if not isinstance(use, dict):
            raise ValueError(f"{USAGE_ANNOTATION}[{container!r}] must be an object")
        throttled = use.get("throttled")
        if throttled is not None and not (
            isinstance(throttled, int | float) and 0 <= throttled <= 1
        ):
            raise ValueError(f"{USAGE_ANNOTATION}[{container!r}].throttled must be in [0, 1]")
        out[str(container)] = ContainerUsage(
            cpu_millicores=float(parse_quantity(use.get("cpu", 0)) * 1000),
            memory_bytes=float(parse_quantity(use.get("memory", 0))),
            throttled=None if throttled is None else float(throttled),
        )
    return tuple(out.items())


class AnnotationUsageReader:
    """Reads `egpu.io/sim-usage` from the pod cache (a dict "namespace/name" -> pod)."""

    def __init__(self, pods: Mapping[str, JSON]) -> None:
        self.pods = pods
        self._bad: dict[PodRef, str] = {}  # warn once per distinct bad value

    async def read(self, pods: Collection[PodRef], now: float) -> dict[ContainerRef, UsageSample]:
        out: dict[ContainerRef, UsageSample] = {}
        for namespace, name in pods:
            pod = self.pods.get(f"{namespace}/{name}")
            text = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(USAGE_ANNOTATION)
            if text is None:
                continue
            try:
                usage = parse_usage_annotation(text)
            except ValueError as exc:
                if self._bad.get((namespace, name)) != text:
                    self._bad[(namespace, name)] = text
                    log.warning("pod %s/%s: %s", namespace, name, exc)
                continue
            for container, use in usage.items():
                out[(namespace, name, container)] = UsageSample(
                    now, use.cpu_millicores, use.memory_bytes, use.throttled
                )
        return out


# --- metrics.k8s.io (metrics-server) --------------------------------------------------

METRICS_API_PODS = "/apis/metrics.k8s.io/v1beta1/pods"


def _timestamp(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return default


def samples_from_pod_metrics(
    items: Iterable[JSON], wanted: Collection[PodRef], now: float
) -> dict[ContainerRef, UsageSample]:
    """PodMetrics objects -> samples of the wanted pods' containers."""
    wanted_set = set(wanted)
    out: dict[ContainerRef, UsageSample] = {}
    for item in items:
        meta = item.get("metadata") or {}
        ref = (meta.get("namespace", ""), meta.get("name", ""))
        if ref not in wanted_set:
            continue
        at = _timestamp(item.get("timestamp"), now)
        for container in item.get("containers") or []:
            usage = container.get("usage") or {}
            try:
                cpu = float(parse_quantity(usage.get("cpu", 0)) * 1000)
                memory = float(parse_quantity(usage.get("memory", 0)))
            except ValueError:
                continue
            out[(*ref, container.get("name", ""))] = UsageSample(at, cpu, memory)
    return out


class MetricsApiUsageReader:
    """One cluster-wide LIST of PodMetrics per `min_interval_s` (metrics-server itself
    refreshes every 15 s or so; asking more often buys nothing)."""

    def __init__(self, client: KubeClient, min_interval_s: float = 5.0) -> None:
        self.client = client
        self.min_interval_s = min_interval_s
        self._items: list[JSON] = []
        self._fetched_at = float("-inf")

    async def read(self, pods: Collection[PodRef], now: float) -> dict[ContainerRef, UsageSample]:
        if now - self._fetched_at >= self.min_interval_s:
            self._items = (await self.client.get(METRICS_API_PODS)).get("items") or []
            self._fetched_at = now
        return samples_from_pod_metrics(self._items, pods, now)


# --- the kubelet's resource metrics, through nodes/proxy ------------------------------

SIMULATED_NODE_ANNOTATION = "kwok.x-k8s.io/node"
"""Carried by the simulated (KWOK) nodes; their pods run nowhere and have no real usage."""


def kubelet_metrics_path(node: str) -> str:
    return f"/api/v1/nodes/{node}/proxy/metrics/resource"


def _node_of(pods: Mapping[str, JSON], ref: PodRef) -> str | None:
    pod = pods.get(f"{ref[0]}/{ref[1]}") or {}
    return (pod.get("spec") or {}).get("nodeName") or None


SCRAPE_CONCURRENCY = 16
"""Kubelets read at once: one slow node must not hold the others' news back."""


class KubeletUsageReader:
    """Scrapes the kubelet of every node that runs an asked-for pod, each node at most
    once per `min_interval_s`, the due nodes at once. CPU use is the counter's mean rate
    between two kubelet readings, so a container has no sample until its second
    reading; a scrape that brings the kubelet's same (cached) reading again gives the
    same sample again. `next_read_at`: when the first of the nodes asked about is due
    again."""

    def __init__(
        self, client: KubeClient, pods: Mapping[str, JSON], min_interval_s: float = 1.0
    ) -> None:
        self.client = client
        self.pods = pods
        self.min_interval_s = min_interval_s
        self._scraped_at: dict[str, float] = {}
        self._asked_nodes: set[str] = set()
        self._counters: dict[ContainerRef, CpuCounter] = {}
        self._latest: dict[ContainerRef, UsageSample] = {}
        self._gate = asyncio.Semaphore(SCRAPE_CONCURRENCY)

    def next_read_at(self) -> float | None:
        return min(map(self._due, self._asked_nodes), default=None)

    def _due(self, node: str) -> float:
        return self._scraped_at[node] + self.min_interval_s

    async def read(self, pods: Collection[PodRef], now: float) -> dict[ContainerRef, UsageSample]:
        by_node: dict[str, set[PodRef]] = {}
        for ref in pods:
            node = _node_of(self.pods, ref)
            if node is not None:
                by_node.setdefault(node, set()).add(ref)
        due = [
            node
            for node in by_node
            if now - self._scraped_at.get(node, float("-inf")) >= self.min_interval_s
        ]
        for node in due:
            self._scraped_at[node] = now
        # A node stops setting the pace when a read at or after its due time leaves it
        # out (its pods are gone); the loop reads every member when a node is due.
        for node in [n for n in self._asked_nodes - by_node.keys() if self._due(n) <= now]:
            self._asked_nodes.discard(node)
            del self._scraped_at[node]
        self._asked_nodes |= by_node.keys()
        texts = await asyncio.gather(*(self._scrape(node) for node in due))
        for text in texts:
            if text is not None:
                self._take(text, now)
        if any(t is not None for t in texts):  # once per read, not once per node
            self._drop_gone()
        wanted = set(pods)
        return {ref: s for ref, s in self._latest.items() if (ref[0], ref[1]) in wanted}

    async def _scrape(self, node: str) -> str | None:
        async with self._gate:
            try:
                return await self.client.get_text(kubelet_metrics_path(node))
            except Exception as exc:  # one unreachable kubelet must not hide the others
                log.warning("node %s: reading the kubelet's metrics failed: %r", node, exc)
                return None

    def _drop_gone(self) -> None:
        """Forget the containers of pods that left the cache, so the tables stay bounded."""
        for table in (self._counters, self._latest):
            for ref in [r for r in table if f"{r[0]}/{r[1]}" not in self.pods]:
                del table[ref]

    def _take(self, text: str, now: float) -> None:
        for ref, reading in parse_resource_metrics(text).items():
            if reading.cpu_seconds is None or reading.memory_bytes is None:
                continue
            at = reading.at if reading.at is not None else now
            current = CpuCounter(reading.cpu_seconds, at)
            previous = self._counters.get(ref)
            if previous is not None and previous.at == at:
                continue  # the kubelet's cached reading again: nothing new
            self._counters[ref] = current
            cpu = cpu_millicores(previous, current)
            if cpu is not None:
                self._latest[ref] = UsageSample(at, cpu, reading.memory_bytes)


class AutoUsageReader:
    """Pods on simulated nodes (`kwok.x-k8s.io/node`) from their annotation, every
    other pod from its node's kubelet. A pod not yet on a node has no usage."""

    def __init__(
        self,
        nodes: Mapping[str, JSON],
        pods: Mapping[str, JSON],
        simulated: UsageReader,
        real: UsageReader,
    ) -> None:
        self.nodes = nodes
        self.pods = pods
        self.simulated = simulated
        self.real = real

    def is_simulated(self, node: str) -> bool:
        annotations = ((self.nodes.get(node) or {}).get("metadata") or {}).get("annotations")
        return SIMULATED_NODE_ANNOTATION in (annotations or {})

    async def read(self, pods: Collection[PodRef], now: float) -> dict[ContainerRef, UsageSample]:
        simulated: list[PodRef] = []
        real: list[PodRef] = []
        for ref in pods:
            node = _node_of(self.pods, ref)
            if node is not None:
                (simulated if self.is_simulated(node) else real).append(ref)
        out = await self.simulated.read(simulated, now) if simulated else {}
        if real:
            out.update(await self.real.read(real, now))
        return out

    def next_read_at(self) -> float | None:
        due = [r.next_read_at() for r in (self.simulated, self.real) if isinstance(r, PacedReader)]
        return min((d for d in due if d is not None), default=None)


# --- Prometheus (cAdvisor series) -----------------------------------------------------

_CONTAINERS = 'container!="",container!="POD"'
PROMETHEUS_QUERIES = {
    "cpu": (
        f"sum by (namespace, pod, container) "
        f"(rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}[1m]))"
    ),
    "memory": (
        f"max by (namespace, pod, container) (container_memory_working_set_bytes{{{_CONTAINERS}}})"
    ),
    "throttled": (
        f"sum by (namespace, pod, container) "
        f"(rate(container_cpu_cfs_throttled_periods_total{{{_CONTAINERS}}}[1m])) / "
        f"sum by (namespace, pod, container) "
        f"(rate(container_cpu_cfs_periods_total{{{_CONTAINERS}}}[1m]))"
    ),
}


def _vector(result: JSON) -> dict[ContainerRef, tuple[float, float]]:
    """An instant-vector answer -> {(ns, pod, container): (timestamp, value)}."""
    out: dict[ContainerRef, tuple[float, float]] = {}
    for series in (result.get("data") or {}).get("result") or []:
        labels = series.get("metric") or {}
        try:
            at, value = series["value"]
            number = float(value)
        except (KeyError, TypeError, ValueError):
            continue
        if number != number:  # NaN: 0/0 throttling of an idle container
            continue
        key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
        out[key] = (float(at), number)
    return out


def samples_from_prometheus(
    answers: Mapping[str, JSON], wanted: Collection[PodRef]
) -> dict[ContainerRef, UsageSample]:
    """Answers to PROMETHEUS_QUERIES -> samples; a container needs cpu and memory."""
    cpu, memory, throttled = (_vector(answers.get(k) or {}) for k in ("cpu", "memory", "throttled"))
    wanted_set = set(wanted)
    out: dict[ContainerRef, UsageSample] = {}
    for key, (at, cores) in cpu.items():
        if key[:2] not in wanted_set or key not in memory:
            continue
        fraction = throttled.get(key)
        out[key] = UsageSample(
            at=at,
            cpu_millicores=cores * 1000,
            memory_bytes=memory[key][1],
            cpu_throttled_fraction=None if fraction is None else min(1.0, max(0.0, fraction[1])),
        )
    return out


class PrometheusUsageReader:
    """Three instant queries per `min_interval_s` against Prometheus's /api/v1/query."""

    def __init__(
        self,
        base_url: str,
        min_interval_s: float = 5.0,
        session_factory: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.min_interval_s = min_interval_s
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._answers: dict[str, JSON] = {}
        self._fetched_at = float("-inf")

    async def _query(self, session: aiohttp.ClientSession, promql: str) -> JSON:
        async with session.get(
            f"{self.base_url}/api/v1/query",
            params={"query": promql},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            resp.raise_for_status()
            body: Any = await resp.json()
        if not isinstance(body, dict) or body.get("status") != "success":
            raise RuntimeError(f"Prometheus query failed: {str(body)[:200]}")
        return body

    async def read(self, pods: Collection[PodRef], now: float) -> dict[ContainerRef, UsageSample]:
        if now - self._fetched_at >= self.min_interval_s:
            if self._session is None or self._session.closed:
                self._session = self._session_factory()
            self._answers = {
                name: await self._query(self._session, promql)
                for name, promql in PROMETHEUS_QUERIES.items()
            }
            self._fetched_at = now
        return samples_from_prometheus(self._answers, pods)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# --- history ---------------------------------------------------------------------------


class UsageHistory:
    """A window of samples per container, bounded in time and in count.

    A sample is kept when its values differ from the last kept one, or when the last
    kept one is `refresh_s` old; a source polled every half second thus costs a
    sample per `refresh_s` while nothing changes, and a change is kept at once.
    """

    def __init__(self, keep_s: float, refresh_s: float = 5.0) -> None:
        if keep_s <= 0 or refresh_s <= 0:
            raise ValueError("keep_s and refresh_s must be positive")
        self.keep_s = keep_s
        self.refresh_s = refresh_s
        self._samples: dict[ContainerRef, deque[UsageSample]] = {}

    def record(self, key: ContainerRef, sample: UsageSample) -> bool:
        """Keep `sample` if it says something new; True when its values changed."""
        window = self._samples.setdefault(key, deque())
        if not window:
            window.append(sample)
            return True
        last = window[-1]
        if sample.at <= last.at:
            return False  # the same scrape again, or one out of order
        changed = (last.cpu_millicores, last.memory_bytes, last.cpu_throttled_fraction) != (
            sample.cpu_millicores,
            sample.memory_bytes,
            sample.cpu_throttled_fraction,
        )
        if changed or sample.at - last.at >= self.refresh_s:
            window.append(sample)
        # Keep one sample older than the window: it proves the window is covered.
        while len(window) > 1 and window[1].at <= sample.at - self.keep_s:
            window.popleft()
        return changed

    def samples(self, key: ContainerRef) -> tuple[UsageSample, ...]:
        return tuple(self._samples.get(key, ()))

    def keep_only(self, live: Collection[ContainerRef]) -> None:
        """Forget containers that are gone."""
        for key in [k for k in self._samples if k not in live]:
            del self._samples[key]

    def __len__(self) -> int:
        return len(self._samples)
