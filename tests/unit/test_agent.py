"""The node agent without a cluster: simulated GPUs, injected faults, the published
report and condition, and the state carried across a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from egpu.agent.main import read_nodes, serve
from egpu.agent.node import NodeAgent, condition_of
from egpu.agent.simulate import SimulatedGpus, load_recording, parse_fault, synthetic_frame
from egpu.domain.labels import GPU_HEALTH_ANNOTATION
from egpu.engines.health.report import parse_report, report_text
from egpu.engines.health.rules import HealthPolicy

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parents[1] / "data" / "nvml"
POLICY = HealthPolicy(quiet_period_s=30, passes_needed=2, stall_after_s=20)


def sim(*faults: str, node: str = "n1") -> SimulatedGpus:
    frame = synthetic_frame(8, [[0, 1, 2, 3], [4, 5, 6, 7]], [0] * 4 + [1] * 4)
    return SimulatedGpus(node, [frame], [parse_fault(f) for f in faults], start=0.0)


def test_fault_specs() -> None:
    f = parse_fault("10+30:gpu-1:3:temp=97")
    assert (f.at, f.duration, f.node, f.gpu, f.kind, f.value) == (10, 30, "gpu-1", 3, "temp", 97)
    assert parse_fault("5:*:*:lost").gpu is None
    for bad in ("5:n:1", "5:n:1:melt", "x:n:1:lost", "5:n:one:lost"):
        with pytest.raises(ValueError, match="fault"):
            parse_fault(bad)


def test_the_synthetic_node_reads_as_its_annotation_says() -> None:
    agent = NodeAgent("n1", sim().read, POLICY)
    report, found = agent.judge(sim().read(1.0), 1.0)
    assert found == [] and report.unhealthy == {} and report.gpu_count == 8
    assert json.loads(agent.interconnect or "") == {
        "nvlinkGroups": [[0, 1, 2, 3], [4, 5, 6, 7]],
        "numa": [0, 0, 0, 0, 1, 1, 1, 1],
    }


def test_an_injected_xid_makes_one_gpu_unhealthy_then_healthy_after_the_quiet_period() -> None:
    gpus = sim("10:n1:3:xid=79")
    agent = NodeAgent("n1", gpus.read, POLICY)
    seen = {}
    for t in range(0, 80, 5):
        report, _ = agent.judge(gpus.read(float(t)), float(t))
        seen[t] = report.unhealthy_gpus
    assert seen[5] == set() and seen[10] == {3}
    assert seen[35] == {3}  # 25 s after the fault: not quiet long enough
    assert seen[40] == set()  # quiet for 30 s and two passing checks


def test_only_the_named_node_gets_the_fault() -> None:
    gpus = sim("0:other:*:lost")
    agent = NodeAgent("n1", gpus.read, POLICY)
    assert agent.judge(gpus.read(1.0), 1.0)[0].unhealthy == {}


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("0:n1:2:lost", "FallenOffBus"),
        ("0:n1:2:dbe", "EccUncorrectable"),
        ("0:n1:2:remap-pending", "RowRemapPending"),
        ("0:n1:2:remap-failure", "RowRemapFailure"),
        ("0:n1:2:retire-pending", "RetirementPending"),
        ("0:n1:2:temp=99", "Temperature"),
        ("0:n1:2:nvlink-down", "NVLinkDown"),
        ("0:n1:2:nvlink-recovery=3", "NVLinkErrors"),
        ("0:n1:2:stall", "TelemetryStalled"),
    ],
)
def test_every_injected_fault_kind_is_detected(fault: str, check: str) -> None:
    gpus = sim(fault.replace("0:", "2:", 1))
    agent = NodeAgent("n1", gpus.read, POLICY)
    agent.judge(gpus.read(0.0), 0.0)  # a healthy first reading (the baseline)
    reasons: list[str] = []
    for t in (5.0, 30.0):  # a stall shows once the reading is older than stall_after
        report, _ = agent.judge(gpus.read(t), t)
        reasons += [r for h in report.unhealthy.values() for r in h.reasons]
    assert report.unhealthy_gpus == {2}
    assert any(r.startswith(check) for r in reasons), reasons


def test_nvml_down_faults_every_gpu_and_a_state_fault_ends() -> None:
    gpus = sim("5+10:*:*:nvml-down")
    agent = NodeAgent("n1", gpus.read, POLICY)
    agent.judge(gpus.read(0.0), 0.0)
    assert agent.judge(gpus.read(5.0), 5.0)[0].unhealthy_gpus == set(range(8))
    for t in range(15, 50, 5):
        report, _ = agent.judge(gpus.read(float(t)), float(t))
    assert report.unhealthy_gpus == set()


def test_a_reader_that_returns_nothing_stalls_after_the_limit() -> None:
    agent = NodeAgent("n1", sim().read, POLICY)
    agent.judge(sim().read(0.0), 0.0)
    assert agent.judge(None, 10.0)[0].unhealthy == {}
    assert agent.judge(None, 21.0)[0].unhealthy_gpus == set(range(8))


def test_a_restarted_agent_keeps_an_unhealthy_gpu_unhealthy() -> None:
    gpus = sim("1:n1:5:dbe")
    first = NodeAgent("n1", gpus.read, POLICY)
    first.judge(gpus.read(0.0), 0.0)
    report, _ = first.judge(gpus.read(1.0), 1.0)
    assert report.unhealthy_gpus == {5}
    node = {"metadata": {"annotations": {GPU_HEALTH_ANNOTATION: report_text(report)}}}
    again = NodeAgent("n1", gpus.read, POLICY)
    again.restore(node)
    # the new agent has no earlier reading: the old DBE count is its baseline, no new
    # fault; yet GPU 5 stays unhealthy until its quiet period and passes are over
    assert again.judge(gpus.read(100.0), 100.0)[0].unhealthy_gpus == {5}
    assert again.judge(gpus.read(105.0), 105.0)[0].unhealthy_gpus == set()


def test_condition_names_the_bad_gpus() -> None:
    gpus = sim("0:n1:6:xid=48")
    agent = NodeAgent("n1", gpus.read, POLICY)
    report, _ = agent.judge(gpus.read(1.0), 1.0)
    cond = condition_of(report, 1.0)
    assert (cond["type"], cond["status"], cond["reason"]) == ("GPUHealthy", "False", "GPUFault")
    assert cond["message"].startswith("GPU 6: Xid: XID 48")
    healthy = condition_of(parse_report(report_text(report.__class__(1.0, 8))) or report, 1.0)
    assert healthy["status"] == "True"


def test_recordings_replay_frame_after_frame() -> None:
    frames = load_recording(DATA / "pcie-h100nvl-4-lost.json")
    gpus = SimulatedGpus("n1", frames, [], start=0.0, interval_s=10.0)
    agent = NodeAgent("n1", gpus.read, POLICY)
    assert agent.judge(gpus.read(1.0), 1.0)[0].unhealthy == {}
    report, _ = agent.judge(gpus.read(11.0), 11.0)
    assert report.unhealthy_gpus == {3}
    assert any("FallenOffBus" in r for r in report.unhealthy[3].reasons)


def test_a_simulated_node_answers_for_its_gpus_even_if_nvml_never_does() -> None:
    node = {"metadata": {"name": "n1"}, "status": {"allocatable": {"nvidia.com/gpu": "4"}}}
    down = {"timestamp": 1.0, "nvmlError": "Driver Not Loaded", "gpus": []}
    simulated = NodeAgent("n1", sim().read, POLICY, count_from_node=True)
    simulated.restore(node)
    assert simulated.judge(down, 1.0)[0].unhealthy_gpus == {0, 1, 2, 3}
    # a real node's allocatable may count shared or MIG devices: not taken for GPUs
    real = NodeAgent("n1", sim().read, POLICY)
    real.restore(node)
    assert real.gpu_count is None


class RecordingClient:
    """Stands in for the API server: records each Node write."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.written = asyncio.Event()

    async def patch(self, path: str, body: dict[str, Any], content_type: str = "") -> Any:
        self.writes.append((path, body))
        self.written.set()
        return {}


def test_a_fault_is_published_at_once_not_after_the_other_nodes_readings() -> None:
    """One process serving many simulated nodes: a node whose reading shows a fault
    writes it while another node's reading is still in progress."""
    slow_read_may_end = threading.Event()

    def slow(now: float) -> dict[str, Any]:
        slow_read_may_end.wait(5)
        return sim().read(now)

    faulty = sim("0:n2:1:xid=79", node="n2")
    agents = [
        NodeAgent("n1", slow, POLICY),  # read in a thread, as NVML is
        NodeAgent("n2", faulty.read, POLICY, read_in_thread=False),
    ]
    client = RecordingClient()

    async def go() -> list[str]:
        task = asyncio.create_task(serve(agents, client, 2.0))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(client.written.wait(), 3)
        finally:
            slow_read_may_end.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return [path for path, _ in client.writes]

    written = asyncio.run(go())
    assert written[0] == "/api/v1/nodes/n2"
    report = parse_report(client.writes[0][1]["metadata"]["annotations"][GPU_HEALTH_ANNOTATION])
    assert report is not None and report.unhealthy_gpus == {1}


def test_many_nodes_are_read_with_one_list_and_a_missing_one_is_named() -> None:
    class Lister:
        def __init__(self) -> None:
            self.calls: list[str] = []

        async def list_all(self, path: str) -> tuple[list[dict[str, Any]], str]:
            self.calls.append(path)
            return [{"metadata": {"name": n}} for n in ("a", "b", "c")], "1"

    lister = Lister()
    found = asyncio.run(read_nodes(lister, ["c", "a"]))  # type: ignore[arg-type]
    assert list(found) == ["c", "a"] and lister.calls == ["/api/v1/nodes"]
    with pytest.raises(SystemExit, match="not found: z"):
        asyncio.run(read_nodes(lister, ["a", "z"]))  # type: ignore[arg-type]
