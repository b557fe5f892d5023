"""One pass of the resize loop against in-memory caches and a recording client: Auto
applies through pods/resize, Recommend and a node without room only tell, a kubelet's
Infeasible is reported once, and nothing else is touched."""

from __future__ import annotations

import asyncio
import copy
import json
from types import SimpleNamespace
from typing import Any

import pytest

from egpu.controllers.resize import POLL_S, REVISIT_S, ResizeController, direction
from egpu.controllers.runtime import Runtime
from egpu.domain.placement import Placement, PodAssignment, Unschedulable, UnschedulableReason
from egpu.engines.resize import GIB, PodResizeDecision, QoSClass, Reason, Verdict
from egpu.observability.metrics import REGISTRY
from egpu.sim.usage import usage_annotation
from egpu.state.ledger_sync import PodDemand
from egpu.state.usage import USAGE_ANNOTATION, AnnotationUsageReader

pytestmark = pytest.mark.unit

NOW = 1_000_000.0
MEMORY = {"min": "1Gi", "max": "16Gi", "step": "1Gi"}


class FakeInformer:
    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


class RecordingClient:
    def __init__(self) -> None:
        self.patches: list[tuple[str, Any, str]] = []
        self.events: list[dict[str, Any]] = []

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        self.patches.append((path, body, content_type))
        return {"metadata": {"generation": 2}}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body


def workload(mode: str = "Auto", name: str = "w") -> dict[str, Any]:
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name, "namespace": "ns", "uid": "wuid", "generation": 1},
        "spec": {"resize": {"mode": mode, "memory": MEMORY}},
    }


def member(name: str = "w-0", memory: str = "2Gi", usage: str | None = "2.3Gi") -> dict[str, Any]:
    resources = {
        "requests": {"cpu": "1", "memory": memory, "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    annotations = {}
    if usage is not None:
        annotations[USAGE_ANNOTATION] = usage_annotation({"main": {"cpu": "700m", "memory": usage}})
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "generation": 1,
            "labels": {"egpu.io/workload": "w", "egpu.io/rank": "0"},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "egpu.io/v1alpha1",
                    "kind": "GPUWorkload",
                    "name": "w",
                    "uid": "wuid",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "resources": resources}]},
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "main", "resources": copy.deepcopy(resources)}],
        },
    }


def node(cpu: str = "64", memory: str = "512Gi") -> dict[str, Any]:
    return {
        "metadata": {"name": "n1"},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def fed_runtime(client: Any, nodes: dict[str, Any], pods: dict[str, Any]) -> Runtime:
    """A runtime over in-memory caches whose one ledger counts what they hold."""
    runtime = Runtime(
        client=client,
        nodes=FakeInformer(nodes),  # type: ignore[arg-type]
        pods=FakeInformer(pods),  # type: ignore[arg-type]
    )
    runtime.rebuild_ledger()
    return runtime


def controller(
    pods: list[dict[str, Any]], mode: str = "Auto", nodes: dict[str, Any] | None = None
) -> tuple[ResizeController, RecordingClient]:
    client = RecordingClient()
    pod_store = {f"ns/{p['metadata']['name']}": p for p in pods}
    runtime = fed_runtime(client, nodes if nodes is not None else {"n1": node()}, pod_store)
    runtime.workloads["ns/w"] = workload(mode)
    return ResizeController(runtime, AnnotationUsageReader(pod_store)), client


def run_pass(ctl: ResizeController, now: float) -> None:
    """One pass, and the API calls it started."""

    async def go() -> None:
        await ctl.step(now)
        await ctl.drain()

    asyncio.run(go())


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def events(client: RecordingClient, reason: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["reason"] == reason]


def test_auto_applies_one_step_through_the_resize_subresource() -> None:
    ctl, client = controller([member()])
    applied = metric("egpu_resizes_applied_total", {"direction": "up"})
    timed = metric("egpu_resize_latency_seconds_count")
    run_pass(ctl, NOW)
    ((path, body, content_type),) = client.patches
    assert path == "/api/v1/namespaces/ns/pods/w-0/resize"
    assert content_type == "application/strategic-merge-patch+json"
    assert body == {
        "spec": {"containers": [{"name": "main", "resources": {"requests": {"memory": "3Gi"}}}]}
    }
    assert metric("egpu_resizes_applied_total", {"direction": "up"}) == applied + 1
    assert metric("egpu_resize_latency_seconds_count") == timed + 1
    assert client.events == [], "an applied resize needs no Event"


def test_no_second_patch_until_the_cache_shows_the_first() -> None:
    ctl, client = controller([member()])
    run_pass(ctl, NOW)
    ctl.dirty.add("ns/w-0")
    run_pass(ctl, NOW + 0.1)
    assert len(client.patches) == 1


def test_usage_within_the_band_changes_nothing() -> None:
    ctl, client = controller([member(usage="1.5Gi")])
    run_pass(ctl, NOW)
    assert client.patches == [] and client.events == []


def test_recommend_only_tells_once_per_distinct_recommendation() -> None:
    ctl, client = controller([member()], mode="Recommend")
    run_pass(ctl, NOW)
    run_pass(ctl, NOW + REVISIT_S)  # looked at again: the same recommendation
    assert client.patches == []
    (event,) = events(client, "ResizeRecommended")
    assert event["involvedObject"]["kind"] == "GPUWorkload"
    assert "pod w-0: main: cpu -/-, memory 3Gi/-" in event["message"]


def test_a_node_without_room_waits_with_a_clear_event() -> None:
    tight = {"n1": node(memory="2.5Gi")}
    ctl, client = controller([member()], nodes=tight)
    run_pass(ctl, NOW)
    assert client.patches == []
    infeasible = events(client, "ResizeInfeasible")
    assert {e["involvedObject"]["kind"] for e in infeasible} == {"GPUWorkload", "Pod"}
    assert all(e["type"] == "Warning" for e in infeasible)
    assert "cannot grow in place on node n1" in infeasible[0]["message"]
    assert "node lacks room" in infeasible[0]["message"]
    assert "waiting for room" in infeasible[0]["message"]


def test_room_that_appears_later_is_used_when_the_pod_is_looked_at_again() -> None:
    nodes = {"n1": node(memory="2.5Gi")}
    ctl, client = controller([member()], nodes=nodes)
    run_pass(ctl, NOW)
    assert client.patches == []
    nodes["n1"] = node()  # room frees up; no event of the pod says so
    ctl.runtime.ledger.node_changed(None, nodes["n1"])
    run_pass(ctl, NOW + 1)
    assert client.patches == [], "nothing new about the pod yet"
    run_pass(ctl, NOW + REVISIT_S)
    assert len(client.patches) == 1


def test_a_kubelet_infeasible_resize_is_reported_once_and_not_retried() -> None:
    pod = member(memory="3Gi")
    pod["metadata"]["generation"] = 2
    pod["status"]["observedGeneration"] = 2
    pod["status"]["conditions"].append(
        {
            "type": "PodResizePending",
            "status": "True",
            "reason": "Infeasible",
            "message": "Node didn't have enough capacity: memory",
        }
    )
    ctl, client = controller([pod])
    run_pass(ctl, NOW)
    run_pass(ctl, NOW + REVISIT_S)
    assert client.patches == []
    (event,) = events(client, "ResizeInfeasible")
    assert "Node didn't have enough capacity: memory" in event["message"]
    assert "waiting" in event["message"]


def test_mode_off_and_foreign_pods_are_left_alone() -> None:
    ctl, client = controller([member()], mode="Off")
    run_pass(ctl, NOW)
    # The workload's labels but no owner reference: not a member, whatever it says.
    stranger = member(name="solo")
    del stranger["metadata"]["ownerReferences"]
    ctl2, client2 = controller([stranger])
    run_pass(ctl2, NOW)
    assert client.patches == client2.patches == []


def test_a_failing_usage_source_does_not_stop_the_loop() -> None:
    class Broken:
        async def read(self, pods: Any, now: float) -> Any:
            raise ConnectionError("prometheus down")

    ctl, client = controller([member()])
    ctl.reader = Broken()
    run_pass(ctl, NOW)
    assert client.patches == []


class PacedReader(AnnotationUsageReader):
    """The annotation source with a schedule of its own, as the kubelet reader has."""

    def __init__(self, pods: Any, due: float) -> None:
        super().__init__(pods)
        self.due = due
        self.asked: list[list[Any]] = []

    async def read(self, pods: Any, now: float) -> Any:
        self.asked.append(sorted(pods))
        return await super().read(pods, now)

    def next_read_at(self) -> float | None:
        return self.due


def test_the_loop_reads_again_as_soon_as_the_source_has_news() -> None:
    """A source due sooner than the next poll (a kubelet's next scrape) is read when due,
    not up to a poll later."""
    ctl, _ = controller([member(usage="1.5Gi")])
    reader = PacedReader(ctl.runtime.pods.store, due=NOW + 0.3)
    ctl.reader = reader
    run_pass(ctl, NOW)
    assert ctl.wait_s(NOW + 0.1) == pytest.approx(0.2)
    run_pass(ctl, NOW + 0.3)
    assert reader.asked == [[("ns", "w-0")], [("ns", "w-0")]]
    reader.due = NOW + 5
    assert ctl.wait_s(NOW + 0.3) == POLL_S
    reader.due = NOW  # overdue: wake at once, but never spin
    assert 0 < ctl.wait_s(NOW + 0.3) <= 0.05


def test_pod_events_wake_the_loop_for_members_only() -> None:
    ctl, _ = controller([member()])
    listener = ctl.runtime.pods.listeners[0]
    listener("MODIFIED", None, member(name="w-3"))
    listener("MODIFIED", None, {"metadata": {"name": "x", "namespace": "ns"}})
    assert ctl.dirty == {"ns/w-3"}


def decision(cpu: int, memory: int) -> PodResizeDecision:
    return PodResizeDecision(
        Verdict.APPLY,
        Reason.FITS_NODE,
        "",
        QoSClass.BURSTABLE,
        cpu_delta_millicores=cpu,
        memory_delta_bytes=memory,
    )


def test_direction_follows_the_change_of_requests() -> None:
    assert direction(decision(0, GIB)) == "up"
    assert direction(decision(-500, 0)) == "down"
    assert direction(decision(500, -GIB)) == "mixed"


class FakeBinder:
    """Answers `where_to_move` as told, and remembers what it was asked."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[tuple[str, int, str | None]] = []
        topology = SimpleNamespace(domain_levels=("egpu.io/block", "egpu.io/leaf"))
        self.sync = SimpleNamespace(ledger=SimpleNamespace(topology=topology))

    def where_to_move(
        self, pod: dict[str, Any], demand: PodDemand, required: str | None
    ) -> tuple[tuple[str, ...], Any]:
        self.asked.append((pod["metadata"]["name"], demand.memory_bytes, required))
        return ("b0", "l1"), self.answer


class MovingClient(RecordingClient):
    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[tuple[str, Any]] = []

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        self.patches.append((path, body, content_type))
        return {**workload(), "metadata": {**workload()["metadata"], "resourceVersion": "8"}}

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.deleted.append((path, kwargs.get("body")))
        return {}


def moving_controller(pod: dict[str, Any], answer: Any) -> tuple[ResizeController, MovingClient]:
    client = MovingClient()
    store = {f"ns/{pod['metadata']['name']}": pod}
    runtime = fed_runtime(client, {"n1": node(memory="2.5Gi")}, store)
    body = workload()
    body["spec"]["resize"]["onInfeasible"] = "Move"
    body["metadata"]["resourceVersion"] = "7"
    runtime.workloads["ns/w"] = body
    binder = FakeBinder(answer)
    return ResizeController(runtime, AnnotationUsageReader(store), binder), client  # type: ignore[arg-type]


def test_move_records_the_new_size_then_deletes_the_pod() -> None:
    answer = Placement("move:ns/w-0", (PodAssignment(0, "n2", (0,), {}),), "egpu.io/leaf", {}, 1)
    ctl, client = moving_controller(member(), answer)
    moves = metric("egpu_resize_moves_total")
    run_pass(ctl, NOW)
    ((path, body, _),) = client.patches  # no pods/resize patch: it would not fit
    assert path == "/apis/egpu.io/v1alpha1/namespaces/ns/gpuworkloads/w"
    assert body["metadata"]["resourceVersion"] == "7", "only onto the workload as it was read"
    record = json.loads(body["metadata"]["annotations"]["egpu.io/moved-members"])["0"]
    assert record == {
        "within": ["b0", "l1"],
        "containers": {"main": {"requests": {"cpu": "1", "memory": "3Gi"}, "limits": {}}},
    }
    assert ctl.runtime.workloads["ns/w"]["metadata"]["resourceVersion"] == "8"
    ((deleted, precondition),) = client.deleted
    assert deleted == "/api/v1/namespaces/ns/pods/w-0"
    assert precondition["preconditions"] == {"uid": "uid-w-0"}
    assert ctl.binder.asked == [("w-0", 3 * GIB, None)]  # type: ignore[union-attr]
    moved = events(client, "ResizeMove")
    assert {e["involvedObject"]["kind"] for e in moved} == {"GPUWorkload", "Pod"}
    assert "on node n2 in egpu.io/leaf=l1: the pod restarts" in moved[0]["message"]
    assert events(client, "ResizeInfeasible") == []
    assert metric("egpu_resize_moves_total") == moves + 1


def test_move_without_room_in_the_domain_waits_and_says_so() -> None:
    answer = Unschedulable("move:ns/w-0", UnschedulableReason.INSUFFICIENT_CAPACITY, "no room")
    ctl, client = moving_controller(member(), answer)
    run_pass(ctl, NOW)
    run_pass(ctl, NOW + REVISIT_S)
    assert client.patches == [] and client.deleted == []
    waiting = events(client, "ResizeInfeasible")
    assert len(waiting) == 2, "once on the workload, once on the pod"
    assert "no other node in egpu.io/leaf=l1 has room for it (no room)" in waiting[0]["message"]
    assert "waiting for room (resize policy: Move)" in waiting[0]["message"]


def test_a_kubelet_infeasible_resize_moves_the_pod_at_its_specified_size() -> None:
    pod = member(memory="3Gi", usage="2.3Gi")
    pod["metadata"]["generation"] = 2
    pod["status"]["observedGeneration"] = 2
    pod["status"]["conditions"].append(
        {"type": "PodResizePending", "status": "True", "reason": "Infeasible", "message": "full"}
    )
    answer = Placement("move:ns/w-0", (PodAssignment(0, "n2", (0,), {}),), "egpu.io/leaf", {}, 1)
    ctl, client = moving_controller(pod, answer)
    run_pass(ctl, NOW)
    ((_, body, _),) = client.patches
    record = json.loads(body["metadata"]["annotations"]["egpu.io/moved-members"])["0"]
    assert record["containers"]["main"]["requests"]["memory"] == "3Gi"
    assert len(client.deleted) == 1
    assert "the kubelet says full" in events(client, "ResizeMove")[0]["message"]
