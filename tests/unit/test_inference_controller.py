"""The GPUInferenceService controller against in-memory caches, a recording client and a
stub metrics reader: pods and Service built right, the decision applied, the status
(conditions, last decision, the engine's memory) written, the scale subresource
honoured, and no-GPU reported."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from egpu.actuators.serving import (
    ROLE_LABEL,
    SERVICE_LABEL,
    build_service,
    build_serving_pod,
    template_revision,
)
from egpu.controllers.inference import (
    InferenceController,
    SampleWindow,
    ServiceScaler,
    serving_pod_of,
    time_to_ready,
)
from egpu.controllers.runtime import Runtime
from egpu.kube.client import ApiError
from egpu.state.metrics import MetricsUnavailableError, Reading

pytestmark = pytest.mark.unit


class FakeInformer:
    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


class RecordingClient:
    """Creates and deletes land in the pod store, as a watch would bring them back."""

    def __init__(self, pods: dict[str, Any]) -> None:
        self.pods = pods
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.patches: list[tuple[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.services: dict[str, Any] = {}

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        if path in self.services:
            return dict(self.services[path])
        raise ApiError(404, {"reason": "NotFound"}, "GET", path)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("kind")
        if kind == "Event":
            self.events.append(body)
        elif kind == "Service":
            self.services[f"{path}/{body['metadata']['name']}"] = body
        else:
            self.created.append(body)
            self.pods[f"ns/{body['metadata']['name']}"] = body
        return body

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        self.patches.append((path, body))
        name = path.rsplit("/", 1)[-1]
        pod = self.pods.get(f"ns/{name}")
        if pod is not None and "labels" in body.get("metadata", {}):
            pod["metadata"]["labels"].update(body["metadata"]["labels"])
        return {}

    async def request(self, method: str, path: str, **_: Any) -> None:
        assert method == "DELETE"
        name = path.rsplit("/", 1)[-1]
        self.deleted.append(name)
        self.pods.pop(f"ns/{name}", None)

    def statuses(self) -> list[dict[str, Any]]:
        return [b["status"] for p, b in self.patches if p.endswith("/status")]


class StubReader:
    def __init__(self, reading: Reading | Exception) -> None:
        self.reading = reading

    async def read(self, pods: Any, now: float) -> Reading:
        if isinstance(self.reading, Exception):
            raise self.reading
        return self.reading


class FakeBinder:
    """The binder's public questions, answered from a fixed free-GPU histogram."""

    def __init__(self, free_histogram: tuple[int, ...]) -> None:
        self.free_histogram = free_histogram
        self.cached = 0  # pods the nodes holding the artefacts could take
        self.asked_artefacts: tuple[str, ...] = ()

    def free_pod_slots(self, gpus_per_pod: int, model: str | None) -> int:
        return sum(count * (free // gpus_per_pod) for free, count in enumerate(self.free_histogram))

    def cached_pod_slots(self, gpus_per_pod: int, model: str | None, artefacts: Any) -> int:
        self.asked_artefacts = tuple(artefacts)
        return self.cached

    def pod_explanation(self, namespace: str, pod: str) -> str | None:
        return None


def service(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template": {
            "metadata": {"labels": {"app": "chat"}},
            "spec": {
                "containers": [
                    {"name": "server", "image": "sim:1", "ports": [{"containerPort": 8080}]}
                ]
            },
        },
        "gpusPerPod": 1,
        "minReplicas": 1,
        "maxReplicas": 20,
        "scaling": {
            "metric": "Concurrency",
            "target": 4,
            "source": {"podMetrics": {"port": 8080}},
        },
        "behavior": {"stableWindow": "10s", "panicWindow": "2s", "scrapeInterval": "1s"},
    }
    body.update(spec)
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUInferenceService",
        "metadata": {"name": "chat", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": body,
    }


def make(
    body: dict[str, Any],
    reading: Reading | Exception | None = None,
    free_histogram: tuple[int, ...] | None = None,
) -> tuple[InferenceController, RecordingClient]:
    pods: dict[str, Any] = {}
    client = RecordingClient(pods)
    runtime = Runtime(
        client=client,  # type: ignore[arg-type]
        nodes=FakeInformer({}),  # type: ignore[arg-type]
        pods=FakeInformer(pods),  # type: ignore[arg-type]
    )
    binder = FakeBinder(free_histogram) if free_histogram is not None else None
    ctl = InferenceController(runtime, binder)  # type: ignore[arg-type]
    stub = StubReader(Reading(value=4.0) if reading is None else reading)
    ctl._reader = lambda spec, scaler: stub  # type: ignore[method-assign]
    ctl.bodies["ns/chat"] = body
    ctl.scalers["ns/chat"] = ServiceScaler(window=SampleWindow(keep_s=60))
    return ctl, client


def ready_all(client: RecordingClient, bound: bool = True) -> None:
    for pod in client.pods.values():
        pod.setdefault("status", {})["conditions"] = [{"type": "Ready", "status": "True"}]
        pod["status"]["phase"] = "Running"
        pod["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        if bound:
            pod["spec"]["nodeName"] = "n1"


def scale(ctl: InferenceController) -> None:
    scaler = ctl.scalers["ns/chat"]
    scaler.expectations.pending.clear()  # the fake store already shows every action
    scaler.retry_at = 0.0
    asyncio.run(ctl.scale("ns/chat"))


def serving(client: RecordingClient) -> list[dict[str, Any]]:
    return [p for p in client.pods.values() if p["metadata"]["labels"][ROLE_LABEL] == "serving"]


def test_pods_and_service_are_built_for_the_binder_and_the_service() -> None:
    body = service(gpuModel="NVIDIA-L40S")
    pod = build_serving_pod(body, "abc", 3, "warm")
    meta = pod["metadata"]
    assert meta["name"] == "chat-abc-3"
    assert meta["labels"][SERVICE_LABEL] == "chat" and meta["labels"][ROLE_LABEL] == "warm"
    assert meta["labels"]["app"] == "chat"
    assert "egpu.io/gang" not in meta["labels"]  # a gang of one
    assert meta["annotations"]["egpu.io/gpu-model"] == "NVIDIA-L40S"
    assert meta["ownerReferences"][0]["uid"] == "u1"
    assert pod["spec"]["schedulerName"] == "egpu-scheduler"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    svc = build_service(body)
    assert svc["spec"]["selector"] == {SERVICE_LABEL: "chat", ROLE_LABEL: "serving"}
    assert svc["spec"]["ports"][0]["port"] == 8080


def test_the_revision_follows_the_template_not_the_scaling() -> None:
    a = service()["spec"]
    b = {**a, "maxReplicas": 40}
    c = {**a, "template": {**a["template"], "metadata": {"labels": {"app": "v2"}}}}
    assert template_revision(a) == template_revision(b) != template_revision(c)


def test_pod_facts_and_time_to_ready() -> None:
    pod = build_serving_pod(service(), "abc", 2, "serving")
    pod["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:42Z"}
        ],
    }
    facts = serving_pod_of(pod)
    assert (facts.index, facts.revision, facts.role, facts.ready, facts.bound) == (
        2,
        "abc",
        "serving",
        True,
        False,
    )
    assert time_to_ready(pod) == 42.0


def test_a_new_service_gets_its_minimum_a_service_and_a_status() -> None:
    ctl, client = make(service(), Reading(value=0.0))
    scale(ctl)
    assert len(serving(client)) == 1
    assert any(path.endswith("/services/chat") for path in client.services)
    status = client.statuses()[-1]
    assert status["desiredReplicas"] == 1
    assert status["selector"] == "egpu.io/inference-service=chat,egpu.io/role=serving"
    assert {c["type"] for c in status["conditions"]} >= {
        "Valid",
        "Ready",
        "CapacityLimited",
        "ScalingActive",
    }


def test_a_flash_crowd_panics_and_scales_up_with_an_event() -> None:
    ctl, client = make(service(), Reading(value=4.0))
    scale(ctl)
    ready_all(client)
    ctl._reader = lambda spec, scaler: StubReader(Reading(value=80.0))  # type: ignore[method-assign]
    scale(ctl)
    status = client.statuses()[-1]
    assert status["lastDecision"]["reason"] == "Panic"
    assert status["desiredReplicas"] == 10  # rate-limited to ready x 10
    assert len(serving(client)) == 10
    assert status["scaler"]["panicSince"]
    assert "PanicScaledUp" in {e["reason"] for e in client.events}


def test_memory_written_to_the_status_survives_a_restart() -> None:
    ctl, client = make(service(), Reading(value=40.0))
    scale(ctl)
    ready_all(client)
    scale(ctl)
    saved = client.statuses()[-1]
    assert saved["desiredReplicas"] == 10
    # A new operator: empty window, the status as the API server has it, low load now.
    body = {**service(), "status": saved}
    ctl2, client2 = make(body, Reading(value=4.0))
    client2.pods.update(client.pods)
    scale(ctl2)
    status = client2.statuses()[-1]
    # Stabilisation remembered the high recommendation: no drop to 1.
    assert status["desiredReplicas"] == 10, status["lastDecision"]


def test_spec_replicas_overrides_the_autoscaler() -> None:
    ctl, client = make(service(replicas=3), Reading(value=400.0))
    scale(ctl)
    status = client.statuses()[-1]
    assert status["desiredReplicas"] == 3 and len(serving(client)) == 3
    assert status["lastDecision"]["reason"] == "ScaleSubresource"
    active = next(c for c in status["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "ReplicasSetExternally")


def test_no_free_gpu_is_reported_in_the_status_not_hung_on() -> None:
    # Three full nodes and one with a free GPU: room for the first replica only.
    ctl, client = make(service(), Reading(value=4.0), free_histogram=(3, 1))
    scale(ctl)
    ready_all(client)
    ctl.binder.free_histogram = (4,)  # type: ignore[union-attr]
    ctl._reader = lambda spec, scaler: StubReader(Reading(value=40.0))  # type: ignore[method-assign]
    scale(ctl)
    status = client.statuses()[-1]
    limited = next(c for c in status["conditions"] if c["type"] == "CapacityLimited")
    assert (limited["status"], limited["reason"]) == ("True", "InsufficientGPUs")
    assert "has GPUs for 1" in limited["message"]
    assert len(serving(client)) == 1


def test_pods_the_binder_cannot_place_make_the_service_capacity_limited() -> None:
    ctl, client = make(service(replicas=2), Reading(value=0.0))
    scale(ctl)
    for pod in client.pods.values():
        pod["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"  # long pending
    scale(ctl)
    status = client.statuses()[-1]
    limited = next(c for c in status["conditions"] if c["type"] == "CapacityLimited")
    assert limited["status"] == "True"
    assert "2 pods waiting for a GPU" in limited["message"]


def test_unreadable_metrics_hold_the_count_and_say_why() -> None:
    ctl, client = make(service(minReplicas=0), MetricsUnavailableError("prometheus down"))
    scale(ctl)
    status = client.statuses()[-1]
    active = next(c for c in status["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "MetricsUnavailable")
    assert "prometheus down" in active["message"]
    assert status["lastDecision"]["reason"] == "NoMetrics"


def test_an_unsupported_cron_marks_the_service_invalid() -> None:
    body = service(
        schedule=[{"name": "m", "cron": "0 0 1 * *", "duration": "1h", "minReplicas": 2}]
    )
    ctl, client = make(body)
    asyncio.run(ctl.reconcile_key("ns/chat"))
    status = client.statuses()[-1]
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and "day-of-month" in valid["message"]
    assert client.created == []


def test_last_decision_time_is_rfc3339() -> None:
    ctl, client = make(service(), Reading(value=4.0))
    scale(ctl)
    stamp = client.statuses()[-1]["lastDecision"]["time"]
    assert dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None


def test_a_remembered_crowd_sizes_the_warm_pool_and_the_status_says_why() -> None:
    now = dt.datetime.now(dt.UTC)

    def stamp(seconds_ago: float) -> str:
        return (now - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    body = service(warmPool={"size": 0, "maxSize": 10})
    body["status"] = {
        "scaler": {"bursts": [{"startTime": stamp(60), "lastSeenTime": stamp(30), "replicas": 8}]}
    }
    ctl, client = make(body)
    scale(ctl)
    status = client.statuses()[-1]
    decision = status["lastDecision"]
    assert decision["replicas"] == 1 and decision["warmReplicas"] == 7, decision
    assert "1 crowd seen, peak 8 replicas" in decision["message"]
    assert len(status["scaler"]["bursts"]) == 1
    warm = [p for p in client.pods.values() if p["metadata"]["labels"][ROLE_LABEL] == "warm"]
    assert len(warm) == 7
    # Without the ceiling nothing is learned, whatever the status remembers.
    plain = service()
    plain["status"] = body["status"]
    ctl, client = make(plain)
    scale(ctl)
    assert client.statuses()[-1]["lastDecision"].get("warmReplicas") == 0
    assert not client.statuses()[-1].get("scaler", {}).get("bursts")


def test_a_declared_tide_is_learned_from_the_readings_and_a_new_period_starts_afresh() -> None:
    ctl, _client = make(service(tide={"period": "1h", "buckets": 60}), Reading(value=6.0))
    scale(ctl)
    scaler = ctl.scalers["ns/chat"]
    assert scaler.tide is not None and scaler.tide_policy is not None
    seen = [b for b in scaler.tide.buckets if b is not None]
    assert [b.peak for b in seen] == [6.0]
    ctl.bodies["ns/chat"] = service(tide={"period": "2h", "buckets": 60})
    ctl._reader = lambda spec, scaler: StubReader(Reading(value=3.0))  # type: ignore[method-assign]
    scale(ctl)
    assert scaler.tide_policy is not None and scaler.tide_policy.period_s == 7200.0
    assert [b.peak for b in scaler.tide.buckets if b is not None] == [3.0]
    # No tide declared: nothing is learned, nothing kept.
    ctl.bodies["ns/chat"] = service()
    scale(ctl)
    assert scaler.tide is None and scaler.tide_policy is None


def test_the_learned_tide_is_kept_in_the_status_and_restored_after_a_restart() -> None:
    body = service(tide={"period": "1h", "buckets": 60})
    ctl, client = make(body, Reading(value=6.0))
    scale(ctl)
    saved = client.statuses()[-1]
    assert saved["tide"]["periodSeconds"] == 3600.0
    # A new operator reads the status the API server kept; the load is lower now.
    ctl2, client2 = make({**body, "status": saved}, Reading(value=3.0))
    client2.pods.update(client.pods)
    scale(ctl2)
    scaler = ctl2.scalers["ns/chat"]
    assert scaler.tide is not None
    assert [b.peak for b in scaler.tide.buckets if b is not None] == [6.0]
    # A tide taken out of the spec takes the stored profile with it.
    ctl3, client3 = make({**service(), "status": saved}, Reading(value=3.0))
    client3.pods.update(client.pods)
    scale(ctl3)
    assert client3.statuses()[-1]["tide"] is None


def _started(pod: dict[str, Any], path: str | None, seconds: int) -> None:
    """The pod as the binder and its kubelet left it: bound on a path, Ready `seconds`
    after its creation."""
    if path is not None:
        pod["metadata"].setdefault("annotations", {})["egpu.io/start-path"] = path
    pod["metadata"]["uid"] = pod["metadata"]["name"]
    pod["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    pod["spec"]["nodeName"] = "n1"
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": f"2026-01-01T00:00:{seconds:02d}Z",
            }
        ],
    }


def test_start_paths_are_measured_apart_planned_for_and_reported() -> None:
    body = service(startup={"artefacts": ["sim:1", "models/chat@r1"]}, minReplicas=2)
    ctl, client = make(body, free_histogram=(0, 0, 0, 0, 0, 0, 0, 0, 8))
    scale(ctl)
    pods = serving(client)
    assert len(pods) == 2
    assert {p["metadata"]["annotations"]["egpu.io/artefacts"] for p in pods} == {
        "sim:1,models/chat@r1"
    }
    _started(pods[0], "Cached", 8)
    _started(pods[1], "Cold", 41)
    binder = ctl.binder
    assert isinstance(binder, FakeBinder)
    binder.cached = 6
    scale(ctl)
    scaler = ctl.scalers["ns/chat"]
    assert scaler.ready_times == {"Cached": (8.0,), "Cold": (41.0,)}
    assert binder.asked_artefacts == ("sim:1", "models/chat@r1")
    assert scaler.start_plan is not None and scaler.start_plan.path == "Cached"
    assert scaler.time_to_ready_s == 8.0
    scale(ctl)  # the status written after the measurement
    status = client.statuses()[-1]
    assert status["scaler"]["startPaths"] == [
        {"path": "Cached", "timeToReadySeconds": 8.0, "samples": 1},
        {"path": "Cold", "timeToReadySeconds": 41.0, "samples": 1},
    ]
    assert status["scaler"]["timeToReadySeconds"] == 8.0
    assert "new pods start Cached (8s; room for 6" in status["lastDecision"]["message"]
    # No room left on the nodes that hold the artefacts: the next pods start Cold.
    binder.cached = 0
    scale(ctl)
    assert scaler.start_plan.path == "Cold" and scaler.time_to_ready_s == 41.0
    # A restarted operator plans with what the status kept.
    ctl2, _ = make({**body, "status": status}, free_histogram=(0,) * 8 + (8,))
    assert isinstance(ctl2.binder, FakeBinder)
    ctl2.binder.cached = 6
    scale(ctl2)
    assert ctl2.scalers["ns/chat"].ready_times == {"Cached": (8.0,), "Cold": (41.0,)}


def test_a_service_without_artefacts_has_one_path_and_no_annotation() -> None:
    ctl, client = make(service(), free_histogram=(0, 0, 0, 0, 0, 0, 0, 0, 8))
    scale(ctl)
    pod = serving(client)[0]
    assert "egpu.io/artefacts" not in pod["metadata"].get("annotations", {})
    _started(pod, None, 30)
    scale(ctl)
    scaler = ctl.scalers["ns/chat"]
    assert scaler.ready_times == {"Cold": (30.0,)}
    assert scaler.start_plan is not None and scaler.start_plan.cached_room is None
    assert "new pods start" not in (client.statuses()[-1].get("lastDecision") or {}).get(
        "message", ""
    )


def test_a_promotion_is_measured_as_the_warm_path() -> None:
    body = service(warmPool={"size": 1})
    ctl, client = make(body)
    scale(ctl)
    warm = [p for p in client.pods.values() if p["metadata"]["labels"][ROLE_LABEL] == "warm"]
    assert len(warm) == 1
    scaler = ctl.scalers["ns/chat"]
    name = warm[0]["metadata"]["name"]
    scaler.promotions[name] = __import__("time").time() - 0.25
    warm[0]["metadata"]["labels"][ROLE_LABEL] = "serving"
    ctl._on_pod("MODIFIED", None, warm[0])
    assert scaler.ready_times["Warm"][0] == pytest.approx(0.25, abs=0.2)
    assert name not in scaler.promotions
