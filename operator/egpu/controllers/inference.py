"""GPUInferenceService: serving pods, their Service, and the autoscaler that sizes them.

Two loops per operator, in the shape of the workloads controller:
- a scaler task per service reads its metric every scrapeInterval, asks the pure
  engine (`egpu.engines.autoscaling.decide`) for the serving and warm counts, and
  reconciles at once;
- a level-based loop reconciles every service whose pods or object changed (or all
  of them, now and then) towards the latest decision.

Reconciling = the Service in front of the ready serving pods, the pod plan of
`egpu.engines.inference.rollout` (create / delete / promote / demote, rolling
updates by surge), and the status: counts, last decision, conditions, and the
engine's memory (so stabilisation survives a restart). spec.replicas, set by
`kubectl scale` or an HPA through the scale subresource, overrides the autoscaler.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf
from pydantic import ValidationError

from egpu import API_VERSION, GROUP, VERSION
from egpu.actuators.events import patch_status, post_event
from egpu.actuators.pods import create_pod, delete_pod
from egpu.actuators.serving import (
    INDEX_LABEL,
    REVISION_LABEL,
    ROLE_LABEL,
    SERVICE_LABEL,
    build_service,
    build_serving_pod,
    role_patch,
    selector_string,
    template_revision,
)
from egpu.api.base import validation_message
from egpu.api.inference import (
    GPUInferenceServiceSpec,
    GPUInferenceServiceStatus,
    ScaleDecision,
    ScalerStatus,
    TideStatus,
)
from egpu.controllers.binder import Binder
from egpu.controllers.common import EventOnce, is_ready, now_text, parse_time
from egpu.controllers.runtime import Runtime, Trigger
from egpu.domain.conditions import same_status, set_condition
from egpu.domain.duration import parse_duration
from egpu.domain.labels import START_PATH_ANNOTATION, StartPath
from egpu.engines.autoscaling import (
    Decision,
    MetricKind,
    MetricSample,
    ScalerMemory,
    ScalerState,
    ScalingPolicy,
    build_daily_history,
    decider,
)
from egpu.engines.autoscaling.tide import TidePolicy, TideProfile, empty_profile, observe
from egpu.engines.autoscaling.warm_pool import warm_target
from egpu.engines.inference import start_paths
from egpu.engines.inference.policy import (
    declared_service_stats,
    memory_changed_materially,
    memory_from_status,
    memory_to_status,
    scaling_policy,
    start_paths_from_status,
    start_paths_to_status,
    tide_from_status,
    tide_to_status,
)
from egpu.engines.inference.rollout import (
    SERVING,
    WARM,
    Counts,
    PodPlan,
    ServingPod,
    count_pods,
    plan_pods,
)
from egpu.engines.inference.start_paths import StartPlan
from egpu.kube.client import JSON, ApiError, gather_limited, path_for
from egpu.observability.metrics import INVALID_OBJECTS, RECONCILE_SECONDS, RECONCILE_TOTAL
from egpu.state.metrics import (
    DemandHistory,
    MetricsReader,
    MetricsUnavailableError,
    PodMetricsReader,
    PrometheusReader,
    Reading,
    SampleWindow,
)

log = logging.getLogger("egpu.controllers.inference")
KIND = "GPUInferenceService"
PLURAL = "gpuinferenceservices"
RESYNC_SECONDS = 30.0
# A create/delete/relabel not seen in the cache after this long is assumed lost.
EXPECTATION_SECONDS = 10.0
# Unplaced for this long: the binder found no GPU for the pod.
PENDING_GRACE_SECONDS = 3.0
# The engine's memory is written when it changes materially, or this often.
MEMORY_WRITE_SECONDS = 15.0
# The learned tide profile is written this often at most (a restart loses no more).
TIDE_WRITE_SECONDS = 60.0
# lastDecision is rewritten when its count or reason changes, or this often.
DECISION_REFRESH_SECONDS = 30.0

REASONS = {
    "no_metrics": "NoMetrics",
    "hold": "Hold",
    "tolerance": "Tolerance",
    "scale_up": "ScaleUp",
    "scale_down": "ScaleDown",
    "panic": "Panic",
    "cooldown": "Cooldown",
    "stabilizing": "Stabilizing",
    "rate_limited": "RateLimited",
    "min_replicas": "MinReplicas",
    "schedule_floor": "ScheduleFloor",
    "forecast_floor": "ForecastFloor",
    "tide": "Tide",
    "idle_wait": "IdleWait",
    "scale_to_zero": "ScaleToZero",
    "wake": "Wake",
}


def quantity_text(value: float) -> str:
    text = f"{max(0.0, value):.3f}".rstrip("0").rstrip(".")
    return text or "0"


def serving_pod_of(pod: JSON) -> ServingPod:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    index = labels.get(INDEX_LABEL, "")
    phase = (pod.get("status") or {}).get("phase")
    return ServingPod(
        name=meta["name"],
        index=int(index) if index.isdigit() else 10**6,
        revision=labels.get(REVISION_LABEL, ""),
        role=WARM if labels.get(ROLE_LABEL) == WARM else SERVING,
        ready=is_ready(pod),
        bound=bool((pod.get("spec") or {}).get("nodeName")),
        deleting=bool(meta.get("deletionTimestamp")),
        failed=phase in ("Failed", "Succeeded"),
        created=parse_time(meta.get("creationTimestamp")) or 0.0,
    )


def time_to_ready(pod: JSON) -> float | None:
    """Seconds from creation to Ready: the cold start the autoscaler plans around."""
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    ready_at = next(
        (
            parse_time(c.get("lastTransitionTime"))
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") == "True"
        ),
        None,
    )
    if created is None or ready_at is None or ready_at < created:
        return None
    return ready_at - created


def free_pod_slots(binder: Binder | None, gpus_per_pod: int, model: str | None) -> int | None:
    """Pods of this shape the binder's ledger could place now (GPUs only; None = unknown)."""
    if binder is None or gpus_per_pod <= 0:
        return None
    try:
        return binder.free_pod_slots(gpus_per_pod, model)
    except (KeyError, ValueError):
        return None


def cached_pod_slots(
    binder: Binder | None, gpus_per_pod: int, model: str | None, artefacts: tuple[str, ...]
) -> int | None:
    """Pods of this shape the nodes holding every artefact could take now (None: unknown)."""
    if binder is None or gpus_per_pod <= 0 or not artefacts:
        return None
    try:
        return binder.cached_pod_slots(gpus_per_pod, model, artefacts)
    except (KeyError, ValueError):
        return None


def same_start_path(
    message: str | None, plan: StartPlan | None, spec: GPUInferenceServiceSpec
) -> bool:
    """The written decision names the path the next pods get (a change is worth a write)."""
    if plan is None or spec.startup is None:
        return True
    return f"{plan.headline} (" in (message or "")


def terminating(exc: ApiError) -> bool:
    """The namespace is going: its objects follow, nothing to report."""
    return exc.status == 403 and "being terminated" in exc.message


def binder_explanation(binder: Binder | None, namespace: str, pod: str) -> str | None:
    return binder.pod_explanation(namespace, pod) if binder is not None else None


@dataclass
class Expectations:
    """Actions sent but not yet seen in the pod cache: no new plan until they are."""

    pending: dict[str, float] = field(default_factory=dict)

    def expect(self, name: str, now: float) -> None:
        self.pending[name] = now + EXPECTATION_SECONDS

    def observed(self, name: str) -> None:
        self.pending.pop(name, None)

    def settled(self, now: float) -> bool:
        self.pending = {n: t for n, t in self.pending.items() if t > now}
        return not self.pending


@dataclass
class ServiceScaler:
    """What the controller keeps per service between passes."""

    window: SampleWindow
    history: DemandHistory = field(default_factory=DemandHistory)
    tide: TideProfile | None = None  # learned of `tide_policy`'s cycle
    tide_policy: TidePolicy | None = None
    tide_written_at: float | None = None
    memory: ScalerMemory | None = None
    written_memory: ScalerMemory | None = None
    memory_written_at: float = 0.0
    decision: Decision | None = None
    decided_at: float = 0.0
    metric_value: float | None = None
    metrics_error: str | None = None
    reader: MetricsReader | None = None
    reader_key: str = ""
    # Time to ready per start path (recent measurements) and the last plan made with it.
    ready_times: dict[StartPath, tuple[float, ...]] = field(default_factory=dict)
    ready_times_restored: bool = False
    start_plan: StartPlan | None = None
    promotions: dict[str, float] = field(default_factory=dict)  # pod -> promotion sent at
    measured: set[str] = field(default_factory=set)
    expectations: Expectations = field(default_factory=Expectations)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    service_checked_at: float = 0.0
    last_serving: int | None = None
    backoff: float = 0.0
    retry_at: float = 0.0

    @property
    def time_to_ready_s(self) -> float | None:
        """What the last decision planned with; before any plan, the p90 of all pods."""
        if self.start_plan is not None and self.start_plan.time_to_ready_s is not None:
            return self.start_plan.time_to_ready_s
        new_pods = (start_paths.CACHED, start_paths.COLD)
        return start_paths.p90([t for p in new_pods for t in self.ready_times.get(p, ())])


class InferenceController:
    def __init__(self, runtime: Runtime, binder: Binder | None = None) -> None:
        self.runtime = runtime
        self.binder = binder
        self.trigger = Trigger()
        self.dirty: set[str] = set()
        self.bodies: dict[str, JSON] = {}
        self.scalers: dict[str, ServiceScaler] = {}
        self.events = EventOnce(runtime.client)
        self._session: aiohttp.ClientSession | None = None
        runtime.pods.add_listener(self._on_pod)

    # -- inputs ------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _on_pod(self, event: str, old: JSON | None, new: JSON | None) -> None:
        if event == "RESYNC":
            self.dirty.update(self.bodies)
            self.trigger.kick()
            return
        pod = new or old or {}
        meta = pod.get("metadata", {})
        name = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if not name:
            return
        key = f"{meta['namespace']}/{name}"
        scaler = self.scalers.get(key)
        if scaler is not None:
            scaler.expectations.observed(_expectation(meta["name"], event, pod))
            self._measure_promotion(scaler, meta, event)
        self.dirty.add(key)
        self.trigger.kick()

    def upsert(self, key: str, body: JSON) -> None:
        self.bodies[key] = body
        scaler = self.scalers.get(key)
        if scaler is None:
            scaler = self.scalers[key] = ServiceScaler(window=SampleWindow(keep_s=3600))
        if self.runtime.leading.is_set():
            self._start_scaler(key, scaler)
        self.touch(key)

    def _start_scaler(self, key: str, scaler: ServiceScaler) -> None:
        """Scalers write (pods, status): they run on the leader only."""
        if scaler.task is None or scaler.task.done():
            scaler.task = asyncio.create_task(self._scale_loop(key), name=f"scaler-{key}")

    def forget(self, key: str) -> None:
        self.bodies.pop(key, None)
        scaler = self.scalers.pop(key, None)
        if scaler is not None and scaler.task is not None:
            scaler.task.cancel()

    def touch(self, key: str) -> None:
        self.dirty.add(key)
        self.trigger.kick()

    # -- loops -------------------------------------------------------------------------

    async def run(self) -> None:
        last_full = 0.0
        loop = asyncio.get_running_loop()
        for key, scaler in self.scalers.items():  # leading from now on
            self._start_scaler(key, scaler)
        try:
            while True:
                await self.trigger.wait(timeout=RESYNC_SECONDS)
                if loop.time() - last_full >= RESYNC_SECONDS:
                    self.dirty.update(self.bodies)
                    last_full = loop.time()
                keys, self.dirty = self.dirty, set()
                for key in keys:
                    await self.reconcile_key(key)
                INVALID_OBJECTS.labels(KIND).set(
                    sum(1 for b in self.bodies.values() if _invalid(b))
                )
        finally:
            for scaler in self.scalers.values():
                if scaler.task is not None:
                    scaler.task.cancel()
            if self._session is not None:
                await self._session.close()

    async def _scale_loop(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        while key in self.bodies:
            started = loop.time()
            interval = 2.0
            try:
                interval = await self.scale(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # one service's failure must not stop its scaler
                log.exception("scaling %s failed", key)
            await asyncio.sleep(max(0.05, interval - (loop.time() - started)))

    async def reconcile_key(self, key: str) -> None:
        body = self.bodies.get(key)
        scaler = self.scalers.get(key)
        if body is None or scaler is None:
            return
        now = time.monotonic()
        if now < scaler.retry_at:
            return  # backing off after a failure; the scaler loop comes back
        async with scaler.lock:
            with RECONCILE_SECONDS.labels(KIND).time():
                try:
                    outcome = await self.reconcile(body, scaler)
                    scaler.backoff = 0.0
                except ApiError as exc:
                    outcome = "error"
                    scaler.backoff = min(30.0, max(0.5, scaler.backoff * 2))
                    scaler.retry_at = now + scaler.backoff
                    if not terminating(exc):
                        log.warning("reconcile of %s failed: %s", key, exc)
            RECONCILE_TOTAL.labels(KIND, outcome).inc()

    # -- the autoscaler ----------------------------------------------------------------

    def _reader(self, spec: GPUInferenceServiceSpec, scaler: ServiceScaler) -> MetricsReader:
        source = spec.scaling.source
        key = source.model_dump_json() + spec.scaling.metric
        if spec.scaling.latency_slo is not None:
            key += spec.scaling.latency_slo.model_dump_json()
        if scaler.reader is not None and scaler.reader_key == key:
            return scaler.reader
        metric = MetricKind(spec.scaling.metric)
        declared = declared_service_stats(spec)
        reader: MetricsReader
        if source.prometheus is not None:
            reader = PrometheusReader(
                self.session,
                source.prometheus.url,
                source.prometheus.query,
                metric,
                queued_query=source.prometheus.queued_query,
                service=declared,
            )
        else:
            assert source.pod_metrics is not None
            reader = PodMetricsReader(
                self.session,
                source.pod_metrics.port,
                source.pod_metrics.path,
                metric,
                metric_name=source.pod_metrics.metric_name,
                service=declared,
            )
        scaler.reader, scaler.reader_key = reader, key
        return reader

    async def scale(self, key: str) -> float:
        """One scrape and one decision; returns the scrape interval to wait."""
        body = self.bodies.get(key)
        scaler = self.scalers.get(key)
        if body is None or scaler is None or body["metadata"].get("deletionTimestamp"):
            return 2.0
        try:
            spec = GPUInferenceServiceSpec.model_validate(body.get("spec") or {})
            policy = scaling_policy(spec, scaler.time_to_ready_s)
        except (ValidationError, ValueError):
            return 5.0  # reconcile reports it
        interval = parse_duration(spec.behavior.scrape_interval)
        scaler.window.keep_s = policy.stable_window_s + 2 * interval
        namespace, name = key.split("/", 1)
        pods = self._pods(namespace, name)
        ready_serving = [
            raw for pod, raw in pods if pod.role == SERVING and pod.ready and not pod.deleting
        ]
        now = time.time()
        if spec.replicas is not None:
            # Sized through the scale subresource: the metric would decide nothing.
            await self.reconcile_key(key)
            return interval
        try:
            reading = await self._reader(spec, scaler).read(ready_serving, now)
        except MetricsUnavailableError as exc:
            scaler.metrics_error = str(exc)
            reading = None
        if reading is not None:
            scaler.metrics_error = None
            stored = _status(body).tide
            self._record(scaler, policy, reading, len(ready_serving), now, stored)
        async with scaler.lock:
            self._decide(spec, policy, scaler, pods, body, now)
        await self.reconcile_key(key)
        return interval

    def _record(
        self,
        scaler: ServiceScaler,
        policy: ScalingPolicy,
        reading: Reading,
        ready: int,
        now: float,
        stored: TideStatus | None = None,
    ) -> None:
        sample = MetricSample(now, reading.value, ready, reading.arrival_rate, reading.queued)
        scaler.window.add(sample, reading.service)
        scaler.metric_value = reading.value
        demand = reading.arrival_rate if policy.metric is MetricKind.LATENCY_SLO else reading.value
        scaler.history.add(now, demand or 0.0)
        if policy.tide is None:
            scaler.tide, scaler.tide_policy = None, None
            return
        if scaler.tide is None:
            # After a restart: what the status kept of this cycle, if anything.
            scaler.tide = tide_from_status(stored, policy.tide)
            scaler.tide_policy = policy.tide if scaler.tide is not None else None
        if scaler.tide is None or scaler.tide_policy != policy.tide:
            # A new or changed cycle: what was learned of another cycle does not apply.
            scaler.tide, scaler.tide_policy = empty_profile(policy.tide), policy.tide
        scaler.tide = observe(scaler.tide, policy.tide, now, demand or 0.0)

    def _decide(
        self,
        spec: GPUInferenceServiceSpec,
        policy: ScalingPolicy,
        scaler: ServiceScaler,
        pods: list[tuple[ServingPod, JSON]],
        body: JSON,
        now: float,
    ) -> None:
        if scaler.memory is None:
            scaler.memory = memory_from_status(_status(body).scaler)
            scaler.written_memory = scaler.memory
        self._measure_time_to_ready(scaler, pods)  # plan with the newest measurements
        live = [p for p, _ in pods if not p.deleting and not p.failed]
        serving = [p for p in live if p.role == SERVING]
        warm = [p for p in live if p.role == WARM]
        current = len(serving)
        previous = scaler.decision.serving_replicas if scaler.decision else None
        revision = template_revision(body.get("spec") or {})
        if previous is not None and any(p.revision != revision for p in serving):
            current = min(current, previous)  # a rollout's surge is not demand
        pending_own = sum(1 for p in live if not p.bound)
        free = free_pod_slots(self.binder, spec.gpus_per_pod, spec.gpu_model)
        if free is not None:
            free = max(0, free - pending_own)
        history = build_daily_history(
            scaler.history.points(),
            now,
            scaler.history.bucket_s,
            scaler.history.days,
            policy.timezone,
        )
        state = ScalerState(
            current_replicas=current,
            ready_replicas=sum(p.ready for p in serving),
            warm_replicas=len(warm),
            memory=scaler.memory,
        )
        tide = scaler.tide if policy.tide is not None else None
        artefacts = tuple(spec.startup.artefacts) if spec.startup is not None else ()
        if not scaler.ready_times_restored:
            scaler.ready_times_restored = True
            restored = start_paths_from_status(_status(body).scaler)
            scaler.ready_times = {**restored, **scaler.ready_times}
        cached = cached_pod_slots(self.binder, spec.gpus_per_pod, spec.gpu_model, artefacts)
        if cached is not None:
            cached = max(0, cached - pending_own)  # the binder gives its pending pods those first

        decide_with = decider(policy, scaler.window.window(), state, now, free, history, tide)
        plan, decision = start_paths.decide_on_path(
            decide_with, scaler.ready_times, bool(artefacts), cached, len(live)
        )
        scaler.start_plan = plan
        scaler.memory = decision.memory
        scaler.decision = decision
        scaler.decided_at = now

    # -- reconciling -------------------------------------------------------------------

    def _pods(self, namespace: str, name: str) -> list[tuple[ServingPod, JSON]]:
        out = []
        for pod in self.runtime.pods.store.values():
            meta = pod["metadata"]
            if meta.get("namespace") != namespace:
                continue
            if (meta.get("labels") or {}).get(SERVICE_LABEL) != name:
                continue
            out.append((serving_pod_of(pod), pod))
        return out

    def _measure_time_to_ready(
        self, scaler: ServiceScaler, pods: list[tuple[ServingPod, JSON]]
    ) -> None:
        for pod, raw in pods:
            uid = raw["metadata"].get("uid", pod.name)
            if not pod.ready or uid in scaler.measured:
                continue
            scaler.measured.add(uid)
            seconds = time_to_ready(raw)
            if seconds is not None:
                marked = (raw["metadata"].get("annotations") or {}).get(START_PATH_ANNOTATION)
                path = start_paths.path_of(marked)
                scaler.ready_times = start_paths.recorded(scaler.ready_times, path, seconds)
        scaler.measured &= {raw["metadata"].get("uid", p.name) for p, raw in pods}

    @staticmethod
    def _measure_promotion(scaler: ServiceScaler, meta: JSON, event: str) -> None:
        """Warm path: from the promotion's patch to the pod seen serving (what the
        Service's endpoints follow)."""
        sent = scaler.promotions.get(meta.get("name", ""))
        if sent is None:
            return
        if event == "DELETED":
            scaler.promotions.pop(meta["name"], None)
        elif (meta.get("labels") or {}).get(ROLE_LABEL) == SERVING:
            scaler.promotions.pop(meta["name"], None)
            took = max(0.0, time.time() - sent)
            scaler.ready_times = start_paths.recorded(scaler.ready_times, start_paths.WARM, took)

    async def reconcile(self, body: JSON, scaler: ServiceScaler) -> str:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        stamp = now_text()
        status = _status(body)
        conditions = [c.model_dump(mode="json", by_alias=True) for c in status.conditions]
        if meta.get("deletionTimestamp"):
            return "deleting"  # the garbage collector removes the pods and the Service
        try:
            spec = GPUInferenceServiceSpec.model_validate(body.get("spec") or {})
            policy = scaling_policy(spec, scaler.time_to_ready_s)
        except (ValidationError, ValueError) as exc:
            message = validation_message(exc)
            conditions = set_condition(
                conditions, "Valid", False, "InvalidSpec", message, generation, stamp
            )
            await self._event(body, "Warning", "InvalidSpec", message)
            await self._write_status(
                body, {**_wire(status), "conditions": conditions, "observedGeneration": generation}
            )
            return "invalid"
        conditions = set_condition(
            conditions, "Valid", True, "Accepted", "the spec is valid", generation, stamp
        )
        now = time.time()
        await self._ensure_service(body, scaler, now)

        pods = self._pods(namespace, name)
        self._measure_time_to_ready(scaler, pods)
        revision = template_revision(body.get("spec") or {})
        serving_wanted, warm_wanted = self._wanted(spec, policy, scaler, pods)
        if scaler.expectations.settled(now):
            plan = plan_pods([p for p, _ in pods], revision, serving_wanted, warm_wanted)
            await self._act(body, revision, plan, scaler, now)

        counts = count_pods([p for p, _ in pods], revision)
        conditions = self._conditions(
            spec, scaler, pods, counts, serving_wanted, conditions, generation, stamp
        )
        await self._scale_events(body, scaler, serving_wanted)
        new_status: JSON = {
            **_wire(status),
            "replicas": counts.serving,
            "readyReplicas": counts.ready,
            "desiredReplicas": serving_wanted,
            "warmReplicas": counts.warm_ready,
            "conditions": conditions,
            "observedGeneration": generation,
            "selector": selector_string(name),
        }
        decision = self._last_decision(spec, scaler, status, serving_wanted, now)
        if decision is not None:
            new_status["lastDecision"] = decision.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        memory = self._memory_to_write(scaler, now)
        if memory is not None:
            new_status["scaler"] = memory.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._tide_to_write(policy, scaler, status, new_status, now)
        await self._write_status(body, new_status)
        return "ok"

    def _wanted(
        self,
        spec: GPUInferenceServiceSpec,
        policy: ScalingPolicy,
        scaler: ServiceScaler,
        pods: list[tuple[ServingPod, JSON]],
    ) -> tuple[int, int]:
        if spec.replicas is not None:
            serving = min(spec.replicas, spec.max_replicas)
            return serving, warm_target(spec.warm_pool.size, serving, spec.max_replicas)
        if scaler.decision is not None:
            return scaler.decision.serving_replicas, scaler.decision.warm_replicas
        # Before the first decision: keep what runs, within the bounds.
        current = sum(1 for p, _ in pods if p.role == SERVING and not p.deleting and not p.failed)
        serving = min(max(current, policy.min_replicas), policy.max_replicas)
        return serving, warm_target(policy.warm_pool_size, serving, policy.max_replicas)

    async def _act(
        self, body: JSON, revision: str, plan: PodPlan, scaler: ServiceScaler, now: float
    ) -> None:
        if plan.empty:
            return
        client = self.runtime.client
        namespace = body["metadata"]["namespace"]
        for change in plan.relabel:
            scaler.expectations.expect(f"relabel:{change.name}:{change.role}", now)
            if change.role == SERVING:
                scaler.promotions[change.name] = time.time()
        # A promotion never seen (the pod went first) is not measured.
        horizon = time.time() - EXPECTATION_SECONDS
        scaler.promotions = {n: t for n, t in scaler.promotions.items() if t > horizon}
        for new in plan.create:
            pod_name = build_serving_pod(body, revision, new.index, new.role)["metadata"]["name"]
            scaler.expectations.expect(f"add:{pod_name}", now)
        for gone in plan.delete:
            scaler.expectations.expect(f"delete:{gone}", now)
        results = await gather_limited(
            32,
            *(
                client.patch(path_for("v1", "pods", namespace, c.name), role_patch(c.role))
                for c in plan.relabel
            ),
            *(
                create_pod(client, build_serving_pod(body, revision, n.index, n.role))
                for n in plan.create
            ),
            *(delete_pod(client, namespace, gone) for gone in plan.delete),
        )
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            scaler.expectations.pending.clear()
            raise errors[0]

    async def _ensure_service(self, body: JSON, scaler: ServiceScaler, now: float) -> None:
        if now - scaler.service_checked_at < RESYNC_SECONDS:
            return
        meta = body["metadata"]
        path = path_for("v1", "services", meta["namespace"], meta["name"])
        wanted = build_service(body)
        try:
            current = await self.runtime.client.get(path)
        except ApiError as exc:
            if not exc.not_found:
                raise
            try:
                await self.runtime.client.create(
                    path_for("v1", "services", meta["namespace"]), wanted
                )
            except ApiError as create_exc:
                if not create_exc.conflict:
                    raise
        else:
            owners = current["metadata"].get("ownerReferences") or []
            if not any(o.get("uid") == meta.get("uid") for o in owners):
                await self._event(
                    body,
                    "Warning",
                    "ServiceConflict",
                    f"Service {meta['name']} exists and is not this service's: left alone",
                )
            elif (current.get("spec") or {}).get("selector") != wanted["spec"]["selector"] or (
                "ports" in wanted["spec"]
                and current["spec"].get("ports") != wanted["spec"]["ports"]
            ):
                patch = {"spec": {"selector": wanted["spec"]["selector"]}}
                if "ports" in wanted["spec"]:
                    patch["spec"]["ports"] = wanted["spec"]["ports"]
                await self.runtime.client.patch(path, patch)
        scaler.service_checked_at = now

    # -- status ------------------------------------------------------------------------

    def _conditions(
        self,
        spec: GPUInferenceServiceSpec,
        scaler: ServiceScaler,
        pods: list[tuple[ServingPod, JSON]],
        counts: Counts,
        serving_wanted: int,
        conditions: list[JSON],
        generation: int | None,
        stamp: str,
    ) -> list[JSON]:
        namespace = pods[0][1]["metadata"]["namespace"] if pods else ""
        now = time.time()
        waiting = [
            p
            for p, _ in pods
            if not p.bound and not p.deleting and now - p.created >= PENDING_GRACE_SECONDS
        ]
        decision = scaler.decision if spec.replicas is None else None
        if waiting or (decision is not None and decision.capacity_limited):
            parts = []
            if decision is not None and decision.capacity_limited:
                parts.append(
                    f"wanted {decision.recommended_replicas} serving replicas, "
                    f"the cluster has GPUs for {decision.serving_replicas}"
                )
            if waiting:
                why = binder_explanation(self.binder, namespace, waiting[0].name)
                parts.append(f"{len(waiting)} pods waiting for a GPU" + (f": {why}" if why else ""))
            conditions = set_condition(
                conditions,
                "CapacityLimited",
                True,
                "InsufficientGPUs",
                "; ".join(parts)[:1024],
                generation,
                stamp,
            )
        else:
            conditions = set_condition(
                conditions, "CapacityLimited", False, "CapacityAvailable", "", generation, stamp
            )
        if spec.replicas is not None:
            conditions = set_condition(
                conditions,
                "ScalingActive",
                False,
                "ReplicasSetExternally",
                f"spec.replicas={spec.replicas} (scale subresource) overrides the autoscaler",
                generation,
                stamp,
            )
        elif scaler.metrics_error:
            conditions = set_condition(
                conditions,
                "ScalingActive",
                False,
                "MetricsUnavailable",
                scaler.metrics_error[:1024],
                generation,
                stamp,
            )
        else:
            conditions = set_condition(
                conditions, "ScalingActive", True, "MetricsRead", "", generation, stamp
            )
        rolling = counts.updated < counts.serving
        conditions = set_condition(
            conditions,
            "Progressing",
            rolling,
            "RollingUpdate" if rolling else "UpToDate",
            f"{counts.updated}/{counts.serving} serving pods run the current template",
            generation,
            stamp,
        )
        ready = counts.ready >= serving_wanted
        conditions = set_condition(
            conditions,
            "Ready",
            ready,
            "ReplicasReady" if ready else "ReplicasNotReady",
            f"{counts.ready}/{serving_wanted} serving replicas ready, {counts.warm_ready} warm",
            generation,
            stamp,
        )
        return conditions

    def _last_decision(
        self,
        spec: GPUInferenceServiceSpec,
        scaler: ServiceScaler,
        status: GPUInferenceServiceStatus,
        serving: int,
        now: float,
    ) -> ScaleDecision | None:
        metric = None if scaler.metric_value is None else quantity_text(scaler.metric_value)
        warm: int | None = None
        if spec.replicas is not None:
            reason = "ScaleSubresource"
            message = f"spec.replicas={spec.replicas} set through the scale subresource"
        elif scaler.decision is not None:
            reason = REASONS.get(scaler.decision.reason.code.value, "Decided")
            message = scaler.decision.reason.message
            if scaler.start_plan is not None and spec.startup is not None:
                message = f"{message}; {scaler.start_plan.describe()}"
            warm = scaler.decision.warm_replicas
        else:
            return None
        previous = status.last_decision
        if (
            previous is not None
            and previous.replicas == serving
            and previous.warm_replicas == warm
            and previous.reason == reason
            and same_start_path(previous.message, scaler.start_plan, spec)
            and now - previous.time.timestamp() < DECISION_REFRESH_SECONDS
        ):
            return previous
        return ScaleDecision(
            time=dt.datetime.fromtimestamp(now, dt.UTC),
            replicas=serving,
            reason=reason,
            metric_value=metric,
            message=message[:1024],
            warm_replicas=warm,
        )

    def _memory_to_write(self, scaler: ServiceScaler, now: float) -> ScalerStatus | None:
        if scaler.memory is None:
            return None
        written = scaler.written_memory or ScalerMemory()
        if memory_changed_materially(written, scaler.memory) or (
            now - scaler.memory_written_at >= MEMORY_WRITE_SECONDS
        ):
            scaler.written_memory = scaler.memory
            scaler.memory_written_at = now
        status = memory_to_status(scaler.written_memory or scaler.memory, scaler.time_to_ready_s)
        return status.model_copy(update={"start_paths": start_paths_to_status(scaler.ready_times)})

    def _tide_to_write(
        self,
        policy: ScalingPolicy,
        scaler: ServiceScaler,
        status: GPUInferenceServiceStatus,
        new_status: JSON,
        now: float,
    ) -> None:
        """The learned profile into the status now and then; gone with spec.tide."""
        if policy.tide is None:
            if status.tide is not None:
                new_status["tide"] = None  # a merge patch removes it
            return
        if scaler.tide is None or scaler.tide_policy != policy.tide:
            return  # not learning yet (or learning afresh): the status keeps what it has
        due = scaler.tide_written_at is None or now - scaler.tide_written_at >= TIDE_WRITE_SECONDS
        if not due:
            return
        stored = tide_to_status(scaler.tide, policy.tide)
        if stored is not None:
            new_status["tide"] = stored.model_dump(mode="json", by_alias=True)
            scaler.tide_written_at = now

    async def _scale_events(self, body: JSON, scaler: ServiceScaler, serving: int) -> None:
        previous, scaler.last_serving = scaler.last_serving, serving
        if previous is None or previous == serving:
            return
        decision = scaler.decision
        why = decision.reason.message if decision is not None else "spec.replicas changed"
        if serving == 0:
            reason = "ScaledToZero"
        elif previous == 0:
            reason = "Woke"
        elif serving > previous:
            reason = "ScaledUp"
        else:
            reason = "ScaledDown"
        if decision is not None and decision.mode.value == "panic" and serving > previous:
            reason = "PanicScaledUp"
        await post_event(
            self.runtime.client, body, "Normal", reason, f"{previous} -> {serving}: {why}"
        )
        if decision is not None and decision.capacity_limited:
            await self._event(body, "Warning", "CapacityLimited", decision.reason.message)

    async def _write_status(self, body: JSON, status: JSON) -> None:
        if same_status(dict(body.get("status") or {}), status):
            return
        meta = body["metadata"]
        await patch_status(
            self.runtime.client, API_VERSION, PLURAL, meta["namespace"], meta["name"], status
        )
        # The cache keeps our own write, so the next pass compares against it.
        self.bodies[f"{meta['namespace']}/{meta['name']}"] = {**body, "status": status}

    async def _event(self, body: JSON, kind: str, reason: str, message: str) -> None:
        await self.events.post(body, kind, reason, message)


def _expectation(name: str, event: str, pod: JSON) -> str:
    if event == "ADDED":
        return f"add:{name}"
    if event == "DELETED":
        return f"delete:{name}"
    role = ((pod.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL, "")
    return f"relabel:{name}:{role}"


def _status(body: JSON) -> GPUInferenceServiceStatus:
    try:
        return GPUInferenceServiceStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return GPUInferenceServiceStatus()


def _wire(status: GPUInferenceServiceStatus) -> JSON:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _invalid(body: JSON) -> bool:
    return any(
        c.get("type") == "Valid" and c.get("status") == "False"
        for c in (body.get("status") or {}).get("conditions") or []
    )


def start(runtime: Runtime, binder: Binder | None) -> InferenceController:
    controller = InferenceController(runtime, binder)
    runtime.spawn_leading("inference", controller.run)
    return controller


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_inference_service(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        controller: InferenceController | None = getattr(memo, "inference", None)
        if controller is None:
            return
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        if type == "DELETED":
            controller.forget(key)
        else:
            controller.upsert(key, dict(body))
