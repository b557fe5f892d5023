"""Metrics readers for the autoscaler: a Prometheus query, or the pods' own endpoints.

A reader turns the service's signal into one `Reading` per scrape; the controller
stamps it into a `MetricSample` and keeps a window of them for `decide`. Readers
raise `MetricsUnavailableError` when they cannot tell: the engine then holds its replica
count (it never scales down, or to zero, on missing data).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from egpu.api.inference import DEFAULT_POD_METRIC_NAMES
from egpu.engines.autoscaling import (
    MetricKind,
    MetricSample,
    MetricWindow,
    ServiceStats,
)

JSON = dict[str, Any]

# The summary a pod may export for the LatencySLO queueing model: time in service,
# queueing excluded (its _sum / _count is the mean service time).
SERVICE_TIME_METRIC = "egpu_request_service_seconds"
QUEUE_METRIC = "egpu_queue_length"


class MetricsUnavailableError(Exception):
    """The signal could not be read this time."""


@dataclass(frozen=True)
class Reading:
    """One scrape of the service-wide signal, in the units `MetricSample` wants."""

    value: float
    arrival_rate: float | None = None
    queued: float | None = None
    service: ServiceStats | None = None


class MetricsReader(Protocol):
    async def read(self, pods: Sequence[JSON], now: float) -> Reading: ...


def combine(metric: MetricKind, signal: float, queued: float | None) -> Reading:
    """A reading from the metric's value and the requests waiting in front of it.

    Requests waiting count as concurrency and queue length (they are demand the
    replicas did not take yet); for the other kinds they stay a separate wake signal.
    For LatencySLO the signal is the arrival rate.
    """
    waiting = max(0.0, queued) if queued is not None else None
    if metric is MetricKind.LATENCY_SLO:
        return Reading(value=signal, arrival_rate=signal, queued=waiting)
    if metric in (MetricKind.CONCURRENCY, MetricKind.QUEUE_LENGTH) and waiting:
        return Reading(value=signal + waiting, queued=waiting)
    return Reading(value=signal, queued=waiting)


# --- Prometheus ---------------------------------------------------------------------


def prometheus_number(payload: Mapping[str, Any]) -> float:
    """The number a query API answer holds: a scalar, or a vector summed (empty = 0)."""
    if payload.get("status") != "success":
        raise MetricsUnavailableError(
            f"prometheus: {payload.get('error') or payload.get('status')}"
        )
    data = payload.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "scalar":
            values = [float(result[1])]  # type: ignore[index]
        elif kind == "vector":
            values = [float(item["value"][1]) for item in result or []]
        else:
            raise MetricsUnavailableError(f"prometheus: a {kind} result is not one number")
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise MetricsUnavailableError(f"prometheus: unreadable result: {exc}") from None
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite)


@dataclass
class PrometheusReader:
    """The service-wide value from a PromQL instant query (and, optionally, the queue)."""

    session: aiohttp.ClientSession
    url: str
    query: str
    metric: MetricKind
    queued_query: str | None = None
    service: ServiceStats | None = None
    timeout_s: float = 2.0

    async def _query(self, promql: str) -> float:
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        try:
            async with self.session.get(
                endpoint,
                params={"query": promql},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MetricsUnavailableError(f"prometheus at {self.url}: {exc!r}") from None
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            raise MetricsUnavailableError(f"prometheus: HTTP {resp.status}: {text[:200]}") from None
        return prometheus_number(payload)

    async def read(self, pods: Sequence[JSON], now: float) -> Reading:
        if self.queued_query:
            signal, queued = await asyncio.gather(
                self._query(self.query), self._query(self.queued_query)
            )
        else:
            signal, queued = await self._query(self.query), None
        reading = combine(self.metric, signal, queued)
        return Reading(reading.value, reading.arrival_rate, reading.queued, self.service)


# --- the pods' own endpoints --------------------------------------------------------


def parse_samples(text: str) -> dict[str, float]:
    """Prometheus text format -> sample name -> value summed over label sets."""
    out: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_bucket") or not math.isfinite(sample.value):
                    continue
                out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    except ValueError as exc:
        raise MetricsUnavailableError(f"unparsable metrics: {exc}") from None
    return out


def pick(samples: Mapping[str, float], name: str, suffixes: Iterable[str]) -> float | None:
    for suffix in suffixes:
        if name + suffix in samples:
            return samples[name + suffix]
    return None


def pod_address(pod: JSON) -> str | None:
    return (pod.get("status") or {}).get("podIP") or None


@dataclass
class _Counter:
    """The previous value of a cumulative series, for rates between two scrapes."""

    value: float
    time: float


@dataclass
class PodMetricsReader:
    """Scrape every ready serving pod's endpoint and add their values up.

    Gauges (concurrency, queue, GPU utilisation) are summed. Counters become rates
    between two scrapes of the same pod: tokens for TokensPerSecond; for LatencySLO
    the completed requests of the `<metric>_count` series (the arrival rate, in
    steady state) and, when the pods export it, the mean service time from
    `egpu_request_service_seconds`.
    """

    session: aiohttp.ClientSession
    port: int
    path: str
    metric: MetricKind
    metric_name: str | None = None
    address_of: Callable[[JSON], str | None] = pod_address
    service: ServiceStats | None = None
    timeout_s: float = 1.0
    _counters: dict[tuple[str, str], _Counter] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.metric_name or DEFAULT_POD_METRIC_NAMES[self.metric.value]

    async def _scrape(self, pod: JSON) -> tuple[str, dict[str, float]] | None:
        address = self.address_of(pod)
        if not address:
            return None
        url = f"http://{address}:{self.port}{self.path}"
        try:
            async with self.session.get(
                url, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            ) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        return pod["metadata"]["name"], parse_samples(text)

    def _rate(self, pod: str, series: str, value: float | None, now: float) -> float | None:
        if value is None:
            return None
        key = (pod, series)
        previous = self._counters.get(key)
        self._counters[key] = _Counter(value, now)
        if previous is None or now <= previous.time or value < previous.value:
            return None  # first sight, or a restarted pod's counter
        return (value - previous.value) / (now - previous.time)

    async def read(self, pods: Sequence[JSON], now: float) -> Reading:
        results = [r for r in await asyncio.gather(*(self._scrape(p) for p in pods)) if r]
        if pods and not results:
            raise MetricsUnavailableError(f"none of {len(pods)} pods answered on :{self.port}")
        names = {name for name, _ in results}
        self._counters = {k: v for k, v in self._counters.items() if k[0] in names}
        queued = sum((s.get(QUEUE_METRIC) or 0.0) for _, s in results)
        if self.metric is MetricKind.TOKENS_PER_SECOND:
            rates = [
                self._rate(n, "tokens", pick(s, self.name, ("", "_total")), now) for n, s in results
            ]
            return Reading(value=sum(r for r in rates if r is not None))
        if self.metric is MetricKind.LATENCY_SLO:
            return self._latency_reading(results, queued, now)
        total = sum(pick(s, self.name, ("",)) or 0.0 for _, s in results)
        return combine(self.metric, total, None)

    def _latency_reading(
        self, results: list[tuple[str, dict[str, float]]], queued: float, now: float
    ) -> Reading:
        arrivals = 0.0
        busy_rate = completions_rate = 0.0
        for pod, samples in results:
            rate = self._rate(pod, "count", pick(samples, self.name, ("_count",)), now)
            arrivals += rate or 0.0
            busy = self._rate(pod, "svc_sum", samples.get(SERVICE_TIME_METRIC + "_sum"), now)
            done = self._rate(pod, "svc_count", samples.get(SERVICE_TIME_METRIC + "_count"), now)
            if busy is not None and done:
                busy_rate += busy
                completions_rate += done
        service = self.service
        if service is None and completions_rate > 0 and busy_rate > 0:
            service = ServiceStats(service_time_s=busy_rate / completions_rate)
        return Reading(value=arrivals, arrival_rate=arrivals, queued=queued, service=service)


# --- the window the engine reads ----------------------------------------------------


@dataclass
class SampleWindow:
    """The recent samples of one service (in memory: a restart starts a new window)."""

    keep_s: float
    samples: list[MetricSample] = field(default_factory=list)
    service: ServiceStats | None = None

    def add(self, sample: MetricSample, service: ServiceStats | None = None) -> None:
        self.samples.append(sample)
        cutoff = sample.timestamp - self.keep_s
        self.samples = [s for s in self.samples if s.timestamp > cutoff]
        if service is not None:
            self.service = service

    def window(self) -> MetricWindow:
        return MetricWindow(tuple(self.samples), self.service)


@dataclass
class DemandHistory:
    """Peak demand per time bucket over the last days, for the daily forecast."""

    bucket_s: int = 300
    days: int = 7
    peaks: dict[int, float] = field(default_factory=dict)

    def add(self, timestamp: float, demand: float) -> None:
        bucket = int(timestamp // self.bucket_s) * self.bucket_s
        self.peaks[bucket] = max(demand, self.peaks.get(bucket, 0.0))
        horizon = timestamp - (self.days + 1) * 86_400
        if len(self.peaks) % 64 == 0:
            self.peaks = {t: v for t, v in self.peaks.items() if t >= horizon}

    def points(self) -> list[tuple[float, float]]:
        return sorted(self.peaks.items())
