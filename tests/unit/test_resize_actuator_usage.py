"""Usage sources behind the `UsageReader` interface, and the bounded sample history."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web

from egpu.engines.resize import GIB, UsageSample
from egpu.sim.usage import usage_annotation, usage_patch
from egpu.state.usage import (
    PROMETHEUS_QUERIES,
    USAGE_ANNOTATION,
    AnnotationUsageReader,
    PrometheusUsageReader,
    UsageHistory,
    parse_usage_annotation,
    samples_from_pod_metrics,
    samples_from_prometheus,
)

pytestmark = pytest.mark.unit


def annotated(name: str, text: str | None) -> dict[str, Any]:
    annotations = {} if text is None else {USAGE_ANNOTATION: text}
    return {"metadata": {"name": name, "namespace": "ns", "annotations": annotations}}


# --- the simulation's annotation ------------------------------------------------------


def test_annotation_parses_quantities_per_container() -> None:
    usage = parse_usage_annotation(
        '{"main": {"cpu": "1500m", "memory": "3Gi", "throttled": 0.25}, "side": {"cpu": "2"}}'
    )
    assert usage["main"].cpu_millicores == 1500
    assert usage["main"].memory_bytes == 3 * GIB
    assert usage["main"].throttled == 0.25
    assert (usage["side"].cpu_millicores, usage["side"].memory_bytes) == (2000, 0)


@pytest.mark.parametrize(
    "text",
    ["not json", "[1]", '{"main": 3}', '{"main": {"memory": "lots"}}', '{"m": {"throttled": 2}}'],
)
def test_bad_annotations_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=USAGE_ANNOTATION + "|quantity"):
        parse_usage_annotation(text)


def test_sim_helpers_write_what_the_reader_reads() -> None:
    usage = {"main": {"cpu": "750m", "memory": "5Gi"}}
    assert usage_patch(usage) == {
        "metadata": {"annotations": {USAGE_ANNOTATION: usage_annotation(usage)}}
    }
    assert parse_usage_annotation(usage_annotation(usage))["main"].memory_bytes == 5 * GIB
    with pytest.raises(ValueError):
        usage_annotation({"main": {"memory": "five gigs"}})


def test_annotation_reader_reads_the_pod_cache_and_skips_bad_or_missing() -> None:
    store = {
        "ns/a": annotated("a", usage_annotation({"main": {"cpu": "1", "memory": "1Gi"}})),
        "ns/b": annotated("b", "garbage"),
        "ns/c": annotated("c", None),
    }
    reader = AnnotationUsageReader(store)
    out = asyncio.run(reader.read([("ns", "a"), ("ns", "b"), ("ns", "c"), ("ns", "gone")], 42.0))
    assert out == {("ns", "a", "main"): UsageSample(42.0, 1000.0, float(GIB), None)}


# --- metrics.k8s.io and Prometheus answers ---------------------------------------------


def test_pod_metrics_become_samples_of_the_wanted_pods() -> None:
    items: list[dict[str, Any]] = [
        {
            "metadata": {"name": "a", "namespace": "ns"},
            "timestamp": "2026-01-01T00:00:10Z",
            "containers": [{"name": "main", "usage": {"cpu": "250000000n", "memory": "2048Ki"}}],
        },
        {"metadata": {"name": "other", "namespace": "ns"}, "containers": []},
    ]
    out = samples_from_pod_metrics(items, [("ns", "a")], now=0.0)
    sample = out[("ns", "a", "main")]
    assert sample.cpu_millicores == pytest.approx(250.0)
    assert sample.memory_bytes == 2 * 1024 * 1024
    assert sample.at == 1767225610.0
    assert list(out) == [("ns", "a", "main")]


def vector(rows: list[tuple[str, str, float]], at: float = 100.0) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"namespace": "ns", "pod": p, "container": c}, "value": [at, str(v)]}
                for p, c, v in rows
            ],
        },
    }


def test_prometheus_vectors_join_into_samples() -> None:
    answers = {
        "cpu": vector([("a", "main", 1.5), ("b", "main", 0.1), ("x", "main", 9.0)]),
        "memory": vector([("a", "main", 3 * GIB), ("x", "main", GIB)]),
        "throttled": vector([("a", "main", float("nan")), ("x", "main", 0.4)]),
    }
    out = samples_from_prometheus(answers, [("ns", "a"), ("ns", "b")])
    assert out == {("ns", "a", "main"): UsageSample(100.0, 1500.0, float(3 * GIB), None)}
    both = samples_from_prometheus(answers, [("ns", "x")])
    assert both[("ns", "x", "main")].cpu_throttled_fraction == 0.4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_reader_queries_the_http_api_and_caches_between_polls() -> None:
    asked: list[str] = []
    by_query = {
        PROMETHEUS_QUERIES["cpu"]: vector([("a", "main", 0.5)]),
        PROMETHEUS_QUERIES["memory"]: vector([("a", "main", 2 * GIB)]),
        PROMETHEUS_QUERIES["throttled"]: vector([("a", "main", 0.2)]),
    }

    async def query(request: web.Request) -> web.Response:
        promql = request.query["query"]
        asked.append(promql)
        return web.json_response(by_query[promql])

    async def scenario() -> tuple[dict[Any, UsageSample], dict[Any, UsageSample]]:
        app = web.Application()
        app.router.add_get("/api/v1/query", query)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        reader = PrometheusUsageReader(f"http://127.0.0.1:{port}/", min_interval_s=5)
        try:
            first = await reader.read([("ns", "a")], now=1000.0)
            cached = await reader.read([("ns", "a")], now=1002.0)
        finally:
            await reader.close()
            await runner.cleanup()
        return first, cached

    first, cached = asyncio.run(scenario())
    assert first == {("ns", "a", "main"): UsageSample(100.0, 500.0, float(2 * GIB), 0.2)}
    assert cached == first
    assert sorted(asked) == sorted(PROMETHEUS_QUERIES.values()), "one query each, then cached"


# --- history ---------------------------------------------------------------------------

KEY = ("ns", "a", "main")


def s(at: float, memory: float = GIB, cpu: float = 100.0) -> UsageSample:
    return UsageSample(at, cpu, memory)


def test_history_keeps_changes_at_once_and_repeats_only_every_refresh() -> None:
    h = UsageHistory(keep_s=100, refresh_s=5)
    assert h.record(KEY, s(0))
    assert not h.record(KEY, s(0.5)), "same value: not a change"
    assert not h.record(KEY, s(5.0))
    assert h.record(KEY, s(5.5, memory=2 * GIB))
    assert [x.at for x in h.samples(KEY)] == [0, 5.0, 5.5]


def test_history_ignores_repeated_or_older_scrapes() -> None:
    h = UsageHistory(keep_s=100, refresh_s=5)
    h.record(KEY, s(10))
    assert not h.record(KEY, s(10, memory=3 * GIB))
    assert not h.record(KEY, s(9, memory=3 * GIB))
    assert h.samples(KEY) == (s(10),)


def test_history_keeps_one_sample_older_than_the_window() -> None:
    h = UsageHistory(keep_s=30, refresh_s=10)
    for t in range(0, 101, 10):
        h.record(KEY, s(float(t)))
    assert [x.at for x in h.samples(KEY)] == [70.0, 80.0, 90.0, 100.0]


def test_history_forgets_containers_that_are_gone() -> None:
    h = UsageHistory(keep_s=30)
    h.record(KEY, s(0))
    h.record(("ns", "b", "main"), s(0))
    h.keep_only({KEY})
    assert len(h) == 1 and h.samples(("ns", "b", "main")) == ()
