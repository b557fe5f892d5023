"""GPUWorkload: member pods created and removed, their state folded into status.

kopf feeds the workload objects into the runtime's cache; one level-based loop
reconciles every workload whose objects changed (or all of them, now and then).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import kopf
from pydantic import ValidationError

from egpu import API_VERSION, GROUP, VERSION
from egpu.actuators.claim_templates import create_claim_template
from egpu.actuators.events import patch_status
from egpu.actuators.manifests import (
    build_claim_template,
    build_member_pod,
    dropped_ranks,
    gang_marks,
    member_pod_name,
    template_overrides,
    uses_dra,
)
from egpu.actuators.pods import create_pod, delete_pod, set_gang_marks
from egpu.api.base import validation_message
from egpu.api.workload import GPUWorkloadSpec
from egpu.controllers.binder import GangVerdict
from egpu.controllers.common import EventOnce, is_ready, now_text, parse_time
from egpu.controllers.runtime import Runtime, Trigger, runtime_of
from egpu.domain.conditions import same_status, set_condition
from egpu.domain.duration import parse_duration
from egpu.domain.labels import (
    DOMAIN_ANNOTATION,
    GANG_MIN_ANNOTATION,
    GANG_SIZE_ANNOTATION,
    GPU_IDS_ANNOTATION,
    WORKLOAD_LABEL,
)
from egpu.engines.members import (
    Member,
    count_members,
    gang_timed_out,
    plan_members,
    stale_gang_marks,
    workload_phase,
)
from egpu.kube.client import JSON, ApiError, TransportError, gather_limited
from egpu.observability.metrics import INVALID_OBJECTS, RECONCILE_SECONDS, RECONCILE_TOTAL
from egpu.state.pods import controller_of, owning_workload

log = logging.getLogger("egpu.controllers.workloads")
RESYNC_SECONDS = 30.0
CREATE_BACKOFF_MIN_S = 1.0
CREATE_BACKOFF_MAX_S = 300.0


@dataclass
class CreateBackoff:
    """After the API server refused a member pod: when to ask again, and why it refused."""

    retry_at: float
    delay: float
    generation: int | None
    message: str


@dataclass(frozen=True)
class HealthVerdict:
    """What the repair controller found: shown as the workload's Healthy condition."""

    healthy: bool
    reason: str
    message: str
    failed: bool = False  # the retry budget is spent
    repairing: bool = False  # members deleted by a repair are being replaced


class WorkloadController:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.trigger = Trigger()
        self.dirty: set[str] = set()
        self.verdicts: dict[str, GangVerdict] = {}
        self.health: dict[str, HealthVerdict] = {}
        self.backoff: dict[str, CreateBackoff] = {}
        self.events = EventOnce(runtime.client)
        self.by_workload: dict[str, dict[str, JSON]] = {}
        for pod in runtime.pods.store.values():  # the cache is synced before we start
            self._index(pod, present=True)
        runtime.pods.add_listener(self._on_pod)

    def _on_pod(self, event: str, old: JSON | None, new: JSON | None) -> None:
        if event == "RESYNC":
            self.by_workload.clear()
            for pod in self.runtime.pods.store.values():
                self._index(pod, present=True)
            self.dirty.update(self.runtime.workloads)
            self.trigger.kick()
            return
        pod = new or old or {}
        key = self._index(pod, present=new is not None)
        if key is not None:
            self.dirty.add(key)
            self.trigger.kick()

    def _index(self, pod: JSON, present: bool) -> str | None:
        """Member pods by workload, so a reconcile never scans every pod. A member is a
        pod the workload controls (owner reference); labels alone make nothing a member."""
        meta = pod.get("metadata") or {}
        owner = controller_of(meta)
        workload = owning_workload(owner)
        if owner is None or workload is None:
            return None
        key = f"{meta.get('namespace')}/{workload}"
        members = self.by_workload.setdefault(key, {})
        if present:
            members[meta["name"]] = pod
        else:
            members.pop(meta["name"], None)
            if not members:
                del self.by_workload[key]
        return key

    def touch(self, key: str) -> None:
        self.dirty.add(key)
        self.trigger.kick()

    def set_verdict(self, key: str, verdict: GangVerdict) -> None:
        if self.verdicts.get(key) != verdict:
            self.verdicts[key] = verdict
            self.touch(key)

    def set_health(self, key: str, verdict: HealthVerdict) -> None:
        if self.health.get(key) != verdict:
            self.health[key] = verdict
            self.touch(key)

    async def run(self) -> None:
        last_full = 0.0
        loop = asyncio.get_running_loop()
        wait = RESYNC_SECONDS
        while True:
            await self.trigger.wait(timeout=wait)
            if loop.time() - last_full >= RESYNC_SECONDS:
                self.dirty.update(self.runtime.workloads)
                last_full = loop.time()
            due, wait = self.due_retries(time.monotonic())
            self.dirty |= due
            keys, self.dirty = self.dirty, set()
            for key in keys:
                body = self.runtime.workloads.get(key)
                if body is None:
                    self.verdicts.pop(key, None)
                    self.health.pop(key, None)
                    self.backoff.pop(key, None)
                    continue
                with RECONCILE_SECONDS.labels("GPUWorkload").time():
                    try:
                        outcome = await self.reconcile(body)
                    except (ApiError, TransportError) as exc:
                        outcome = "error"
                        log.warning("reconcile of %s failed: %s", key, exc)
                        self.dirty.add(key)
                    except Exception:  # one strange workload must not stop the others
                        outcome = "error"
                        log.exception("reconcile of %s failed", key)
                RECONCILE_TOTAL.labels("GPUWorkload", outcome).inc()
            INVALID_OBJECTS.labels("GPUWorkload").set(
                sum(
                    1
                    for b in self.runtime.workloads.values()
                    if any(
                        c.get("type") == "Valid" and c.get("status") == "False"
                        for c in (b.get("status") or {}).get("conditions") or []
                    )
                )
            )

    def members(self, namespace: str, name: str, uid: str) -> list[tuple[Member, JSON]]:
        """The workload's member pods: controlled by this very workload (its UID, not
        only its name), named `<workload>-<rank>`."""
        pods = self.by_workload.get(f"{namespace}/{name}", {})
        out = []
        for pod in pods.values():
            owner = controller_of(pod.get("metadata") or {})
            member = member_of(pod, name)
            if owner is not None and owner.uid == uid and member is not None:
                out.append((member, pod))
        return out

    async def reconcile(self, body: JSON) -> str:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = f"{namespace}/{name}"
        generation = meta.get("generation")
        now = now_text()
        status: JSON = dict(body.get("status") or {})
        conditions = list(status.get("conditions") or [])

        if meta.get("deletionTimestamp"):
            return "deleting"  # the garbage collector removes the member pods
        try:
            spec = GPUWorkloadSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            message = validation_message(exc)
            conditions = set_condition(
                conditions, "Valid", False, "InvalidSpec", message, generation, now
            )
            await self._event(body, "Warning", "InvalidSpec", message)
            await self._write_status(
                body,
                {
                    **status,
                    "phase": "Failed",
                    "conditions": conditions,
                    "observedGeneration": generation,
                },
            )
            return "invalid"
        conditions = set_condition(
            conditions, "Valid", True, "Accepted", "the spec is valid", generation, now
        )

        problem = self.topology_problem(spec)
        if problem:
            reason, message = problem
            conditions = set_condition(
                conditions, "TopologyResolved", False, reason, message, generation, now
            )
            await self._event(body, "Warning", reason, message)
        elif spec.topology is not None:
            conditions = set_condition(
                conditions,
                "TopologyResolved",
                True,
                "Resolved",
                f"GPUTopology {spec.topology.topology_name}",
                generation,
                now,
            )

        pairs = self.members(namespace, name, str(meta.get("uid") or ""))
        members = [m for m, _ in pairs]
        dropped = dropped_ranks(body)
        current = spec.replicas - len(dropped)
        if not problem:
            overrides = template_overrides((body.get("spec") or {}).get("template") or {})
            if overrides:
                await self._event(
                    body,
                    "Warning",
                    "TemplateOverridden",
                    "spec.template sets what the operator decides itself; the member pods "
                    f"ignore it: {', '.join(overrides)} (schedulerName is egpu-scheduler, "
                    "nodes are chosen by the binder, egpu.io/ labels and annotations are "
                    "the operator's)",
                )
            plan = plan_members(spec.replicas, members, dropped)
            pods = {m.name: p for m, p in pairs}
            refused = await self._create(body, plan.create_ranks, generation)
            if refused is not None:
                conditions = set_condition(
                    conditions, "PodsCreated", False, "FailedCreate", refused, generation, now
                )
            elif any(c.get("type") == "PodsCreated" for c in conditions):
                conditions = set_condition(
                    conditions,
                    "PodsCreated",
                    True,
                    "Created",
                    "every member pod was accepted",
                    generation,
                    now,
                )
            await gather_limited(
                32,
                *(
                    delete_pod(self.runtime.client, namespace, n, pods[n]["metadata"].get("uid"))
                    for n in plan.delete_names
                ),
            )
            marks = gang_marks(body["spec"], len(dropped))
            await gather_limited(
                32,
                *(
                    set_gang_marks(
                        self.runtime.client, namespace, n, pods[n]["metadata"].get("uid"), marks
                    )
                    for n in stale_gang_marks(
                        [m for m, _ in pairs if m.name not in plan.delete_names], marks
                    )
                ),
            )

        counts = count_members(members)
        verdict = self.verdicts.get(key)
        unschedulable = verdict is not None and not verdict.scheduled
        if verdict is not None and unschedulable:
            waited = waiting_since([p for _, p in pairs])
            timeout = parse_duration(spec.gang.timeout)
            if gang_timed_out(waited, timeout, time.time()):
                verdict = GangVerdict(
                    scheduled=False,
                    reason="GangTimeout",
                    message=f"not placed within {spec.gang.timeout}: {verdict.message}",
                )
        if verdict is not None:
            conditions = set_condition(
                conditions,
                "Scheduled",
                verdict.scheduled,
                verdict.reason,
                verdict.message,
                generation,
                now,
            )
            if not verdict.scheduled:
                await self._event(body, "Warning", verdict.reason, verdict.message)
            else:
                await self._event(body, "Normal", verdict.reason, verdict.message)
        ready = current > 0 and counts.ready == current
        shrunk = f" (shrunk from {spec.replicas})" if dropped else ""
        conditions = set_condition(
            conditions,
            "Ready",
            ready,
            "AllMembersReady" if ready else "MembersNotReady",
            f"{counts.ready}/{current} members ready{shrunk}",
            generation,
            now,
        )
        phase = "Pending" if problem else workload_phase(current, counts, unschedulable)
        health = self.health.get(key)
        if health is not None:
            conditions = set_condition(
                conditions,
                "Healthy",
                health.healthy,
                health.reason,
                health.message,
                generation,
                now,
            )
            if health.failed:
                phase = "Failed"
            elif health.repairing and phase != "Running":
                phase = "Repairing"
        placements = sorted(
            (
                {
                    "pod": m.name,
                    "rank": m.rank,
                    "node": m.node,
                    "gpus": list(m.gpu_ids),
                    "domain": m.domain,
                }
                for m in members
                if m.node and not m.deleting
            ),
            key=lambda p: int(p["rank"]),  # type: ignore[call-overload]
        )
        await self._write_status(
            body,
            {
                **status,
                "phase": phase,
                "conditions": conditions,
                "observedGeneration": generation,
                "replicas": counts.replicas,
                "readyReplicas": counts.ready,
                "boundReplicas": counts.bound,
                "placements": placements,
                "gpuIdsEnforced": uses_dra(body["spec"]),
                "selector": f"{WORKLOAD_LABEL}={name}",
                "wantedMembers": spec.replicas,
                "currentMembers": current,
            },
        )
        return "ok"

    async def _create(
        self, body: JSON, ranks: tuple[int, ...], generation: int | None
    ) -> str | None:
        """Create the missing members. When the API server refuses a pod for good (an
        invalid template, a quota), stop asking for a while (doubling, up to
        CREATE_BACKOFF_MAX_S) and return its message; a spec change asks again at once."""
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        backoff = self.backoff.get(key)
        if backoff is not None and backoff.generation != generation:
            del self.backoff[key]  # a new spec: try it now
            backoff = None
        if not ranks:
            return None
        if backoff is not None and time.monotonic() < backoff.retry_at:
            return backoff.message
        results: list[Any] = []
        if uses_dra(body["spec"]):  # the pods name it: it comes first
            try:
                await create_claim_template(self.runtime.client, build_claim_template(body))
            except ApiError as exc:
                results.append(exc)
        if not results:
            results = await gather_limited(
                32, *(create_pod(self.runtime.client, build_member_pod(body, r)) for r in ranks)
            )
        errors = [r for r in results if isinstance(r, BaseException)]
        refusals = [e for e in errors if isinstance(e, ApiError) and not e.transient]
        if not refusals:
            self.backoff.pop(key, None)
            if errors:
                raise errors[0]  # busy or unreachable: the loop tries again soon
            return None
        delay = CREATE_BACKOFF_MIN_S if backoff is None else backoff.delay * 2
        delay = min(delay, CREATE_BACKOFF_MAX_S)
        message = f"the API server refused a member pod: {refusals[0].message}"[:1024]
        self.backoff[key] = CreateBackoff(time.monotonic() + delay, delay, generation, message)
        log.warning("GPUWorkload %s: %s; asking again in %.0fs", key, message, delay)
        await self._event(body, "Warning", "FailedCreate", message)
        return message

    def due_retries(self, now: float) -> tuple[set[str], float]:
        """Workloads whose create backoff has ended, and the seconds until the next one."""
        due = {k for k, b in self.backoff.items() if b.retry_at <= now}
        later = [b.retry_at - now for b in self.backoff.values() if b.retry_at > now]
        return due, min(later, default=RESYNC_SECONDS)

    def topology_problem(self, spec: GPUWorkloadSpec) -> tuple[str, str] | None:
        if spec.topology is None:
            return None
        topo = self.runtime.topologies.get(spec.topology.topology_name)
        if topo is None:
            return (
                "TopologyNotFound",
                f"GPUTopology {spec.topology.topology_name!r} does not exist",
            )
        levels = [lv.get("nodeLabel") for lv in (topo.get("spec") or {}).get("levels") or []]
        for field, level in (
            ("required", spec.topology.required),
            ("preferred", spec.topology.preferred),
        ):
            if level is not None and level not in levels:
                return (
                    "UnknownTopologyLevel",
                    f"spec.topology.{field}: level {level!r} is not one of GPUTopology "
                    f"{spec.topology.topology_name!r}'s levels {levels}",
                )
        required, preferred = spec.topology.required, spec.topology.preferred
        # Levels run from the widest (outermost) to the narrowest.
        if (
            required is not None
            and preferred is not None
            and levels.index(preferred) <= levels.index(required)
        ):
            return (
                "PreferredNotNarrower",
                f"spec.topology.preferred {preferred!r} must be a narrower level than "
                f"required {required!r}; GPUTopology {spec.topology.topology_name!r} "
                f"orders its levels {levels} (widest first)",
            )
        return None

    async def _write_status(self, body: JSON, status: JSON) -> None:
        if same_status(dict(body.get("status") or {}), status):
            return
        meta = body["metadata"]
        await patch_status(
            self.runtime.client,
            API_VERSION,
            "gpuworkloads",
            meta["namespace"],
            meta["name"],
            status,
        )

    async def _event(self, body: JSON, kind: str, reason: str, message: str) -> None:
        await self.events.post(body, kind, reason, message)


def waiting_since(pods: list[JSON]) -> float | None:
    """Creation time of the oldest member still waiting for a node."""
    times = [
        t
        for p in pods
        if not (p.get("spec") or {}).get("nodeName")
        and (t := parse_time(p["metadata"].get("creationTimestamp"))) is not None
    ]
    return min(times) if times else None


def gpu_ids_of(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    return tuple(int(p) for p in parts if p.isascii() and p.isdigit())


def rank_in_name(pod_name: str, workload: str) -> int | None:
    """The rank a member's name gives (`<workload>-<rank>`): set by the operator when it
    created the pod and immutable, unlike the rank label."""
    prefix = f"{workload}-"
    suffix = pod_name[len(prefix) :] if pod_name.startswith(prefix) else ""
    if not (suffix.isascii() and suffix.isdigit()):
        return None
    rank = int(suffix)
    return rank if member_pod_name(workload, rank) == pod_name else None


def member_of(pod: JSON, workload: str) -> Member | None:
    meta, status = pod["metadata"], pod.get("status") or {}
    rank = rank_in_name(str(meta.get("name", "")), workload)
    if rank is None:
        return None
    annotations = meta.get("annotations") or {}
    ids = str(annotations.get(GPU_IDS_ANNOTATION) or "")
    try:
        domain = json.loads(annotations.get(DOMAIN_ANNOTATION) or "{}")
    except (ValueError, TypeError):
        domain = {}
    return Member(
        name=meta["name"],
        rank=rank,
        node=(pod.get("spec") or {}).get("nodeName"),
        phase=status.get("phase", "Pending"),
        ready=is_ready(pod),
        deleting=bool(meta.get("deletionTimestamp")),
        gpu_ids=tuple(
            int(x) for x in ids.split(",") if x.strip().isascii() and x.strip().isdigit()
        ),
        domain=domain if isinstance(domain, dict) else {},
        gang_marks=(
            str(annotations.get(GANG_SIZE_ANNOTATION)),
            str(annotations.get(GANG_MIN_ANNOTATION)),
        ),
    )


def start(runtime: Runtime) -> WorkloadController:
    controller = WorkloadController(runtime)
    runtime.spawn_leading("workloads", controller.run)
    return controller


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(GROUP, VERSION, "gpuworkloads", registry=registry)
    async def on_workload(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime = runtime_of(memo)
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        if type == "DELETED":
            runtime.workloads.pop(key, None)
        else:
            runtime.workloads[key] = dict(body)
        controller: WorkloadController | None = getattr(memo, "workloads", None)
        if controller is not None:
            controller.touch(key)
