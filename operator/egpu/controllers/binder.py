"""The binder: the operator is the scheduler of pods that name `egpu-scheduler`.

Each cycle, for every gang with pending pods (best first):
1. its pods are checked (`engines.binding`); a gang with unreadable or contradictory
   pods is reported on the pods (or its GPUWorkload) and skipped: one user's bad pod
   never stops anyone else's;
2. an earlier leader's plans for it are resumed when whole, dropped when the recording
   was cut short;
3. the placement engine decides the rest against the one ledger, and the whole gang is
   reserved there as the binder's intents (kept through relists and rebuilds);
4. a gang's plan is written on every pod (the crash-safe point), then every pod is
   bound. A bind whose reply was lost is checked with the API server before anything
   is undone. If a gang cannot be completed and its bound part cannot run alone, the
   pods bound in this attempt go (only those with an owner to recreate them; never
   the members that were running before).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from egpu.actuators.claims import allocate_claim, clear_allocation, read_claim
from egpu.actuators.events import post_event
from egpu.actuators.pods import (
    bind_pod,
    clear_plan,
    delete_pod,
    read_pod_object,
    record_plan,
    set_pod_scheduled,
)
from egpu.controllers.common import now_text
from egpu.controllers.runtime import Runtime, Trigger
from egpu.domain.gang import GangRequest
from egpu.domain.labels import (
    DOMAIN_ANNOTATION,
    GPU_IDS_ANNOTATION,
    PLAN_ANNOTATION,
    START_PATH_ANNOTATION,
)
from egpu.domain.placement import (
    PlacementResult,
    PodAssignment,
    Unschedulable,
    UnschedulableReason,
)
from egpu.domain.pod import PodDemand, PodFacts, RecordedPlan, lone_gang_id
from egpu.engines.binding import (
    BadGang,
    Gang,
    Parking,
    gang_request,
    gangs_to_place,
    pair_with_pods,
    pod_slots,
    pod_slots_on,
    required_domain,
    shape_key,
    split_resumable,
    start_path,
)
from egpu.engines.binding.claims import (
    ClaimAction,
    allocation_body,
    judge_claim,
    planned_devices,
)
from egpu.engines.placement import ReservationError, place_gang
from egpu.kube.client import JSON, ApiError, TransportError, gather_limited
from egpu.observability.metrics import (
    BIND_FAILURES,
    FREE_GPUS,
    LEDGER_AUDIT_MISMATCHES,
    LEDGER_AUDITS,
    PENDING_GANGS,
    PLACEMENT_SECONDS,
    PODS_BOUND,
)
from egpu.state.ledger_sync import PLANNED
from egpu.state.pods import plan_annotation, pod_key, read_pod

log = logging.getLogger("egpu.binder")
IDLE_CYCLE_SECONDS = 5.0
BIND_ATTEMPTS = 4
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
AUDIT_SECONDS = float(os.environ.get("EGPU_LEDGER_AUDIT_SECONDS", "300"))
INVALID = UnschedulableReason.INVALID_REQUEST


@dataclass
class GangVerdict:
    """The binder's last word on a gang, for the workload's status."""

    scheduled: bool
    reason: str
    message: str


class VerdictSink(Protocol):
    """Where the binder's verdicts on a GPUWorkload's gang go (its status)."""

    def set_verdict(self, key: str, verdict: GangVerdict) -> None: ...


class Outcome(StrEnum):
    DONE = "Done"  # the plan is recorded on the pod
    BOUND = "Bound"  # bound where planned (perhaps by an earlier try whose reply was lost)
    GONE = "Gone"  # the pod was deleted (or replaced by another of the same name)
    ELSEWHERE = "BoundElsewhere"  # someone else bound it
    FAILED = "Failed"  # refused for good
    UNKNOWN = "Unknown"  # the API server could not say: asked again next cycle


@dataclass(frozen=True, slots=True)
class Step:
    pod: PodFacts
    assignment: PodAssignment
    plan: RecordedPlan
    # For a pod that names artefacts: START_PATH_CACHED or START_PATH_COLD, judged
    # against what its node held when the binder decided.
    start_path: str | None = None


def binding_annotations(step: Step) -> dict[str, str]:
    a = step.assignment
    out = {
        PLAN_ANNOTATION: plan_annotation(step.plan),
        GPU_IDS_ANNOTATION: ",".join(str(g) for g in a.gpu_indices),
        DOMAIN_ANNOTATION: json.dumps(dict(a.domain), separators=(",", ":"), sort_keys=True),
    }
    if step.start_path is not None:
        out[START_PATH_ANNOTATION] = step.start_path
    return out


def pod_object(facts: PodFacts) -> JSON:
    """Enough of a pod for an Event's involvedObject."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": facts.name, "namespace": facts.namespace, "uid": facts.uid},
    }


class Binder:
    def __init__(self, runtime: Runtime, verdicts: VerdictSink | None = None) -> None:
        self.runtime = runtime
        self.sync = runtime.ledger
        self.verdicts = verdicts
        self.trigger = Trigger()
        self.parking = Parking()
        # Our live pods by gang, kept by the pod cache's events: a cycle never scans
        # every pod of the cluster.
        self.members: dict[str, dict[str, PodFacts]] = {}
        self.waiting: set[str] = set()  # gangs with a pending pod
        self._gang_of: dict[str, str] = {}
        self.in_flight: set[str] = set()  # gangs being bound right now
        self.doubtful: dict[str, str] = {}  # pod -> node: bind outcome unknown
        self.bind_delay = float(os.environ.get("EGPU_BIND_DELAY_MS", "0")) / 1000
        self.plan_delay = float(os.environ.get("EGPU_PLAN_DELAY_MS", "0")) / 1000
        self._explained: dict[str, str] = {}
        self._told: dict[str, str] = {}  # pod or node -> the last message posted on it
        self._last_audit = time.monotonic()
        self._reindex()
        runtime.nodes.add_listener(self._on_node)
        runtime.pods.add_listener(self._on_pod)

    # -- the caches' events ------------------------------------------------------------

    def _on_node(self, event: str, old: JSON | None, new: JSON | None) -> None:
        self.parking.capacity_changed()
        self.trigger.kick()
        self.report_bad_nodes()

    def _on_pod(self, event: str, old: JSON | None, new: JSON | None) -> None:
        if event == "RESYNC":
            self._reindex()
            self.parking.capacity_changed()
            self.trigger.kick()
            return
        key = pod_key(new or old or {})
        facts = self.sync.facts_of(new) if new is not None and self.runtime.manages(new) else None
        self._index(key, facts)
        if new is None:
            self._told.pop(key, None)
        gone = new is None or (new.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if gone:
            self.parking.capacity_changed()  # room given back
        if gone or (facts is not None and facts.pending):
            self.trigger.kick()

    def _reindex(self) -> None:
        self.members, self.waiting, self._gang_of = {}, set(), {}
        for key, pod in self.runtime.pods.store.items():
            if self.runtime.manages(pod):
                self._index(key, read_pod(pod))

    def _index(self, key: str, facts: PodFacts | None) -> None:
        old_gang = self._gang_of.pop(key, None)
        if old_gang is not None:
            group = self.members.get(old_gang, {})
            group.pop(key, None)
            if not group:
                self.members.pop(old_gang, None)
                self.waiting.discard(old_gang)
                self._explained.pop(old_gang, None)
            elif not any(p.pending for p in group.values()):
                self.waiting.discard(old_gang)
        if facts is None or not facts.live:
            return
        self._gang_of[key] = facts.gang_id
        self.members.setdefault(facts.gang_id, {})[key] = facts
        if facts.pending:
            self.waiting.add(facts.gang_id)

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        # The first pass at once: a replica that just took the lead has its caches full
        # already, and a quiet backlog sends no event to wake it.
        self.trigger.kick()
        while True:
            await self.trigger.wait(timeout=IDLE_CYCLE_SECONDS)
            await self.cycle()
            if time.monotonic() - self._last_audit >= AUDIT_SECONDS:
                self.audit()

    async def cycle(self) -> None:
        if self.runtime.refresh_topology():
            self.parking.capacity_changed()
        if self.doubtful:
            await self._settle_doubtful()
        now = time.monotonic()
        jobs: list[Awaitable[None]] = []
        waiting = 0
        # Within a cycle the ledger only fills up: an ask that failed stays failed.
        failed_shapes: dict[tuple[object, ...], Unschedulable] = {}
        gangs, bad = gangs_to_place(
            ((g, self.members.get(g, {}).values()) for g in list(self.waiting)),
            busy=self.sync.intents,
        )
        for gang_set_aside in bad:
            self.report_bad(gang_set_aside)
        for gang in gangs:
            if gang.gang_id in self.in_flight:
                continue
            if gang.members < gang.size:
                waiting += 1  # members still being created: all or nothing
                continue
            if any(p.dra and p.gpu_claim is None for p in gang.pending):
                waiting += 1  # the controller manager has not made every pod's claim yet
                continue
            try:
                steps = self.decide(gang, failed_shapes, now)
            except Exception as exc:  # a bug must cost one gang, not the binder
                log.exception("deciding gang %s failed", gang.gang_id)
                self.explain(gang, Unschedulable(gang.gang_id, INVALID, f"internal error: {exc}"))
                self.parking.park(gang.gang_id, now)
                steps = None
            if steps is None:
                waiting += 1
                continue
            self.in_flight.add(gang.gang_id)
            jobs.append(self.bind_gang(gang, steps))
        self.parking.keep_only(self.waiting)
        PENDING_GANGS.set(waiting + len(bad))
        FREE_GPUS.set(self.sync.ledger.free_gpus())
        if jobs:
            await gather_limited(64, *jobs)

    def decide(
        self,
        gang: Gang,
        failed_shapes: dict[tuple[object, ...], Unschedulable] | None = None,
        now: float | None = None,
    ) -> list[Step] | None:
        """Reserve the gang's pods as intents in the ledger; None (and a verdict) when it
        cannot be placed now."""
        now = time.monotonic() if now is None else now
        held = {
            p.key
            for p in gang.pending
            if (account := self.sync.account_of(p.key)) is not None and account.kind == PLANNED
        }
        resume = split_resumable(gang, held)
        if resume.stale:
            log.info("gang %s: dropping an incomplete plan of %s", gang.gang_id, resume.stale)
            self.sync.drop_plans(resume.stale)
        steps = [Step(p, a, p.plan) for p, a in resume.resumed if p.plan is not None]
        if resume.fresh:
            if self.parking.parked(gang.gang_id, now):
                return None
            levels = self.sync.ledger.topology.domain_levels
            placed_domains = [self._domain_of(p) for p in gang.bound] + [
                s.assignment.domain for s in steps
            ]
            within = required_domain(placed_domains, levels, resume.fresh[0].ask.required_level)
            try:
                request = gang_request(
                    gang, resume.fresh, len(placed_domains), within, self._placed_model(gang, steps)
                )
            except ValueError as exc:
                self.explain(gang, Unschedulable(gang.gang_id, INVALID, str(exc)))
                self.parking.park(gang.gang_id, now)
                return None
            result = self._place(request, failed_shapes)
            if isinstance(result, Unschedulable):
                self.explain(gang, result)
                self.parking.park(gang.gang_id, now)
                return None
            self.parking.release(gang.gang_id)
            if result.note is not None:
                self._tell_placed(resume.fresh[0], result.note)
            pairs = pair_with_pods(resume.fresh, result)
            plan_id = uuid.uuid4().hex[:12]
            steps += [
                Step(
                    p, a, RecordedPlan(p.uid, a.node, a.gpu_indices, a.domain, plan_id, len(pairs))
                )
                for p, a in pairs
            ]
        if len(steps) + len(gang.bound) < gang.min_members:
            return None
        steps = [self._with_start_path(s) for s in steps]
        try:
            self.sync.reserve_intents([(s.pod.key, s.assignment) for s in steps])
        except ReservationError as exc:  # the engine's answer no longer fits: a bug
            log.error("gang %s: reserving its placement failed: %s", gang.gang_id, exc)
            self.explain(gang, Unschedulable(gang.gang_id, INVALID, f"internal error: {exc}"))
            self.parking.park(gang.gang_id, now)
            return None
        return steps

    def _place(
        self, request: GangRequest, failed_shapes: dict[tuple[object, ...], Unschedulable] | None
    ) -> PlacementResult:
        shape = shape_key(request)
        known = failed_shapes.get(shape) if failed_shapes is not None else None
        if known is not None:  # the same ask failed earlier in this cycle
            return known
        started = time.perf_counter()
        result = place_gang(self.sync.ledger, request)
        PLACEMENT_SECONDS.observe(time.perf_counter() - started)
        if isinstance(result, Unschedulable) and failed_shapes is not None:
            failed_shapes[shape] = result
        return result

    def _with_start_path(self, step: Step) -> Step:
        ledger = self.sync.ledger
        node = step.assignment.node
        if not step.pod.artefacts or node not in ledger:
            return step
        path = start_path(step.pod.artefacts, ledger.node_artefacts(node))
        return replace(step, start_path=path)

    def _placed_model(self, gang: Gang, steps: list[Step]) -> str | None:
        """The GPU model the gang's bound or planned members run on, when they share one."""
        ledger = self.sync.ledger
        nodes = [p.node for p in gang.bound if p.node is not None]
        nodes += [s.assignment.node for s in steps]
        models = {ledger.node_view(n).model for n in nodes if n in ledger}
        return models.pop() if len(models) == 1 else None

    def _domain_of(self, pod: PodFacts) -> dict[str, str]:
        """A placed pod's domain at every level: its node's, else what its plan says."""
        if pod.node is not None and pod.node in self.sync.ledger:
            return dict(self.sync.ledger.node_view(pod.node).domain)
        return dict(pod.plan.domain) if pod.plan is not None else {}

    # -- binding a gang ------------------------------------------------------------------

    async def bind_gang(self, gang: Gang, steps: list[Step]) -> None:
        """Never raises: whatever happens, nothing of this attempt stays held by mistake."""
        outcomes: dict[str, tuple[Outcome, str]] = {}
        try:
            recorded = {s.pod.key for s in steps if s.pod.plan == s.plan}
            to_record = [s for s in steps if s.pod.key not in recorded]
            if to_record and (len(steps) > 1 or gang.bound):
                # Every plan is recorded before the first bind: the crash-safe point.
                written = await self._steps(self._record, to_record, self.plan_delay)
                if any(o is not Outcome.DONE for o, _ in written.values()):
                    for key, (outcome, detail) in written.items():
                        if outcome is not Outcome.DONE:
                            outcomes[key] = (outcome, detail)
                    await self._give_up(gang, steps, outcomes, before_bind=True)
                    return
            crowded = self._crowded(steps)
            if crowded:
                outcomes = {s.pod.key: (Outcome.FAILED, crowded) for s in steps}
                await self._give_up(gang, steps, outcomes, before_bind=True)
                return
            claimed = await self._steps(self._allocate, [s for s in steps if s.pod.dra], 0)
            refused = {k: v for k, v in claimed.items() if v[0] is not Outcome.DONE}
            if refused:
                other = (Outcome.FAILED, "another pod's ResourceClaim could not be allocated")
                outcomes = {s.pod.key: refused.get(s.pod.key, other) for s in steps}
                await self._give_up(gang, steps, outcomes, before_bind=True)
                return
            outcomes = await self._steps(self._bind, steps, self.bind_delay)
            await self._conclude(gang, steps, outcomes)
        except asyncio.CancelledError:
            self._release_unsettled(steps, outcomes)
            raise
        except Exception as exc:
            log.exception("binding gang %s failed unexpectedly", gang.gang_id)
            BIND_FAILURES.labels(type(exc).__name__).inc()
            self._release_unsettled(steps, outcomes)
            self.explain(
                gang,
                Unschedulable(gang.gang_id, INVALID, f"binding failed: {exc}"),
                reason="BindFailed",
            )
        finally:
            self.in_flight.discard(gang.gang_id)
            self.trigger.kick()

    def _crowded(self, steps: list[Step]) -> str:
        """Why the plan no longer fits, seen after it was written and before any bind:
        another scheduler bound pods onto its nodes meanwhile (it cannot see plans).
        The pods already there are facts; this attempt yields and is placed again."""
        nodes = sorted({s.assignment.node for s in steps})
        beyond = {n: self.sync.gpus_asked_beyond(n) for n in nodes}
        full = [f"{n} ({k} GPUs over)" for n, k in beyond.items() if k > 0]
        if not full:
            return ""
        return f"pods bound by someone else filled node {', '.join(full)} after the plan"

    async def _steps(
        self, act: Callable[[Step], Awaitable[tuple[Outcome, str]]], steps: list[Step], delay: float
    ) -> dict[str, tuple[Outcome, str]]:
        """`act` on every step (concurrently); what each came to."""
        if delay:  # test hook: a slow, observable sequence
            results = {}
            for step in steps:
                results[step.pod.key] = await act(step)
                await asyncio.sleep(delay)
            return results
        answers = await gather_limited(32, *(act(s) for s in steps))
        out: dict[str, tuple[Outcome, str]] = {}
        for step, answer in zip(steps, answers, strict=True):
            if isinstance(answer, BaseException):
                log.error("pod %s: %r", step.pod.key, answer)
                out[step.pod.key] = (Outcome.UNKNOWN, repr(answer))
            else:
                out[step.pod.key] = answer
        return out

    async def _record(self, step: Step) -> tuple[Outcome, str]:
        pod = step.pod
        for attempt in range(BIND_ATTEMPTS):
            try:
                await record_plan(self.runtime.client, pod.namespace, pod.name, step.plan)
                return Outcome.DONE, ""
            except ApiError as exc:
                if exc.not_found or exc.conflict or exc.status == 422:
                    return Outcome.GONE, exc.message  # gone, or another pod of that name
                if not exc.transient:
                    return Outcome.FAILED, exc.message
                detail = exc.message
            except TransportError as exc:  # a merge patch may simply be sent again
                detail = str(exc)
            await asyncio.sleep(RETRY_BACKOFF_S[attempt])
        return Outcome.FAILED, f"recording the plan failed: {detail}"

    async def _allocate(self, step: Step) -> tuple[Outcome, str]:
        """Allocate the pod's GPU claim to exactly the planned devices (DRA nodes)."""
        pod, node = step.pod, step.assignment.node
        dra = self.sync.dra_nodes.get(node)
        if pod.gpu_claim is None or dra is None:
            return Outcome.FAILED, f"node {node} or the pod's ResourceClaim is not known"
        try:
            planned = planned_devices(dra, step.assignment.gpu_indices)
        except ValueError as exc:
            return Outcome.FAILED, str(exc)
        detail = ""
        for attempt in range(BIND_ATTEMPTS):
            try:
                claim = await read_claim(self.runtime.client, pod.namespace, pod.gpu_claim)
                if claim is None:
                    return Outcome.FAILED, f"ResourceClaim {pod.gpu_claim} is gone"
                key = f"{pod.namespace}/{pod.gpu_claim}"
                verdict = judge_claim(claim, pod.uid, planned, self.sync.holders(planned, key))
                if verdict.action is ClaimAction.REFUSE:
                    log.warning("pod %s: claim not allocated: %s", pod.key, verdict.message)
                    self.runtime.spawn_once(
                        post_event(
                            self.runtime.client,
                            pod_object(pod),
                            "Warning",
                            "ClaimConflict",
                            f"GPUs not allocated: {verdict.message}",
                        )
                    )
                    return Outcome.FAILED, verdict.message
                if verdict.action is ClaimAction.KEEP:
                    return Outcome.DONE, ""
                if verdict.action is ClaimAction.REALLOCATE:
                    log.info("pod %s: %s; allocating again", pod.key, verdict.message)
                    claim = await clear_allocation(self.runtime.client, claim)
                await allocate_claim(
                    self.runtime.client,
                    claim,
                    allocation_body(node, planned),
                    {"name": pod.name, "uid": pod.uid},
                )
                return Outcome.DONE, ""
            except ApiError as exc:
                if not (exc.conflict or exc.transient):
                    return Outcome.FAILED, f"ResourceClaim {pod.gpu_claim}: {exc.message}"
                detail = exc.message  # changed meanwhile: read it again and judge anew
            except TransportError as exc:
                detail = str(exc)
            await asyncio.sleep(RETRY_BACKOFF_S[attempt])
        return Outcome.FAILED, f"allocating ResourceClaim {pod.gpu_claim} failed: {detail}"

    async def _release_claim(self, pod: PodFacts) -> None:
        """Clear the allocation an unbound pod's claim got in an attempt given up, so
        its devices are free again at once (never one that serves someone else)."""
        if pod.gpu_claim is None:
            return
        try:
            claim = await read_claim(self.runtime.client, pod.namespace, pod.gpu_claim)
            status = (claim or {}).get("status") or {}
            users = {str(r.get("uid")) for r in status.get("reservedFor") or []}
            if claim is not None and status.get("allocation") and users <= {pod.uid}:
                await clear_allocation(self.runtime.client, claim)
        except (ApiError, TransportError) as exc:  # cleared on the next attempt instead
            log.info("pod %s: claim allocation not cleared: %s", pod.key, exc)

    async def _bind(self, step: Step) -> tuple[Outcome, str]:
        pod, a = step.pod, step.assignment
        detail = ""
        for attempt in range(BIND_ATTEMPTS):
            try:
                await bind_pod(
                    self.runtime.client,
                    pod.namespace,
                    pod.name,
                    pod.uid,
                    a.node,
                    binding_annotations(step),
                )
                return Outcome.BOUND, ""
            except ApiError as exc:
                if exc.not_found:
                    return Outcome.GONE, exc.message
                if not (exc.conflict or exc.transient):
                    return Outcome.FAILED, exc.message
                detail = exc.message
            except TransportError as exc:
                detail = str(exc)
            # The reply is lost or the pod changed: ask where it is before trying again.
            where = await self._where(pod, a.node)
            if where is not None and where[0] is not Outcome.UNKNOWN:
                return where
            await asyncio.sleep(RETRY_BACKOFF_S[attempt])
        return (await self._where(pod, a.node)) or (Outcome.UNKNOWN, detail)

    async def _where(self, pod: PodFacts, node: str) -> tuple[Outcome, str] | None:
        """What the API server says of the pod now: bound here or elsewhere, gone, not
        bound yet (None), or it could not say (UNKNOWN)."""
        try:
            current = await read_pod_object(self.runtime.client, pod.namespace, pod.name)
        except (ApiError, TransportError) as exc:
            return Outcome.UNKNOWN, str(exc)
        if current is None or (current.get("metadata") or {}).get("uid") != pod.uid:
            return Outcome.GONE, "the pod was deleted"
        bound_to = (current.get("spec") or {}).get("nodeName")
        if not bound_to:
            return None
        if bound_to == node:
            return Outcome.BOUND, ""
        return Outcome.ELSEWHERE, f"bound to node {bound_to} by someone else"

    async def _conclude(
        self, gang: Gang, steps: list[Step], outcomes: dict[str, tuple[Outcome, str]]
    ) -> None:
        bound = [s for s in steps if outcomes[s.pod.key][0] is Outcome.BOUND]
        PODS_BOUND.inc(len(bound))
        for step in steps:
            outcome, detail = outcomes[step.pod.key]
            if outcome in (Outcome.GONE, Outcome.ELSEWHERE):
                log.info("pod %s not bound: %s", step.pod.key, detail or outcome)
                self.sync.release_intent(step.pod.key)
            elif outcome is Outcome.UNKNOWN:
                self.doubtful[step.pod.key] = step.assignment.node  # asked again next cycle
        failed = [s for s in steps if outcomes[s.pod.key][0] is Outcome.FAILED]
        if not failed:
            if len(bound) == len(steps):
                self.scheduled(gang, steps)
            return
        await self._give_up(gang, steps, outcomes, before_bind=False)

    async def _give_up(
        self,
        gang: Gang,
        steps: list[Step],
        outcomes: dict[str, tuple[Outcome, str]],
        before_bind: bool,
    ) -> None:
        """Some pods of the attempt could not be recorded or bound: release what is not
        bound; if the bound part cannot run without the rest, remove it (pods with an
        owner to recreate them only)."""
        self.parking.capacity_changed()
        reasons = sorted({d or str(o) for o, d in outcomes.values() if o is not Outcome.BOUND})
        BIND_FAILURES.labels("RecordFailed" if before_bind else "BindFailed").inc()
        bound = [] if before_bind else [s for s in steps if outcomes[s.pod.key][0] is Outcome.BOUND]
        unbound = [s for s in steps if s not in bound]
        for step in unbound:
            if outcomes.get(step.pod.key, (Outcome.FAILED, ""))[0] is not Outcome.UNKNOWN:
                self.sync.release_intent(step.pod.key)
        gone = Outcome.GONE
        left = [s for s in unbound if outcomes.get(s.pod.key, (Outcome.FAILED, ""))[0] is not gone]
        client = self.runtime.client
        await gather_limited(
            16,
            *(clear_plan(client, s.pod.namespace, s.pod.name, s.pod.uid) for s in left),
            *(self._release_claim(s.pod) for s in left if s.pod.dra),
        )
        kept: list[Step] = []
        if bound and len(gang.bound) + len(bound) < gang.min_members:
            doomed = [s for s in bound if s.pod.owner is not None]
            kept = [s for s in bound if s.pod.owner is None]
            await gather_limited(
                16,
                *(
                    delete_pod(self.runtime.client, s.pod.namespace, s.pod.name, s.pod.uid)
                    for s in doomed
                ),
            )
        message = f"binding failed and was rolled back: {'; '.join(reasons)[:512]}"
        if kept:
            names = ", ".join(s.pod.name for s in kept)
            message += (
                f"; pods {names} stay bound (no owner could recreate them): the rest of "
                "the gang will join them when it can"
            )
        log.warning("gang %s: %s", gang.gang_id, message)
        self.explain(gang, Unschedulable(gang.gang_id, INVALID, message), reason="BindFailed")

    def _release_unsettled(
        self, steps: list[Step], outcomes: dict[str, tuple[Outcome, str]]
    ) -> None:
        for step in steps:
            outcome = outcomes.get(step.pod.key, (Outcome.UNKNOWN, ""))[0]
            if outcome is Outcome.UNKNOWN and step.pod.key in self.sync.intents:
                self.doubtful[step.pod.key] = step.assignment.node
            elif outcome is not Outcome.BOUND:
                self.sync.release_intent(step.pod.key)

    async def _settle_doubtful(self) -> None:
        """Binds whose outcome was unknown: ask again until the API server can say."""
        for key, node in list(self.doubtful.items()):
            facts = self.members.get(self._gang_of.get(key, ""), {}).get(key)
            if facts is None or facts.bound or key not in self.sync.intents:
                del self.doubtful[key]  # gone, or its bind has been seen
                continue
            where = await self._where(facts, node)
            if where is not None and where[0] is Outcome.UNKNOWN:
                continue
            del self.doubtful[key]
            if where is None or where[0] is not Outcome.BOUND:
                self.sync.release_intent(key)

    # -- the ledger's audit ------------------------------------------------------------------

    def audit(self) -> list[str]:
        """Compare the ledger with one rebuilt from scratch; repair it if they differ."""
        self._last_audit = time.monotonic()
        problems = self.runtime.audit_ledger()
        LEDGER_AUDITS.inc()
        LEDGER_AUDIT_MISMATCHES.set(len(problems))
        if problems:
            log.error(
                "ledger differs from a rebuild on %d node(s); rebuilding: %s",
                len(problems),
                "; ".join(problems[:5]),
            )
            self.runtime.rebuild_ledger()
        return problems

    # -- questions from other controllers ------------------------------------------------

    def explanation(self, gang_id: str) -> str | None:
        """Why the gang (a lone pod: `lone_gang_id(namespace, pod)`) is not placed."""
        return self._explained.get(gang_id)

    def pod_explanation(self, namespace: str, pod: str) -> str | None:
        return self._explained.get(lone_gang_id(namespace, pod))

    def where_to_move(
        self, pod: JSON, demand: PodDemand, required: str | None
    ) -> tuple[tuple[str, ...], PlacementResult]:
        """Where a copy of the bound `pod`, sized `demand`, would go inside the pod's own
        domain at the `required` level (else the topology's lowest level): a what-if,
        nothing is reserved. Returns that domain's path and the engine's answer."""
        levels = self.sync.ledger.topology.domain_levels
        depth = levels.index(required) + 1 if required in levels else len(levels)
        node = self.runtime.nodes.store.get((pod.get("spec") or {}).get("nodeName") or "")
        labels = ((node or {}).get("metadata") or {}).get("labels") or {}
        within = tuple(str(labels.get(level) or "") for level in levels[:depth])
        facts = read_pod(pod)
        gang_id = f"move:{facts.key}"
        if not all(within):
            return within, Unschedulable(
                gang_id,
                UnschedulableReason.NO_MATCHING_NODES,
                "the pod's node is gone or carries no topology labels",
            )
        request = GangRequest(
            gang_id=gang_id,
            pod_count=1,
            gpus_per_pod=max(1, demand.gpus),
            cpu_millis_per_pod=demand.cpu_millis,
            memory_bytes_per_pod=demand.memory_bytes,
            gpu_model=facts.ask.gpu_model,
            within=within,
            extras=facts.demand.extras,
            constraints=(facts.constraints,) if facts.constraints.active else (),
        )
        return within, place_gang(self.sync.ledger, request)

    def free_pod_slots(self, gpus_per_pod: int, model: str | None) -> int:
        """How many more pods of this many GPUs (GPUs only) the cluster could take now."""
        return pod_slots(self.sync.ledger.domain_stats((), model).free_histogram, gpus_per_pod)

    def cached_pod_slots(
        self, gpus_per_pod: int, model: str | None, artefacts: tuple[str, ...]
    ) -> int:
        """How many more pods of this many GPUs (GPUs only) could start on the Cached path
        now: on schedulable nodes that hold every one of `artefacts` (none for none)."""
        free = self.sync.ledger.free_gpus_holding(artefacts, model)
        return pod_slots_on(free, gpus_per_pod)

    # -- telling users -------------------------------------------------------------------

    def explain(self, gang: Gang, result: Unschedulable, reason: str | None = None) -> None:
        message = result.message
        if self._explained.get(gang.gang_id) != message:
            self._explained[gang.gang_id] = message
            log.info("gang %s unschedulable: %s", gang.gang_id, message)
        why = reason or str(result.reason)
        if gang.workload is not None:
            self._verdict(gang.namespace, gang.workload, GangVerdict(False, why, message))
        else:
            self._tell_pods(gang.pending, "Unschedulable", message)

    def report_bad(self, bad: BadGang) -> None:
        message = f"not placed: {bad.message}"
        if self._explained.get(bad.gang_id) != message:
            self._explained[bad.gang_id] = message
            log.warning("gang %s set aside: %s", bad.gang_id, bad.message)
        if bad.workload is not None:
            why = "Unsupported" if bad.unsupported else "InvalidMember"
            self._verdict(bad.namespace, bad.workload, GangVerdict(False, why, message))
        else:
            self._tell_pods(bad.pods, "Unsupported" if bad.unsupported else "InvalidPod", message)

    def _verdict(self, namespace: str, workload: str, verdict: GangVerdict) -> None:
        if self.verdicts is not None:
            self.verdicts.set_verdict(f"{namespace}/{workload}", verdict)

    def _tell_pods(self, pods: Iterable[PodFacts], reason: str, message: str) -> None:
        """A Warning Event and PodScheduled=False on each pod, once per message, as
        kube-scheduler reports a pod it cannot place."""
        client = self.runtime.client
        for pod in pods:
            if self._told.get(pod.key) == message:
                continue
            self._told[pod.key] = message
            self.runtime.spawn_once(
                post_event(client, pod_object(pod), "Warning", "FailedScheduling", message)
            )
            self.runtime.spawn_once(
                self._quietly(
                    set_pod_scheduled(client, pod.namespace, pod.name, reason, message, now_text())
                )
            )

    def _tell_placed(self, pod: PodFacts, note: str) -> None:
        """What the user should know of a placement made (its pods mix GPU models): a
        Warning Event on the gang's first pod placed, once per message."""
        if self._told.get(pod.key) == note:
            return
        self._told[pod.key] = note
        log.info("pod %s: %s", pod.key, note)
        self.runtime.spawn_once(
            post_event(self.runtime.client, pod_object(pod), "Warning", "MixedGPUModels", note)
        )

    @staticmethod
    async def _quietly(work: Awaitable[None]) -> None:
        try:
            await work
        except (ApiError, TransportError) as exc:
            log.info("could not report on a pod: %s", exc)

    def report_bad_nodes(self) -> None:
        """A node whose GPU labels or annotations cannot be read is left out of
        placement; say so once, on the node, where its owner will look."""
        for name, problem in self.sync.bad_nodes.items():
            if self._told.get(f"node:{name}") == problem:
                continue
            self._told[f"node:{name}"] = problem
            node = self.runtime.nodes.store.get(name)
            if node is None:
                continue
            log.warning("node %s left out of GPU placement: %s", name, problem)
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "uid": node["metadata"].get("uid")},
            }
            self.runtime.spawn_once(
                post_event(
                    self.runtime.client,
                    body,
                    "Warning",
                    "InvalidGPUNodeInfo",
                    f"egpu-scheduler cannot place GPU pods here: {problem}",
                )
            )
        for key in [k for k in self._told if k.startswith("node:")]:
            if key[5:] not in self.sync.bad_nodes:
                del self._told[key]

    def scheduled(self, gang: Gang, steps: list[Step]) -> None:
        self._explained.pop(gang.gang_id, None)
        if gang.workload is None:
            return
        first = steps[0].assignment.domain if steps else {}
        common = {
            k: v for k, v in first.items() if all(s.assignment.domain.get(k) == v for s in steps)
        }
        where = ", ".join(f"{k}={v}" for k, v in common.items()) or "the whole cluster"
        message = f"{len(steps) + len(gang.bound)} pods bound within {where}"
        self._verdict(gang.namespace, gang.workload, GangVerdict(True, "GangBound", message))


def start(runtime: Runtime, verdicts: VerdictSink | None = None) -> Binder:
    binder = Binder(runtime, verdicts)
    runtime.spawn_leading("binder", binder.run)
    return binder
