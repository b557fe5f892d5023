"""The binder: the operator is the scheduler of pods that name `egpu-scheduler`.

Each cycle: pending pods are grouped into gangs, ordered by priority then age;
the placement engine decides each gang against the ledger; the whole gang is
reserved in the ledger, its plan is written on every pod (so a restarted
operator finds it), then every pod is bound. If any bind fails, the gang is
rolled back: the ledger hold is released and the pods already bound are
deleted (their controller makes new ones), so no gang stays half-bound.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from egpu.actuators.events import post_event
from egpu.actuators.manifests import (
    DOMAIN_ANNOTATION,
    GANG_MIN_ANNOTATION,
    GANG_SIZE_ANNOTATION,
    GPU_IDS_ANNOTATION,
    GPU_MODEL_ANNOTATION,
    PREFERRED_LEVEL_ANNOTATION,
    REQUIRED_LEVEL_ANNOTATION,
    RESIZE_HEADROOM_ANNOTATION,
    WITHIN_ANNOTATION,
    WORKLOAD_LABEL,
)
from egpu.actuators.pods import bind_pod, clear_assignment, delete_pod, record_assignment
from egpu.controllers.runtime import Runtime, Trigger
from egpu.controllers.workloads import CONTROLLER_KEY, GangVerdict, WorkloadController
from egpu.domain.gang import GangRequest
from egpu.domain.placement import (
    Placement,
    PlacementResult,
    PodAssignment,
    Unschedulable,
    UnschedulableReason,
)
from egpu.domain.quantity import cpu_millis, memory_bytes
from egpu.domain.topology import Topology
from egpu.engines.placement import place_gang
from egpu.kube.client import JSON, ApiError, gather_limited
from egpu.observability.metrics import (
    BIND_FAILURES,
    FREE_GPUS,
    PENDING_GANGS,
    PLACEMENT_SECONDS,
    PODS_BOUND,
)
from egpu.state.ledger_sync import (
    LedgerSync,
    PodDemand,
    assignment_of,
    gang_id_of,
    is_ours,
    pod_demand,
    pod_key,
    rank_of,
)

log = logging.getLogger("egpu.binder")
HOSTNAME_ONLY = Topology(levels=("kubernetes.io/hostname",))
IDLE_CYCLE_SECONDS = 5.0
PARK_MIN_SECONDS = 1.0
PARK_MAX_SECONDS = 60.0
INVALID = UnschedulableReason.INVALID_REQUEST


@dataclass
class Gang:
    gang_id: str
    namespace: str
    size: int
    min_members: int
    pending: list[JSON] = field(default_factory=list)
    bound: list[JSON] = field(default_factory=list)

    @property
    def first(self) -> JSON:
        return (self.pending or self.bound)[0]

    @property
    def priority(self) -> int:
        return int((self.first.get("spec") or {}).get("priority") or 0)

    @property
    def created(self) -> str:
        return str(min(p["metadata"].get("creationTimestamp", "") for p in self.pending))

    @property
    def workload(self) -> str | None:
        return (self.first["metadata"].get("labels") or {}).get(WORKLOAD_LABEL)


def bound_domain(gang: Gang, levels: tuple[str, ...], required: str | None) -> tuple[str, ...]:
    """The required-level domain the gang's bound members sit in: its other members
    must join them there. Empty when nothing is bound or no domain level is required."""
    if not gang.bound or required not in levels:
        return ()
    depth = levels.index(required) + 1
    for pod in gang.bound:
        raw = (pod["metadata"].get("annotations") or {}).get(DOMAIN_ANNOTATION) or "{}"
        try:
            domain = json.loads(raw)
        except json.JSONDecodeError:
            continue
        path = tuple(str(domain.get(level, "")) for level in levels[:depth])
        if all(path):
            return path
    return ()


def headroom_of(pod: JSON) -> tuple[int, int]:
    """(CPU millicores, memory bytes) the pod asks beyond its requests; ValueError when
    the annotation cannot be read."""
    raw = (pod["metadata"].get("annotations") or {}).get(RESIZE_HEADROOM_ANNOTATION)
    if not raw:
        return 0, 0
    try:
        headroom = json.loads(raw)
        return cpu_millis(headroom.get("cpu", 0)), memory_bytes(headroom.get("memory", 0))
    except (json.JSONDecodeError, AttributeError, ValueError) as exc:
        raise ValueError(f"annotation {RESIZE_HEADROOM_ANNOTATION}={raw!r} unreadable") from exc


def within_of(pods: list[JSON]) -> tuple[str, ...]:
    """The domain path a moved member must stay in (its `egpu.io/within`), if any."""
    for pod in pods:
        raw = (pod["metadata"].get("annotations") or {}).get(WITHIN_ANNOTATION)
        try:
            path = json.loads(raw) if raw else []
        except json.JSONDecodeError:
            continue
        if isinstance(path, list) and path and all(isinstance(v, str) and v for v in path):
            return tuple(path)
    return ()


def gang_request(gang: Gang, pods: list[JSON], levels: tuple[str, ...] = ()) -> GangRequest:
    """One request for the pods to place; the gang's pods are alike, so take the largest."""
    demands = [pod_demand(p) for p in pods]
    headrooms = [headroom_of(p) for p in pods]
    annotations = gang.first["metadata"].get("annotations") or {}
    required = annotations.get(REQUIRED_LEVEL_ANNOTATION) or None
    missing = len(pods)
    min_members = max(1, min(missing, gang.min_members - len(gang.bound)))
    within = bound_domain(gang, levels, required)
    moved_within = within_of(pods)
    if len(moved_within) > len(within) and moved_within[: len(within)] == within:
        within = moved_within  # the narrower of the two, when they agree
    return GangRequest(
        gang_id=gang.gang_id,
        pod_count=missing,
        gpus_per_pod=max(d.gpus for d in demands),
        cpu_millis_per_pod=max(d.cpu_millis for d in demands),
        memory_bytes_per_pod=max(d.memory_bytes for d in demands),
        gpu_model=annotations.get(GPU_MODEL_ANNOTATION) or None,
        required_level=required,
        preferred_level=annotations.get(PREFERRED_LEVEL_ANNOTATION) or None,
        min_members=min_members if min_members < missing else None,
        within=within,
        cpu_headroom_millis=max(h[0] for h in headrooms),
        memory_headroom_bytes=max(h[1] for h in headrooms),
    )


def shape_key(r: GangRequest) -> tuple[object, ...]:
    """Everything but the gang's name: two asks with one key get one answer."""
    return (
        r.pod_count,
        r.gpus_per_pod,
        r.cpu_millis_per_pod,
        r.memory_bytes_per_pod,
        r.gpu_model,
        r.required_level,
        r.preferred_level,
        r.min_members,
        r.within,
        r.cpu_headroom_millis,
        r.memory_headroom_bytes,
    )


def binding_annotations(a: PodAssignment) -> dict[str, str]:
    return {
        GPU_IDS_ANNOTATION: ",".join(str(g) for g in a.gpu_indices),
        DOMAIN_ANNOTATION: json.dumps(dict(a.domain), separators=(",", ":"), sort_keys=True),
    }


class Binder:
    def __init__(self, runtime: Runtime, topology_name: str = "default") -> None:
        self.runtime = runtime
        self.topology_name = topology_name
        self.trigger = Trigger()
        self.sync = LedgerSync(self.topology())
        self.in_flight: set[str] = set()  # gangs being bound right now
        self.bind_delay = float(os.environ.get("EGPU_BIND_DELAY_MS", "0")) / 1000
        self._explained: dict[str, str] = {}
        self._bad_reported: dict[str, str] = {}
        # Unschedulable gangs are parked until capacity comes back (a node changes,
        # a pod goes) or their backoff ends: thousands of waiting gangs must not
        # cost thousands of decisions per cycle.
        self.capacity_epoch = 0
        self.parked: dict[str, tuple[int, float, float]] = {}  # gang -> epoch, retry at, backoff
        runtime.nodes.add_listener(self._on_node)
        runtime.pods.add_listener(self._on_pod)

    # -- feeding the ledger -----------------------------------------------------------

    def topology(self) -> Topology:
        body = self.runtime.topologies.get(self.topology_name)
        levels = tuple(
            lv.get("nodeLabel") for lv in ((body or {}).get("spec") or {}).get("levels") or []
        )
        try:
            return Topology(levels=levels) if levels else HOSTNAME_ONLY
        except ValueError as exc:
            log.warning(
                "GPUTopology %s unusable (%s); placing by node only", self.topology_name, exc
            )
            return HOSTNAME_ONLY

    def rebuild(self) -> None:
        self.sync = LedgerSync.rebuild(
            self.topology(),
            list(self.runtime.nodes.store.values()),
            list(self.runtime.pods.store.values()),
        )

    def _on_node(self, event: str, old: JSON | None, new: JSON | None) -> None:
        self.capacity_epoch += 1
        if event == "RESYNC":
            self.rebuild()
        else:
            self.sync.node_changed(old, new)
        self.trigger.kick()
        self.report_bad_nodes()

    def report_bad_nodes(self) -> None:
        """A node whose GPU labels or annotations cannot be read is left out of
        placement; say so once, on the node, where its owner will look."""
        for name, problem in self.sync.bad_nodes.items():
            if self._bad_reported.get(name) == problem:
                continue
            self._bad_reported[name] = problem
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
        for name in list(self._bad_reported):
            if name not in self.sync.bad_nodes:
                del self._bad_reported[name]

    def _on_pod(self, event: str, old: JSON | None, new: JSON | None) -> None:
        if event == "RESYNC":
            self.rebuild()
            self.trigger.kick()
            return
        self.sync.pod_changed(old, new)
        # Wake up for new work, and for capacity given back.
        pending_ours = new is not None and is_ours(new) and not new["spec"].get("nodeName")
        finished = new is not None and (new.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
        )
        if finished or event == "DELETED":
            self.capacity_epoch += 1
        if pending_ours or finished or event == "DELETED":
            self.trigger.kick()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.trigger.wait(timeout=IDLE_CYCLE_SECONDS)
            if self.sync.ledger.topology != self.topology():
                self.rebuild()
            await self.cycle()

    def gangs(self) -> list[Gang]:
        gangs: dict[str, Gang] = {}
        members: dict[str, list[JSON]] = defaultdict(list)
        for pod in self.runtime.pods.store.values():
            if not is_ours(pod) or pod["metadata"].get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            members[gang_id_of(pod)].append(pod)
        for gang_id, pods in members.items():
            if not any(not (p.get("spec") or {}).get("nodeName") for p in pods):
                continue
            annotations = pods[0]["metadata"].get("annotations") or {}
            size = int(annotations.get(GANG_SIZE_ANNOTATION) or 1)
            gang = Gang(
                gang_id=gang_id,
                namespace=pods[0]["metadata"]["namespace"],
                size=size,
                min_members=int(annotations.get(GANG_MIN_ANNOTATION) or size),
            )
            for pod in sorted(pods, key=rank_of):
                (gang.bound if pod["spec"].get("nodeName") else gang.pending).append(pod)
            gangs[gang_id] = gang
        return sorted(gangs.values(), key=lambda g: (-g.priority, g.created, g.gang_id))

    async def cycle(self) -> None:
        jobs = []
        waiting = 0
        # Within a cycle the ledger only fills up: an ask that failed stays failed.
        failed_shapes: dict[tuple[object, ...], Unschedulable] = {}
        for gang in self.gangs():
            if gang.gang_id in self.in_flight:
                continue
            if len(gang.pending) + len(gang.bound) < gang.size:
                waiting += 1  # members still being created: all or nothing
                continue
            plan = self.decide(gang, failed_shapes)
            if plan is None:
                waiting += 1
                continue
            self.in_flight.add(gang.gang_id)
            jobs.append(self.bind_gang(gang, plan))
        PENDING_GANGS.set(waiting)
        FREE_GPUS.set(self.sync.ledger.free_gpus())
        if jobs:
            await gather_limited(64, *jobs)

    def still_parked(self, gang_id: str) -> bool:
        parked = self.parked.get(gang_id)
        if parked is None:
            return False
        epoch, retry_at, _ = parked
        return epoch == self.capacity_epoch and time.monotonic() < retry_at

    def park(self, gang_id: str) -> None:
        _, _, backoff = self.parked.get(gang_id, (0, 0.0, PARK_MIN_SECONDS / 2))
        backoff = min(backoff * 2, PARK_MAX_SECONDS)
        self.parked[gang_id] = (self.capacity_epoch, time.monotonic() + backoff, backoff)

    def decide(
        self, gang: Gang, failed_shapes: dict[tuple[object, ...], Unschedulable] | None = None
    ) -> list[tuple[JSON, PodAssignment]] | None:
        """Reserve the gang's pods in the ledger; None (and a verdict) when it cannot."""
        # Pods the binder planned before a restart: their hold is in the ledger already.
        resumed = [
            (p, a)
            for p in gang.pending
            if (a := assignment_of(p)) is not None and pod_key(p) in self.sync.held
        ]
        fresh = [p for p in gang.pending if pod_key(p) not in self.sync.held]
        plan = list(resumed)
        if fresh:
            if self.still_parked(gang.gang_id):
                return None
            try:
                request = gang_request(gang, fresh, self.sync.ledger.topology.domain_levels)
            except ValueError as exc:
                self.explain(gang, Unschedulable(gang.gang_id, INVALID, str(exc)))
                self.park(gang.gang_id)
                return None
            shape = shape_key(request)
            known = failed_shapes.get(shape) if failed_shapes is not None else None
            if known is not None:  # the same ask failed earlier in this cycle
                result: Placement | Unschedulable = known
            else:
                started = time.perf_counter()
                result = place_gang(self.sync.ledger, request)
                PLACEMENT_SECONDS.observe(time.perf_counter() - started)
            if isinstance(result, Unschedulable):
                if failed_shapes is not None:
                    failed_shapes[shape] = result
                self.explain(gang, result)
                self.park(gang.gang_id)
                return None
            self.parked.pop(gang.gang_id, None)
            plan += self.reserve(gang, fresh, result)
        if len(plan) + len(gang.bound) < gang.min_members:
            return None
        return plan

    def reserve(
        self, gang: Gang, pods: list[JSON], placement: Placement
    ) -> list[tuple[JSON, PodAssignment]]:
        # Engine ranks are 0..n-1 along the topology; pods keep their own rank label.
        ordered = sorted(placement.assignments, key=lambda a: a.rank)
        pairs = []
        for pod, a in zip(pods, ordered, strict=False):
            pairs.append(
                (
                    pod,
                    PodAssignment(
                        rank=rank_of(pod),
                        node=a.node,
                        gpu_indices=a.gpu_indices,
                        domain=a.domain,
                        cpu_millis=a.cpu_millis,
                        memory_bytes=a.memory_bytes,
                    ),
                )
            )
        self.sync.ledger.reserve_pods(gang.gang_id, [a for _, a in pairs])
        for pod, a in pairs:
            self.sync.mark_reserved(pod, gang.gang_id, a.rank)
        return pairs

    async def bind_gang(self, gang: Gang, plan: list[tuple[JSON, PodAssignment]]) -> None:
        client = self.runtime.client
        try:
            if len(plan) > 1 or gang.bound:
                # Record every plan before the first bind: the crash-safe point.
                await self._all(
                    record_assignment(
                        client,
                        p["metadata"]["namespace"],
                        p["metadata"]["name"],
                        a.node,
                        a.gpu_indices,
                        dict(a.domain),
                    )
                    for p, a in plan
                )
            if self.bind_delay:
                for p, a in plan:  # test hook: a slow, observable bind sequence
                    await self._bind(p, a)
                    await asyncio.sleep(self.bind_delay)
            else:
                await self._all(self._bind(p, a) for p, a in plan)
        except (TimeoutError, ApiError, OSError) as exc:
            BIND_FAILURES.labels(getattr(exc, "reason", "") or type(exc).__name__).inc()
            log.warning("binding gang %s failed (%s); rolling back", gang.gang_id, exc)
            await self.roll_back(gang, plan)
            self.explain(
                gang,
                Unschedulable(gang.gang_id, INVALID, f"binding failed and was rolled back: {exc}"),
                reason="BindFailed",
            )
        else:
            PODS_BOUND.inc(len(plan))
            self.scheduled(gang, plan)
        finally:
            self.in_flight.discard(gang.gang_id)
            self.trigger.kick()

    async def _bind(self, pod: JSON, a: PodAssignment) -> None:
        meta = pod["metadata"]
        try:
            await bind_pod(
                self.runtime.client,
                meta["namespace"],
                meta["name"],
                meta["uid"],
                a.node,
                binding_annotations(a),
            )
        except ApiError as exc:
            # Already bound where we wanted it (a retry after a lost reply) is success.
            if exc.conflict and await self._bound_to(pod, a.node):
                return
            raise

    async def _bound_to(self, pod: JSON, node: str) -> bool:
        return await self._bound_node(pod) == node

    async def _bound_node(self, pod: JSON) -> str | None:
        """Where the API server says the pod is bound (the cache may lag behind)."""
        meta = pod["metadata"]
        try:
            current = await self.runtime.client.get(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            )
        except ApiError:
            return None
        node = (current.get("spec") or {}).get("nodeName")
        return str(node) if node else None

    async def roll_back(self, gang: Gang, plan: list[tuple[JSON, PodAssignment]]) -> None:
        client = self.runtime.client
        self.capacity_epoch += 1
        self.sync.ledger.release_gang(gang.gang_id)
        for pod, _ in plan:
            self.sync.held.pop(pod_key(pod), None)
        for pod in gang.bound:
            self.sync.forget(pod_key(pod))
        # Bound members cannot be unbound: they go, and their controller replaces them.
        victims = []
        for pod, _ in plan:
            meta = pod["metadata"]
            if await self._bound_node(pod):
                victims.append(delete_pod(client, meta["namespace"], meta["name"], meta["uid"]))
            else:
                victims.append(clear_assignment(client, meta["namespace"], meta["name"]))
        victims += [
            delete_pod(
                client, p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"]
            )
            for p in gang.bound
        ]
        await gather_limited(32, *victims)

    async def _all(self, aws: Any) -> None:
        results = await gather_limited(32, *aws)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    # -- questions from other controllers ------------------------------------------------

    def explanation(self, gang_id: str) -> str | None:
        """Why the gang (a lone pod: "namespace/pod") is not placed, if it is not."""
        return self._explained.get(gang_id)

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
        gang_id = f"move:{pod_key(pod)}"
        if not all(within):
            return within, Unschedulable(
                gang_id,
                UnschedulableReason.NO_MATCHING_NODES,
                "the pod's node is gone or carries no topology labels",
            )
        annotations = pod["metadata"].get("annotations") or {}
        request = GangRequest(
            gang_id=gang_id,
            pod_count=1,
            gpus_per_pod=max(1, demand.gpus),
            cpu_millis_per_pod=demand.cpu_millis,
            memory_bytes_per_pod=demand.memory_bytes,
            gpu_model=annotations.get(GPU_MODEL_ANNOTATION) or None,
            within=within,
        )
        return within, place_gang(self.sync.ledger, request)

    def free_pod_slots(self, gpus_per_pod: int, model: str | None) -> int:
        """How many more pods of this many GPUs (GPUs only) the cluster could take now."""
        histogram = self.sync.ledger.domain_stats((), model).free_histogram
        return sum(count * (free // gpus_per_pod) for free, count in enumerate(histogram))

    # -- explaining ----------------------------------------------------------------------

    def _controller(self) -> WorkloadController | None:
        return getattr(self.runtime, CONTROLLER_KEY, None)

    def explain(self, gang: Gang, result: Unschedulable, reason: str | None = None) -> None:
        key = gang.gang_id
        message = result.message
        if self._explained.get(key) != message:
            self._explained[key] = message
            log.info("gang %s unschedulable: %s", key, message)
        controller = self._controller()
        if controller is not None and gang.workload:
            controller.set_verdict(
                f"{gang.namespace}/{gang.workload}",
                GangVerdict(scheduled=False, reason=reason or str(result.reason), message=message),
            )

    def scheduled(self, gang: Gang, plan: list[tuple[JSON, PodAssignment]]) -> None:
        self._explained.pop(gang.gang_id, None)
        controller = self._controller()
        if controller is not None and gang.workload:
            common = (
                {
                    k: v
                    for k, v in plan[0][1].domain.items()
                    if all(a.domain.get(k) == v for _, a in plan)
                }
                if plan
                else {}
            )
            where = ", ".join(f"{k}={v}" for k, v in common.items()) or "the whole cluster"
            message = f"{len(plan) + len(gang.bound)} pods bound within {where}"
            controller.set_verdict(
                f"{gang.namespace}/{gang.workload}",
                GangVerdict(scheduled=True, reason="GangBound", message=message),
            )


BINDER_KEY = "binder"


def start(runtime: Runtime, topology_name: str = "default") -> Binder:
    binder = Binder(runtime, topology_name)
    setattr(runtime, BINDER_KEY, binder)
    binder.rebuild()
    # The ledger of a large cluster is hundreds of thousands of long-lived
    # objects: keep them out of the collector's full passes (pauses of 100s of ms).
    gc.freeze()
    runtime.spawn("binder", binder.run)
    return binder
