"""In-place resize of GPUWorkload member pods: usage -> engine -> pods/resize.

One level-based loop. A pass runs on every member pod event (a usage annotation in
the simulation, a resize completed) and at least every POLL_S (0.5 s):

1. the member pods of workloads whose `spec.resize.mode` is not Off, running;
2. their usage from the `UsageReader` (all of them every POLL_S, and as soon as a
   source with a schedule of its own, the kubelet reader, has a node due; else the
   pods whose events woke the loop) into a bounded history;
3. the engine's decision for the pods whose usage or objects changed, and for a few of
   the others (the oldest-decided, REVISIT_BATCH a pass), so each is looked at again
   about every REVISIT_S as windows expire and room frees up;
4. Auto: the patch through pods/resize. Recommend: an Event `ResizeRecommended` on the
   workload (GPUWorkloadStatus has no field for it yet). Does not fit the node, or the
   kubelet says Infeasible: by `spec.resize.onInfeasible`, Wait (an Event
   `ResizeInfeasible` saying why) or Move: the binder's engine looks for a node with
   room in the pod's domain; if there is one, the new size and the domain are recorded
   on the workload and the pod is deleted, so the workload controller recreates the
   rank at its new size and the binder places it inside that domain (Event
   `ResizeMove`); if there is none, it waits like Wait, saying so.

The usage source: `EGPU_USAGE_SOURCE` = auto (default: pods on simulated KWOK nodes
from the simulation's `egpu.io/sim-usage` annotation, the others from their node's
kubelet through nodes/proxy), annotations, kubelet, metrics-api (metrics-server), or
prometheus (with `EGPU_PROMETHEUS_URL`, which alone also selects it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import Counter, Gauge, Histogram

from egpu.actuators.events import post_event
from egpu.actuators.manifests import (
    moved_member_record,
    with_moved_size,
)
from egpu.actuators.pods import delete_pod, record_moved_member
from egpu.actuators.resize import (
    INFEASIBLE,
    ResizeRefusedError,
    ResizeStatus,
    apply_resize,
    pending_reason,
    read_resize_status,
)
from egpu.controllers.binder import Binder
from egpu.controllers.runtime import Runtime, Trigger
from egpu.controllers.workloads import rank_in_name
from egpu.engines.resize import (
    NodeRoom,
    PodResizeDecision,
    Reason,
    ResizePolicy,
    ResourceKind,
    Verdict,
    build_resize_patch,
    decide_resize,
    format_cpu,
    format_memory,
)
from egpu.engines.resize.move import move_or_wait
from egpu.kube.client import JSON, ApiError
from egpu.observability.metrics import REGISTRY
from egpu.state.pods import controller_of, owning_workload, pod_demand
from egpu.state.resize_inputs import (
    WorkloadResize,
    pod_resize_input,
    resizable_now,
    workload_resize,
)
from egpu.state.usage import (
    AnnotationUsageReader,
    AutoUsageReader,
    ContainerRef,
    KubeletUsageReader,
    MetricsApiUsageReader,
    PacedReader,
    PrometheusUsageReader,
    UsageHistory,
    UsageReader,
)

log = logging.getLogger("egpu.controllers.resize")

POLL_S = 0.5
MIN_WAIT_S = 0.01  # an overdue source wakes the loop at once, but never makes it spin
FULL_PASS_S = 10.0  # housekeeping: forget pods that are gone, count the waiting ones
REVISIT_S = 15.0  # every pod is decided again at least this often
REVISIT_BATCH = 64
YIELD_EVERY = 64
APPLY_CONCURRENCY = 48  # of the client's 64 connections: room for the caches and the others
_DEFAULTS = ResizePolicy()
HISTORY_KEEP_S = max(_DEFAULTS.scale_down_stabilization_s, _DEFAULTS.scale_up_lookback_s) + 30

RESIZES_APPLIED = Counter(
    "egpu_resizes_applied_total",
    "In-place resizes applied through pods/resize, by direction (up, down, mixed).",
    ["direction"],
    registry=REGISTRY,
)
RESIZE_FAILURES = Counter(
    "egpu_resize_failures_total",
    "Resizes the API server or the operator's own checks refused, by reason.",
    ["reason"],
    registry=REGISTRY,
)
RESIZE_LATENCY = Histogram(
    "egpu_resize_latency_seconds",
    "From a usage change seen by the operator to the resize applied through pods/resize.",
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
RESIZE_WAITING = Gauge(
    "egpu_resize_waiting_pods",
    "Member pods whose resize waits, by reason (Deferred, Infeasible, DoesNotFit).",
    ["reason"],
    registry=REGISTRY,
)
WAITING_REASONS = ("Deferred", INFEASIBLE, "DoesNotFit")
RESIZE_MOVES = Counter(
    "egpu_resize_moves_total",
    "Member pods recreated at their new size on another node of their domain "
    "(resize policy Move), because their own node could not fit the resize.",
    registry=REGISTRY,
)


def default_reader(runtime: Runtime) -> UsageReader:
    source = os.environ.get("EGPU_USAGE_SOURCE", "")
    url = os.environ.get("EGPU_PROMETHEUS_URL", "")
    if source == "prometheus" or (not source and url):
        if not url:
            raise ValueError("EGPU_USAGE_SOURCE=prometheus needs EGPU_PROMETHEUS_URL")
        return PrometheusUsageReader(url)
    if source == "metrics-api":
        return MetricsApiUsageReader(runtime.client)
    if source == "annotations":
        return AnnotationUsageReader(runtime.pods.store)
    if source == "kubelet":
        return KubeletUsageReader(runtime.client, runtime.pods.store)
    if source in ("", "auto"):
        return AutoUsageReader(
            runtime.nodes.store,
            runtime.pods.store,
            simulated=AnnotationUsageReader(runtime.pods.store),
            real=KubeletUsageReader(runtime.client, runtime.pods.store),
        )
    raise ValueError(
        f"EGPU_USAGE_SOURCE={source!r}: use auto, annotations, kubelet, metrics-api or prometheus"
    )


def direction(decision: PodResizeDecision) -> str:
    """up, down or mixed, by the change of the pod's requests."""
    deltas = {decision.cpu_delta_millicores, decision.memory_delta_bytes} - {0}
    if not deltas:
        # Only limits moved; the sign of the first changed limit says which way.
        for rec in decision.changes:
            for d in (rec.cpu, rec.memory):
                if d.changed and d.new_limit is not None and d.current_limit is not None:
                    return "up" if d.new_limit > d.current_limit else "down"
        return "mixed"
    if all(d > 0 for d in deltas):
        return "up"
    if all(d < 0 for d in deltas):
        return "down"
    return "mixed"


def target_text(decision: PodResizeDecision) -> str:
    """`main: cpu 1500m/3, memory 4Gi/8Gi` (request/limit) for the changed containers."""

    def show(kind: ResourceKind, value: int | None) -> str:
        if value is None:
            return "-"
        return format_cpu(value) if kind is ResourceKind.CPU else format_memory(value)

    parts = []
    for rec in decision.changes:
        t = rec.target
        parts.append(
            f"{rec.container}: cpu {show(ResourceKind.CPU, t.cpu_request)}/"
            f"{show(ResourceKind.CPU, t.cpu_limit)}, memory "
            f"{show(ResourceKind.MEMORY, t.memory_request)}/"
            f"{show(ResourceKind.MEMORY, t.memory_limit)}"
        )
    return "; ".join(parts)


@dataclass
class PodTrack:
    """What the loop remembers of one pod (by uid) between passes."""

    last_resize_at: float | None = None
    usage_changed_at: float | None = None
    applied_generation: int = 0  # busy until the cache shows this generation
    decided_at: float = float("-inf")


Member = tuple[str, JSON, str, WorkloadResize]
"""(pod key, pod, workload key, the workload's resize policy)."""


class ResizeController:
    def __init__(
        self, runtime: Runtime, reader: UsageReader | None = None, binder: Binder | None = None
    ) -> None:
        self.runtime = runtime
        self.binder = binder
        self.reader = reader or default_reader(runtime)
        self.history = UsageHistory(keep_s=HISTORY_KEEP_S)
        self.trigger = Trigger()
        self.dirty: set[str] = set()
        self.tracks: dict[str, PodTrack] = {}
        self.in_flight: set[str] = set()
        self.not_fitting: set[str] = set()
        # Kept current by pod events, so a pass costs little more than its changes.
        # running members: (pod, workload key, the workload's uid)
        self.candidates: dict[str, tuple[JSON, str, str]] = {}
        self._policies: dict[str, tuple[Any, WorkloadResize | None]] = {}
        self._events: dict[tuple[str, str], str] = {}
        self._last_poll = self._last_full = float("-inf")
        self._gate = asyncio.Semaphore(APPLY_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reindex()
        runtime.pods.add_listener(self._on_pod)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run API calls beside the loop: a pass never waits on a slow API server, so a
        usage change that arrives meanwhile is decided at once."""

        async def gated() -> None:
            async with self._gate:
                await work

        task = asyncio.create_task(gated())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the API calls under way (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the pod cache's events -----------------------------------------------------------

    def _reindex(self) -> None:
        store = self.runtime.pods.store
        self.candidates = {}
        for key, pod in store.items():
            self._index(key, pod)

    def _index(self, key: str, pod: JSON | None) -> bool:
        """Track the pod as a candidate; True when it is a member of some workload."""
        self.candidates.pop(key, None)
        meta = (pod or {}).get("metadata") or {}
        owner = controller_of(meta)
        workload = owning_workload(owner)
        if owner is None or workload is None:  # members by owner reference, not labels
            return False
        if pod is not None and resizable_now(pod):
            self.candidates[key] = (pod, f"{meta.get('namespace')}/{workload}", owner.uid)
        return True

    def _on_pod(self, event: str, old: JSON | None, new: JSON | None) -> None:
        if event == "RESYNC":
            self._reindex()
            self._last_full = float("-inf")
            self.trigger.kick()
            return
        meta = (new or old or {}).get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if self._index(key, new):
            self.dirty.add(key)
            self.trigger.kick()

    async def run(self) -> None:
        while True:
            await self.trigger.wait(timeout=self.wait_s(time.time()))
            try:
                await self.step(time.time())
            except ApiError as exc:
                log.warning("resize pass failed: %s", exc)

    def _source_due_at(self) -> float | None:
        return self.reader.next_read_at() if isinstance(self.reader, PacedReader) else None

    def wait_s(self, now: float) -> float:
        """Until the next pass without a pod event: a poll later, or sooner when the
        usage source can have news sooner (a kubelet's next scrape is due), so a change
        of use waits for no poll."""
        due = self._source_due_at()
        if due is None:
            return POLL_S
        return min(POLL_S, max(MIN_WAIT_S, due - now))

    # -- reading --------------------------------------------------------------------

    def policy_of(self, key: str) -> WorkloadResize | None:
        """The workload's resize policy, None when Off, missing or unusable."""
        body = self.runtime.workloads.get(key)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None
        generation = body.get("metadata", {}).get("generation")
        cached = self._policies.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        try:
            policy: WorkloadResize | None = workload_resize((body.get("spec") or {}).get("resize"))
        except ValueError as exc:
            log.warning("GPUWorkload %s: resize policy unusable: %s", key, exc)
            policy = None
        if policy is not None and policy.policy.mode == "Off":
            policy = None
        self._policies[key] = (generation, policy)
        return policy

    def members(self) -> list[Member]:
        """Every running member pod of a workload whose resize mode is not Off."""
        policies = {wkey: self.policy_of(wkey) for wkey in self.runtime.workloads}
        out = []
        for key, (pod, wkey, owner_uid) in self.candidates.items():
            policy = policies.get(wkey)
            body = self.runtime.workloads.get(wkey) or {}
            if policy is not None and (body.get("metadata") or {}).get("uid") == owner_uid:
                out.append((key, pod, wkey, policy))
        return out

    # -- one pass -----------------------------------------------------------------------

    async def step(self, now: float) -> None:
        members = self.members()
        dirty, self.dirty = self.dirty, set()
        source_due = self._source_due_at()
        poll = now - self._last_poll >= POLL_S or (source_due is not None and now >= source_due)
        full = now - self._last_full >= FULL_PASS_S
        if poll:
            self._last_poll = now
        if full:
            self._last_full = now
        asked = members if poll else [m for m in members if m[0] in dirty]
        refs = [(pod["metadata"]["namespace"], pod["metadata"]["name"]) for _, pod, _, _ in asked]
        try:
            samples = await self.reader.read(refs, now)
        except Exception as exc:  # a flaky metrics source must not stop resizing
            log.warning("reading usage failed: %r", exc)
            samples = {}
        changed = self._record(samples, now)
        if full:
            self._forget(members)
            self._count_waiting(members)

        due = [m for m in members if m[0] not in self.in_flight]
        fresh = [m for m in due if m[0] in dirty or m[0] in changed]
        # Windows expire with time alone: look at every pod again now and then, a few
        # per pass (the oldest first), so no pass holds the loop for long.
        fresh_keys = {m[0] for m in fresh}
        stale = [
            m
            for m in due
            if m[0] not in fresh_keys and now - self._track(m[1]).decided_at >= REVISIT_S
        ]
        stale.sort(key=lambda m: self._track(m[1]).decided_at)
        requested: dict[str, tuple[int, int]] = {}  # what this pass decided, by node
        for count, (key, pod, wkey, policy) in enumerate([*fresh, *stale[:REVISIT_BATCH]], 1):
            decision = self._decide(key, pod, wkey, policy, requested, now)
            if decision is not None:
                self.in_flight.add(key)  # until the patch is answered
                self._spawn(self._apply(pod, wkey, decision))
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the caches and the patches in flight move

    def _record(self, samples: dict[ContainerRef, Any], now: float) -> set[str]:
        changed: set[str] = set()
        for ref, sample in samples.items():
            if self.history.record(ref, sample):
                changed.add(f"{ref[0]}/{ref[1]}")
        for key in changed:
            pod = self.runtime.pods.store.get(key)
            if pod is not None:
                self._track(pod).usage_changed_at = now
        return changed

    def _track(self, pod: JSON) -> PodTrack:
        return self.tracks.setdefault(pod["metadata"].get("uid", ""), PodTrack())

    def _forget(self, members: list[Member]) -> None:
        """Drop what the loop keeps about pods that are gone (or no longer resized)."""
        live_uids = {pod["metadata"].get("uid", "") for _, pod, _, _ in members}
        self.tracks = {uid: t for uid, t in self.tracks.items() if uid in live_uids}
        self.history.keep_only(
            {
                (pod["metadata"]["namespace"], pod["metadata"]["name"], c["name"])
                for _, pod, _, _ in members
                for c in pod["spec"].get("containers") or []
            }
        )
        live_pods = {key for key, *_ in members}
        self._events = {k: v for k, v in self._events.items() if k[0] in live_pods}
        self.not_fitting &= live_pods

    def _count_waiting(self, members: list[Member]) -> None:
        counts = dict.fromkeys(WAITING_REASONS, 0)
        for key, pod, _, _ in members:
            reason = pending_reason(pod)
            if reason in counts:
                counts[reason] += 1
            elif key in self.not_fitting:
                counts["DoesNotFit"] += 1
        for reason, count in counts.items():
            RESIZE_WAITING.labels(reason).set(count)

    def _decide(
        self,
        key: str,
        pod: JSON,
        wkey: str,
        policy: WorkloadResize,
        requested: dict[str, tuple[int, int]],
        now: float,
    ) -> PodResizeDecision | None:
        """The engine's verdict; returns it when it is to be applied."""
        meta, node = pod["metadata"], pod["spec"]["nodeName"]
        track = self._track(pod)
        track.decided_at = now
        status = read_resize_status(pod)
        self._report_kubelet(key, pod, wkey, status, policy)
        ns, name = meta["namespace"], meta["name"]
        decision = decide_resize(
            pod_resize_input(
                pod,
                policy,
                self._room(node, requested.get(node, (0, 0))),
                lambda container: self.history.samples((ns, name, container)),
                last_resize_at=track.last_resize_at,
                resize_in_progress=status.busy
                or (meta.get("generation") or 0) < track.applied_generation,
            ),
            now,
        )
        if decision.verdict is Verdict.DOES_NOT_FIT:
            self.not_fitting.add(key)
        elif key in self.not_fitting:
            self.not_fitting.discard(key)
            self._forget_events(key, "DoesNotFit")  # a later shortfall is news again
        if decision.verdict is Verdict.APPLY:
            cpu, memory = requested.get(node, (0, 0))
            requested[node] = (
                cpu + decision.cpu_delta_millicores,
                memory + decision.memory_delta_bytes,
            )
            return decision
        if decision.reason is not Reason.RESIZE_IN_PROGRESS:
            track.usage_changed_at = None  # this change led to no resize
        workload = self.runtime.workloads.get(wkey)
        if decision.verdict is Verdict.RECOMMEND and workload is not None:
            self._event_once(
                key,
                "Recommend",
                target_text(decision),
                workload,
                "Normal",
                "ResizeRecommended",
                f"pod {name}: {target_text(decision)} (request/limit); {decision.message}",
            )
        elif decision.verdict is Verdict.DOES_NOT_FIT and workload is not None:
            resized = build_resize_patch(decision)["spec"]["containers"]
            if policy.move_when_infeasible and self._move_or_wait(
                key, pod, workload, resized, decision.message, target_text(decision)
            ):
                return None
            message = (
                f"pod {name} cannot grow in place on node {node}: {decision.message}; "
                "waiting for room (resize policy: wait)"
            )
            for obj in (workload, pod_object(pod)):
                self._event_once(
                    key,
                    "DoesNotFit",
                    target_text(decision),
                    obj,
                    "Warning",
                    "ResizeInfeasible",
                    message,
                )
        return None

    def _room(self, node: str, decided: tuple[int, int]) -> NodeRoom:
        """Free CPU and memory on the node by the one ledger, less what this pass has
        decided already; a node the ledger does not hold has no room."""
        ledger = self.runtime.ledger.ledger
        if node not in ledger:
            return NodeRoom(free_cpu_millicores=0, free_memory_bytes=0)
        usage = ledger.node_usage(node)
        return NodeRoom(
            free_cpu_millicores=usage.cpu_allocatable_millis - usage.cpu_used_millis - decided[0],
            free_memory_bytes=usage.memory_allocatable_bytes - usage.memory_used_bytes - decided[1],
        )

    def _report_kubelet(
        self, key: str, pod: JSON, wkey: str, status: ResizeStatus, policy: WorkloadResize
    ) -> None:
        """An Event on the workload when the kubelet holds a resize back or fails it."""
        workload = self.runtime.workloads.get(wkey)
        if workload is None:
            return
        name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
        generation = str(status.generation)
        if (
            status.pending_reason == INFEASIBLE
            and policy.move_when_infeasible
            and key not in self.in_flight
        ):
            # The spec already asks for the new size: move the pod as it is specified.
            why = f"the kubelet says {status.pending_message or INFEASIBLE}"
            if self._move_or_wait(key, pod, workload, None, why, f"generation {generation}"):
                return
        if status.pending_reason == INFEASIBLE:
            self._event_once(
                key,
                "Kubelet",
                f"{INFEASIBLE}/{generation}",
                workload,
                "Warning",
                "ResizeInfeasible",
                f"pod {name}: node {node} cannot fit the resize ({status.pending_message}); "
                "waiting, the pod keeps running at its current size (resize policy: wait)",
            )
        elif status.pending_reason is not None:
            self._event_once(
                key,
                "Kubelet",
                f"{status.pending_reason}/{generation}",
                workload,
                "Normal",
                "ResizeDeferred",
                f"pod {name}: node {node} defers the resize ({status.pending_message}); "
                "the kubelet retries when room frees up",
            )
        elif status.error_message is not None:
            self._event_once(
                key,
                "Kubelet",
                f"Error/{generation}",
                workload,
                "Warning",
                "ResizeFailed",
                f"pod {name}: the kubelet failed to resize: {status.error_message}",
            )

    # -- moving a pod that cannot grow in place (resize policy Move) ---------------------

    def _move_or_wait(
        self,
        key: str,
        pod: JSON,
        workload: JSON,
        resized: list[dict[str, Any]] | None,
        why: str,
        fingerprint: str,
    ) -> bool:
        """Move the pod to a node of its domain with room for its new size, or say that
        none has room (the pod then waits). False only when no binder runs to ask."""
        binder = self.binder
        if binder is None:
            return False
        name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
        record = moved_member_record(pod, resized, ())
        required = ((workload.get("spec") or {}).get("topology") or {}).get("required")
        within, result = binder.where_to_move(
            pod, pod_demand(with_moved_size(pod, record)), required
        )
        where = domain_words(binder, within)
        choice = move_or_wait(result, node)
        if choice.target is None:
            message = (
                f"pod {name} cannot grow in place on node {node} ({why}) and no other node "
                f"{where} has room for it ({choice.why}); waiting for room (resize policy: Move)"
            )
            for obj in (workload, pod_object(pod)):
                self._event_once(
                    key, "Move", fingerprint, obj, "Warning", "ResizeInfeasible", message
                )
            return True
        record["within"] = list(within)
        target = choice.target
        message = (
            f"pod {name} cannot grow in place on node {node} ({why}); it is recreated at its "
            f"new size on node {target} {where}: the pod restarts (resize policy: Move)"
        )
        self.in_flight.add(key)  # until the move is done or refused
        self._spawn(self._move(key, pod, workload, record, message))
        return True

    async def _move(self, key: str, pod: JSON, workload: JSON, record: JSON, message: str) -> None:
        meta = pod["metadata"]
        wkey = f"{meta['namespace']}/{workload['metadata']['name']}"
        try:
            rank = rank_in_name(meta["name"], workload["metadata"]["name"])
            if rank is None:
                return  # not a member by name: never moved
            updated = await record_moved_member(self.runtime.client, workload, rank, record)
            # The workload controller recreates the rank from the cached workload: it must
            # hold the record before the pod's deletion reaches it.
            if wkey in self.runtime.workloads:
                self.runtime.workloads[wkey] = updated
            await delete_pod(self.runtime.client, meta["namespace"], meta["name"], meta.get("uid"))
        except ApiError as exc:
            if exc.conflict:  # the workload changed meanwhile: decide again next pass
                self.dirty.add(key)
                return
            RESIZE_FAILURES.labels("MoveFailed").inc()
            log.warning("moving pod %s failed: %s", key, exc)
            self._event_once(
                key,
                "MoveFailed",
                str(exc),
                workload,
                "Warning",
                "ResizeFailed",
                f"pod {meta['name']}: moving it to grow failed: {exc}",
            )
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            log.warning("moving pod %s not sent: %r; retrying next pass", key, exc)
            self.dirty.add(key)
        else:
            RESIZE_MOVES.inc()
            log.info("moving pod %s to grow: %s", key, message)
            for obj in (workload, pod_object(pod)):
                self._spawn(post_event(self.runtime.client, obj, "Normal", "ResizeMove", message))
        finally:
            self.in_flight.discard(key)

    def _event_once(
        self,
        key: str,
        topic: str,
        fingerprint: str,
        obj: JSON,
        kind: str,
        reason: str,
        message: str,
    ) -> None:
        """One Event per (pod, topic, object kind) and distinct fingerprint."""
        slot = (key, f"{topic}/{obj.get('kind')}")
        if self._events.get(slot) == fingerprint:
            return
        self._events[slot] = fingerprint
        self._spawn(post_event(self.runtime.client, obj, kind, reason, message))

    def _forget_events(self, key: str, topic: str) -> None:
        for slot in [s for s in self._events if s[0] == key and s[1].startswith(f"{topic}/")]:
            del self._events[slot]

    async def _apply(self, pod: JSON, wkey: str, decision: PodResizeDecision) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        track = self._track(pod)
        try:
            resized = await apply_resize(self.runtime.client, pod, build_resize_patch(decision))
        except ResizeRefusedError as exc:
            RESIZE_FAILURES.labels(exc.reason).inc()
            self._refused(key, pod, wkey, decision, exc.reason, exc.message)
        except ApiError as exc:
            if exc.not_found:
                return
            RESIZE_FAILURES.labels(exc.reason or str(exc.status)).inc()
            if exc.conflict:
                self.dirty.add(key)  # changed meanwhile: look again next pass
                return
            self._refused(key, pod, wkey, decision, "ResizeRejected", exc.message)
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            RESIZE_FAILURES.labels("Unreachable").inc()
            log.warning("resize of pod %s not sent: %r; retrying next pass", key, exc)
            self.dirty.add(key)
        else:
            # The one ledger counts the new size now, not when the watch brings it.
            self.runtime.ledger.pod_changed(pod, resized)
            applied_at = time.time()
            track.last_resize_at = applied_at
            track.applied_generation = int(resized.get("metadata", {}).get("generation") or 0)
            RESIZES_APPLIED.labels(direction(decision)).inc()
            if track.usage_changed_at is not None:
                RESIZE_LATENCY.observe(max(0.0, applied_at - track.usage_changed_at))
                track.usage_changed_at = None
            log.info(
                "resized pod %s in place: %s (%s)", key, target_text(decision), decision.reason
            )
        finally:
            self.in_flight.discard(key)

    def _refused(
        self, key: str, pod: JSON, wkey: str, decision: PodResizeDecision, reason: str, message: str
    ) -> None:
        log.warning("resize of pod %s refused: %s: %s", key, reason, message)
        workload = self.runtime.workloads.get(wkey)
        if workload is not None:
            self._event_once(
                key,
                "Refused",
                target_text(decision),
                workload,
                "Warning",
                "ResizeFailed",
                f"pod {pod['metadata']['name']}: resize to {target_text(decision)} refused: "
                f"{reason}: {message}",
            )


def domain_words(binder: Binder, within: tuple[str, ...]) -> str:
    """`in egpu.io/leaf=b0-l1` for a domain path; `in the cluster` for the empty one."""
    if not within:
        return "in the cluster"
    level = binder.sync.ledger.topology.domain_levels[len(within) - 1]
    return f"in {level}={within[-1]}"


def pod_object(pod: JSON) -> JSON:
    """Objects from a LIST carry no kind; an Event's involvedObject needs one."""
    return {**pod, "apiVersion": "v1", "kind": "Pod"}


def start(
    runtime: Runtime, binder: Binder | None, reader: UsageReader | None = None
) -> ResizeController:
    controller = ResizeController(runtime, reader, binder)
    runtime.spawn_leading("resize", controller.run)
    return controller
