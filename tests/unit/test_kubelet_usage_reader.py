"""The kubelet reader (nodes/proxy /metrics/resource) and the auto reader's choice of
source by node, against a fake client that answers recorded metrics text."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from egpu.engines.resize import UsageSample
from egpu.kube.client import TransportError
from egpu.sim.usage import usage_annotation
from egpu.state.usage import (
    AnnotationUsageReader,
    AutoUsageReader,
    KubeletUsageReader,
    kubelet_metrics_path,
)

pytestmark = pytest.mark.unit


def metrics(cpu_s: float, memory: float, at_ms: int, pod: str = "p", ns: str = "ns") -> str:
    labels = f'container="c",namespace="{ns}",pod="{pod}"'
    return (
        f"container_cpu_usage_seconds_total{{{labels}}} {cpu_s} {at_ms}\n"
        f"container_memory_working_set_bytes{{{labels}}} {memory} {at_ms}\n"
    )


class FakeClient:
    def __init__(self) -> None:
        self.answers: dict[str, list[str | Exception]] = {}
        self.asked: list[str] = []

    async def get_text(self, path: str, timeout: float = 10) -> str:
        self.asked.append(path)
        answer = self.answers[path].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def pod(name: str, node: str, ns: str = "ns", annotations: dict[str, str] | None = None) -> Any:
    return {
        "metadata": {"namespace": ns, "name": name, "annotations": annotations or {}},
        "spec": {"nodeName": node},
    }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_cpu_from_two_readings_and_memory_from_the_latest() -> None:
    client = FakeClient()
    path = kubelet_metrics_path("real-0")
    client.answers[path] = [metrics(10.0, 1e9, 100_000), metrics(11.0, 2e9, 102_000)]
    reader = KubeletUsageReader(client, {"ns/p": pod("p", "real-0")}, min_interval_s=1)  # type: ignore[arg-type]
    assert run(reader.read([("ns", "p")], 100.0)) == {}  # one reading: no CPU rate yet
    assert run(reader.read([("ns", "p")], 101.0)) == {
        ("ns", "p", "c"): UsageSample(102.0, 500.0, 2e9)
    }
    assert client.asked == [path, path]


def test_each_node_is_scraped_at_most_once_per_interval() -> None:
    client = FakeClient()
    path = kubelet_metrics_path("real-0")
    client.answers[path] = [metrics(10.0, 1e9, 100_000), metrics(11.0, 1e9, 101_000)]
    reader = KubeletUsageReader(client, {"ns/p": pod("p", "real-0")}, min_interval_s=1)  # type: ignore[arg-type]
    run(reader.read([("ns", "p")], 100.0))
    run(reader.read([("ns", "p")], 100.5))
    assert client.asked == [path]


def test_the_kubelets_cached_reading_again_changes_nothing() -> None:
    client = FakeClient()
    path = kubelet_metrics_path("real-0")
    same = metrics(11.0, 2e9, 102_000)
    client.answers[path] = [metrics(10.0, 1e9, 100_000), same, same]
    reader = KubeletUsageReader(client, {"ns/p": pod("p", "real-0")}, min_interval_s=1)  # type: ignore[arg-type]
    run(reader.read([("ns", "p")], 100.0))
    first = run(reader.read([("ns", "p")], 101.0))
    assert run(reader.read([("ns", "p")], 102.0)) == first


def test_an_unreachable_kubelet_does_not_hide_the_others() -> None:
    client = FakeClient()
    client.answers[kubelet_metrics_path("bad")] = [TransportError("refused")] * 2
    good = kubelet_metrics_path("good")
    client.answers[good] = [metrics(1.0, 5.0, 1_000, pod="q"), metrics(2.0, 6.0, 2_000, pod="q")]
    pods = {"ns/p": pod("p", "bad"), "ns/q": pod("q", "good")}
    reader = KubeletUsageReader(client, pods, min_interval_s=0)  # type: ignore[arg-type]
    run(reader.read([("ns", "p"), ("ns", "q")], 1.0))
    assert run(reader.read([("ns", "p"), ("ns", "q")], 2.0)) == {
        ("ns", "q", "c"): UsageSample(2.0, 1000.0, 6.0)
    }


def test_pods_that_left_the_cache_are_forgotten() -> None:
    client = FakeClient()
    path = kubelet_metrics_path("real-0")
    client.answers[path] = [metrics(1.0, 5.0, 1_000), metrics(2.0, 6.0, 2_000), ""]
    pods = {"ns/p": pod("p", "real-0"), "ns/other": pod("other", "real-0")}
    reader = KubeletUsageReader(client, pods, min_interval_s=0)  # type: ignore[arg-type]
    run(reader.read([("ns", "p")], 1.0))
    run(reader.read([("ns", "p")], 2.0))
    del pods["ns/p"]
    assert run(reader.read([("ns", "other")], 3.0)) == {}
    assert reader._latest == {} and reader._counters == {}


@pytest.mark.parametrize("node_annotated", [True, False])
def test_auto_reads_simulated_nodes_from_annotations_and_real_ones_from_the_kubelet(
    node_annotated: bool,
) -> None:
    nodes = {
        "kwok-0": {"metadata": {"name": "kwok-0", "annotations": {"kwok.x-k8s.io/node": "fake"}}},
        "real-0": {"metadata": {"name": "real-0", "annotations": {}}},
    }
    node = "kwok-0" if node_annotated else "real-0"
    annotated = {"egpu.io/sim-usage": usage_annotation({"c": {"cpu": "300m", "memory": "4Gi"}})}
    pods = {"ns/p": pod("p", node, annotations=annotated)}
    client = FakeClient()
    path = kubelet_metrics_path("real-0")
    client.answers[path] = [metrics(1.0, 1e9, 1_000), metrics(1.5, 1e9, 2_000)]
    reader = AutoUsageReader(
        nodes,
        pods,
        simulated=AnnotationUsageReader(pods),
        real=KubeletUsageReader(client, pods, min_interval_s=0),  # type: ignore[arg-type]
    )
    run(reader.read([("ns", "p")], 1.0))
    got = run(reader.read([("ns", "p")], 2.0))
    if node_annotated:
        assert got == {("ns", "p", "c"): UsageSample(2.0, 300.0, 4.0 * 2**30)}
        assert client.asked == []
    else:
        assert got == {("ns", "p", "c"): UsageSample(2.0, 500.0, 1e9)}


def test_auto_skips_pods_not_on_a_node() -> None:
    unbound = {"metadata": {"namespace": "ns", "name": "p"}, "spec": {}}
    pods = {"ns/p": unbound}
    client = FakeClient()
    reader = AutoUsageReader(
        {},
        pods,
        simulated=AnnotationUsageReader(pods),
        real=KubeletUsageReader(client, pods),  # type: ignore[arg-type]
    )
    assert run(reader.read([("ns", "p")], 1.0)) == {}
    assert client.asked == []


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("", AutoUsageReader),
        ("auto", AutoUsageReader),
        ("kubelet", KubeletUsageReader),
        ("annotations", AnnotationUsageReader),
    ],
)
def test_the_default_source_is_auto(
    source: str, kind: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from egpu.controllers.resize import default_reader

    monkeypatch.setenv("EGPU_USAGE_SOURCE", source)
    monkeypatch.delenv("EGPU_PROMETHEUS_URL", raising=False)
    runtime = SimpleNamespace(
        client=FakeClient(), nodes=SimpleNamespace(store={}), pods=SimpleNamespace(store={})
    )
    assert isinstance(default_reader(runtime), kind)  # type: ignore[arg-type]


def test_an_unknown_source_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from egpu.controllers.resize import default_reader

    monkeypatch.setenv("EGPU_USAGE_SOURCE", "cadvisor")
    with pytest.raises(ValueError, match=r"cadvisor.*auto, annotations, kubelet"):
        default_reader(None)  # type: ignore[arg-type]


def test_the_next_read_is_due_one_interval_after_the_last_scrape_of_an_asked_node() -> None:
    client = FakeClient()
    for node in ("a", "b"):
        client.answers[kubelet_metrics_path(node)] = [metrics(1.0, 5.0, 1_000, pod=node)] * 3
    pods = {"ns/a": pod("a", "a"), "ns/b": pod("b", "b")}
    reader = KubeletUsageReader(client, pods, min_interval_s=1)  # type: ignore[arg-type]
    assert reader.next_read_at() is None  # nothing asked yet: no schedule of its own
    run(reader.read([("ns", "a")], 10.0))
    run(reader.read([("ns", "a"), ("ns", "b")], 10.4))
    assert reader.next_read_at() == 11.0  # node a, scraped at 10.0
    run(reader.read([("ns", "b")], 11.0))  # a no longer asked: b alone sets the pace
    assert reader.next_read_at() == 11.4


def test_nodes_are_scraped_concurrently() -> None:
    """One slow kubelet must not hold back the reading of the others."""

    class SlowClient(FakeClient):
        def __init__(self) -> None:
            super().__init__()
            self.in_flight = self.most_in_flight = 0

        async def get_text(self, path: str, timeout: float = 10) -> str:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await asyncio.sleep(0.01)
            self.in_flight -= 1
            return await super().get_text(path, timeout)

    client = SlowClient()
    names = [f"n{i}" for i in range(3)]
    for name in names:
        client.answers[kubelet_metrics_path(name)] = [metrics(1.0, 5.0, 1_000, pod=name)]
    pods = {f"ns/{n}": pod(n, n) for n in names}
    reader = KubeletUsageReader(client, pods, min_interval_s=1)  # type: ignore[arg-type]
    run(reader.read([("ns", n) for n in names], 1.0))
    assert client.most_in_flight == 3 and len(client.asked) == 3


def test_auto_follows_the_pace_of_its_kubelet_reader() -> None:
    client = FakeClient()
    client.answers[kubelet_metrics_path("real-0")] = [metrics(1.0, 1e9, 1_000)]
    pods = {"ns/p": pod("p", "real-0")}
    reader = AutoUsageReader(
        {"real-0": {"metadata": {"name": "real-0"}}},
        pods,
        simulated=AnnotationUsageReader(pods),
        real=KubeletUsageReader(client, pods, min_interval_s=1),  # type: ignore[arg-type]
    )
    assert reader.next_read_at() is None
    run(reader.read([("ns", "p")], 5.0))
    assert reader.next_read_at() == 6.0
