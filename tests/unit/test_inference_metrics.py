"""Metrics readers: the Prometheus query API and the pods' own endpoints, over real HTTP
on 127.0.0.1 (a small aiohttp server stands in for Prometheus and for the pods)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from egpu.engines.autoscaling import MetricKind, MetricSample, ServiceStats
from egpu.state.metrics import (
    DemandHistory,
    MetricsUnavailableError,
    PodMetricsReader,
    PrometheusReader,
    SampleWindow,
    combine,
    parse_samples,
    prometheus_number,
)

pytestmark = pytest.mark.unit


async def with_server(
    app: web.Application, body: Callable[[int, aiohttp.ClientSession], Awaitable[Any]]
) -> Any:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            return await body(port, session)
    finally:
        await runner.cleanup()


def vector(*values: float) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [0, str(v)]} for v in values],
        },
    }


def test_query_answers_are_summed_and_empty_means_zero() -> None:
    assert prometheus_number(vector(1.5, 2)) == 3.5
    assert prometheus_number(vector()) == 0.0
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [0, "7"]}}
    assert prometheus_number(scalar) == 7.0
    with pytest.raises(MetricsUnavailableError, match="bad_data"):
        prometheus_number({"status": "error", "error": "bad_data"})
    with pytest.raises(MetricsUnavailableError, match="matrix"):
        prometheus_number({"status": "success", "data": {"resultType": "matrix", "result": []}})


def test_queued_requests_add_to_concurrency_but_stay_apart_for_other_kinds() -> None:
    assert combine(MetricKind.CONCURRENCY, 10, 5).value == 15
    assert combine(MetricKind.GPU_UTILIZATION, 60, 5).value == 60
    assert combine(MetricKind.GPU_UTILIZATION, 60, 5).queued == 5
    slo = combine(MetricKind.LATENCY_SLO, 42, 3)
    assert (slo.arrival_rate, slo.queued) == (42, 3)


def test_prometheus_reader_runs_both_queries() -> None:
    seen: list[str] = []

    async def query(request: web.Request) -> web.Response:
        promql = request.query["query"]
        seen.append(promql)
        return web.json_response(vector(12.0 if promql == "arrivals" else 4.0))

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    stats = ServiceStats(1.0, 4.0)

    async def body(port: int, session: aiohttp.ClientSession) -> Any:
        reader = PrometheusReader(
            session,
            f"http://127.0.0.1:{port}/",
            "arrivals",
            MetricKind.LATENCY_SLO,
            queued_query="waiting",
            service=stats,
        )
        return await reader.read([], 0.0)

    reading = asyncio.run(with_server(app, body))
    assert sorted(seen) == ["arrivals", "waiting"]
    assert (reading.arrival_rate, reading.queued, reading.service) == (12.0, 4.0, stats)


def test_an_unreachable_prometheus_is_reported_not_read_as_zero() -> None:
    async def body() -> None:
        async with aiohttp.ClientSession() as session:
            reader = PrometheusReader(session, "http://127.0.0.1:1", "q", MetricKind.CONCURRENCY)
            await reader.read([], 0.0)

    with pytest.raises(MetricsUnavailableError, match="prometheus"):
        asyncio.run(body())


POD_TEXT = """# TYPE egpu_inflight_requests gauge
egpu_inflight_requests{{pod="{pod}"}} {inflight}
# TYPE egpu_queue_length gauge
egpu_queue_length{{pod="{pod}"}} {queued}
# TYPE egpu_generated_tokens_total counter
egpu_generated_tokens_total{{pod="{pod}"}} {tokens}
# TYPE egpu_request_duration_seconds histogram
egpu_request_duration_seconds_bucket{{le="1"}} 1
egpu_request_duration_seconds_bucket{{le="+Inf"}} {done}
egpu_request_duration_seconds_count {done}
egpu_request_duration_seconds_sum 9
# TYPE egpu_request_service_seconds summary
egpu_request_service_seconds_sum {busy}
egpu_request_service_seconds_count {done}
"""


def test_text_format_is_read_per_sample_name() -> None:
    samples = parse_samples(
        POD_TEXT.format(pod="a", inflight=3, queued=1, tokens=5, done=4, busy=2)
    )
    assert samples["egpu_inflight_requests"] == 3
    assert samples["egpu_generated_tokens_total"] == 5
    assert "egpu_request_duration_seconds_bucket" not in samples


def pods_app(state: dict[str, dict[str, float]]) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        name = request.match_info["pod"]
        if name not in state:
            return web.Response(status=503)
        return web.Response(text=POD_TEXT.format(pod=name, **state[name]))

    app = web.Application()
    app.router.add_get("/{pod}/metrics", metrics)
    return app


def raw_pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"podIP": "127.0.0.1"}}


def test_pod_gauges_are_summed_over_pods() -> None:
    async def body(port: int, session: aiohttp.ClientSession) -> Any:
        reader = PodMetricsReader(
            session, port, "/a/metrics", MetricKind.CONCURRENCY, address_of=lambda p: "127.0.0.1"
        )
        return await reader.read([raw_pod("a"), raw_pod("b")], 1.0)

    state = {"a": {"inflight": 3, "queued": 1, "tokens": 0, "done": 0, "busy": 0}}
    reading = asyncio.run(with_server(pods_app(state), body))
    # Both pods answer on the same stand-in address: twice pod a.
    assert reading.value == 6


def test_counters_become_rates_between_scrapes() -> None:
    state: dict[str, dict[str, float]] = {}

    async def body(port: int, session: aiohttp.ClientSession) -> list[Any]:
        reader = PodMetricsReader(
            session,
            port,
            "/a/metrics",
            MetricKind.TOKENS_PER_SECOND,
            address_of=lambda p: "127.0.0.1",
        )
        out = []
        for now, tokens in ((10.0, 100.0), (12.0, 500.0), (13.0, 20.0)):
            state["a"] = {"inflight": 0, "queued": 0, "tokens": tokens, "done": 0, "busy": 0}
            out.append(await reader.read([raw_pod("a")], now))
        return out

    first, second, restarted = asyncio.run(with_server(pods_app(state), body))
    assert first.value == 0.0  # no rate from one scrape
    assert second.value == pytest.approx(200.0)
    assert restarted.value == 0.0  # a counter reset is not a negative rate


def test_latency_slo_reads_completions_and_measures_the_service_time() -> None:
    state: dict[str, dict[str, float]] = {}

    async def body(port: int, session: aiohttp.ClientSession) -> list[Any]:
        reader = PodMetricsReader(
            session, port, "/a/metrics", MetricKind.LATENCY_SLO, address_of=lambda p: "127.0.0.1"
        )
        out = []
        for now, done, busy in ((0.0, 0, 0.0), (2.0, 20, 10.0)):
            state["a"] = {"inflight": 0, "queued": 3, "tokens": 0, "done": done, "busy": busy}
            out.append(await reader.read([raw_pod("a")], now))
        return out

    _, reading = asyncio.run(with_server(pods_app(state), body))
    assert reading.arrival_rate == pytest.approx(10.0)
    assert reading.queued == 3
    assert reading.service is not None and reading.service.service_time_s == pytest.approx(0.5)


def test_no_pod_answering_is_unavailable_but_no_pods_is_zero() -> None:
    async def body(port: int, session: aiohttp.ClientSession) -> Any:
        reader = PodMetricsReader(
            session, port, "/gone/metrics", MetricKind.CONCURRENCY, address_of=lambda p: "127.0.0.1"
        )
        empty = await reader.read([], 0.0)
        with pytest.raises(MetricsUnavailableError, match="none of 1 pods"):
            await reader.read([raw_pod("gone")], 0.0)
        return empty

    assert asyncio.run(with_server(pods_app({}), body)).value == 0.0


def test_window_keeps_only_recent_samples() -> None:
    window = SampleWindow(keep_s=10)
    for t in range(30):
        window.add(MetricSample(float(t), 1.0, 1))
    assert [s.timestamp for s in window.window().samples] == [float(t) for t in range(20, 30)]


def test_history_keeps_the_peak_per_bucket() -> None:
    history = DemandHistory(bucket_s=300)
    for t, v in ((0, 1.0), (100, 5.0), (299, 2.0), (300, 3.0)):
        history.add(float(t), v)
    assert history.points() == [(0, 5.0), (300, 3.0)]
