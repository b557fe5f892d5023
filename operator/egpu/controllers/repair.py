"""Repair: the agents' GPU health reports turned into fences, and the workloads on
fenced GPUs repaired by their policy. Glue only: the decisions are
`egpu.engines.repair`; this loop reads the caches, acts, and reports.

Each pass (leader only):
1. fences: every Node's `egpu.io/gpu-health` report against the GPUs fenced before
   (`egpu.io/fenced-gpus`); new fences go into the one ledger at once (the binder never
   places on them) and onto the Node (`egpu.io/unhealthy-gpus`, which every replica's
   ledger reads); the circuit breaker refuses new nodes past its limit;
2. repairs: every GPUWorkload with live members on an unhealthy GPU or a lost node
   (deleted, or not Ready past EGPU_NODE_LOST_AFTER, under the breaker too), or hung
   (no progress for its hang timeout), gets
   `egpu.engines.repair.workloads.decide_repair`'s decision carried out: its record
   written on the workload first (retry budget, resume point), then the members deleted
   with their grace period; the workload controller creates them again and the binder
   places them. An elastic workload (policy Shrink) shrunk earlier grows back as room
   returns in its domain. The workload's `Healthy` condition and Events say what happened.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from egpu import API_VERSION
from egpu.actuators.events import post_event
from egpu.actuators.manifests import repair_record
from egpu.actuators.pods import delete_pod
from egpu.api.workload import GPUWorkloadSpec
from egpu.controllers.common import parse_time
from egpu.controllers.runtime import Runtime, Trigger
from egpu.controllers.workloads import HealthVerdict, WorkloadController
from egpu.domain.duration import parse_duration
from egpu.domain.gpu import parse_unhealthy_gpus
from egpu.domain.labels import (
    FENCED_GPUS_ANNOTATION,
    GPU_COUNT_LABEL,
    GPU_HEALTH_ANNOTATION,
    GPU_RESOURCE,
    LOST_NODE_ANNOTATION,
    PROGRESS_SEEN_ANNOTATION,
    REPAIR_ANNOTATION,
    UNHEALTHY_GPUS_ANNOTATION,
)
from egpu.engines.health.report import parse_report
from egpu.engines.repair.elastic import FreeNode, domain_of_running, room_for_members
from egpu.engines.repair.fencing import BreakerPolicy, BreakerState, NodeHealth, plan_fences
from egpu.engines.repair.liveness import (
    Progress,
    Readiness,
    clocks_to_record,
    hung_members,
    lost_nodes,
    track_progress,
)
from egpu.engines.repair.workloads import (
    Action,
    Backoff,
    MemberState,
    MoveDecision,
    RepairDecision,
    RepairRecord,
    affected_members,
    decide_grow,
    decide_move,
    decide_regrow_stuck,
    decide_repair,
)
from egpu.kube.client import JSON, ApiError, TransportError, gather_limited, path_for
from egpu.observability.metrics import FENCE_BREAKER_OPEN, FENCED_GPUS, FENCES_REFUSED, REPAIRS

log = logging.getLogger("egpu.controllers.repair")
ASKED_TTL_S = 600.0
REPAIRS_IN_FLIGHT = 16  # workloads repaired at once in a pass


Move = tuple[JSON, MoveDecision, list[MemberState], float]  # body, decision, members, grace


@dataclass(frozen=True)
class RepairSettings:
    interval_s: float = 2.0
    stale_after_s: float = 300.0  # an agent report older than this is no report
    node_lost_after_s: float = 30.0  # not Ready this long: the node and its GPUs are lost
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    backoff: Backoff = field(default_factory=Backoff)

    @classmethod
    def from_env(cls) -> RepairSettings:
        env = os.environ.get
        return cls(
            interval_s=parse_duration(env("EGPU_REPAIR_INTERVAL", "2s")),
            stale_after_s=parse_duration(env("EGPU_HEALTH_STALE_AFTER", "5m")),
            node_lost_after_s=parse_duration(env("EGPU_NODE_LOST_AFTER", "30s")),
            breaker=BreakerPolicy(
                window_s=parse_duration(env("EGPU_BREAKER_WINDOW", "5m")),
                max_fraction=float(env("EGPU_BREAKER_MAX_FRACTION", "0.5")),
                min_nodes=int(env("EGPU_BREAKER_MIN_NODES", "2")),
                reset_after_s=parse_duration(env("EGPU_BREAKER_RESET", "10m")),
            ),
            backoff=Backoff(
                base_s=parse_duration(env("EGPU_REPAIR_BACKOFF", "10s")),
                max_s=parse_duration(env("EGPU_REPAIR_BACKOFF_MAX", "5m")),
            ),
        )


def fenced_record(node: JSON) -> tuple[frozenset[int], float | None]:
    raw = ((node.get("metadata") or {}).get("annotations") or {}).get(FENCED_GPUS_ANNOTATION)
    try:
        data = json.loads(raw) if raw else {}
        gpus = frozenset(int(i) for i in data.get("gpus") or [])
        at = data.get("at")
        return gpus, float(at) if isinstance(at, int | float) else None
    except (ValueError, TypeError, AttributeError):
        return frozenset(), None


def lost_record(node: JSON) -> float | None:
    """When the breaker counted this lost node (egpu.io/lost-node), if it did."""
    raw = _ann(node).get(LOST_NODE_ANNOTATION)
    try:
        at = json.loads(raw).get("at") if raw else None
    except (ValueError, AttributeError):
        return None
    return float(at) if isinstance(at, int | float) else None


def progress_seen(annotations: dict[str, str]) -> Progress | None:
    """The hang clock a leader recorded on a member (egpu.io/progress-seen)."""
    raw = annotations.get(PROGRESS_SEEN_ANNOTATION)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value, since = data.get("value"), data.get("since")
    if (value is None or isinstance(value, str)) and isinstance(since, int | float):
        return Progress(value, float(since))
    return None


def gpu_count_of(node: JSON) -> int:
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    text = (status.get("allocatable") or {}).get(GPU_RESOURCE) or (
        (meta.get("labels") or {}).get(GPU_COUNT_LABEL) or "0"
    )
    try:
        return max(0, int(str(text)))
    except ValueError:
        return 0


def readiness(node: JSON) -> Readiness:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return Readiness(str(c.get("status")), parse_time(c.get("lastTransitionTime")))
    return Readiness(None, None)


def node_health(
    node: JSON,
    now: float,
    stale_after_s: float,
    problems: dict[str, str] | None = None,
    lost: bool = False,
) -> NodeHealth:
    """What the fencing engine needs of one Node. An unreadable report counts as none
    (what was fenced stays fenced, nothing new is); `problems` collects why."""
    meta = node["metadata"]
    annotations = meta.get("annotations") or {}
    count = gpu_count_of(node)
    ours, _ = fenced_record(node)
    try:
        marked = parse_unhealthy_gpus(annotations.get(UNHEALTHY_GPUS_ANNOTATION), count)
    except ValueError:
        marked = frozenset()
    try:
        report = parse_report(annotations.get(GPU_HEALTH_ANNOTATION))
    except ValueError as exc:
        if problems is not None:
            problems[meta["name"]] = str(exc)
        report = None
    reported = None
    at_risk: frozenset[int] = frozenset()
    if report is not None and now - report.checked_at <= stale_after_s:
        reported = report.unhealthy_gpus
        at_risk = frozenset(report.at_risk)
    return NodeHealth(
        name=meta["name"],
        gpu_count=count,
        reported_unhealthy=reported,
        fenced_by_us=ours,
        marked_by_others=marked - ours,
        cordoned=bool((node.get("spec") or {}).get("unschedulable")),
        at_risk=at_risk,
        lost=lost,
    )


class RepairController:
    def __init__(
        self,
        runtime: Runtime,
        workloads: WorkloadController,
        settings: RepairSettings | None = None,
    ) -> None:
        self.runtime = runtime
        self.workloads = workloads
        self.settings = settings or RepairSettings.from_env()
        self.trigger = Trigger()
        self.breaker = BreakerState()
        self.asked: dict[str, float] = {}  # pod UID -> when its deletion was asked
        self.refused_told: set[str] = set()
        self.bad_reports: dict[str, str] = {}
        self.watched: dict[str, str | None] = {}  # member UID -> checkpoint when at risk
        self.at_risk_notes: dict[str, str] = {}
        self.not_ready_seen: dict[str, float] = {}  # node -> when first seen not Ready
        self.lost: frozenset[str] = frozenset()  # lost nodes the breaker let through
        self.progress: dict[str, Progress] = {}  # member UID -> its last progress
        self.clocks_written: dict[str, Progress] = {}  # member UID -> clock recorded on it
        self._free: list[FreeNode] | None = None  # the ledger's free GPUs, this pass
        self._watched_progress: dict[str, Progress] = {}  # the clocks this pass keeps
        self._restored = False
        runtime.nodes.add_listener(self._on_node)

    def _on_node(self, event: str, old: JSON | None, new: JSON | None) -> None:
        if event == "RESYNC":
            self.trigger.kick()
            return
        keys = (GPU_HEALTH_ANNOTATION, UNHEALTHY_GPUS_ANNOTATION)
        if (
            old is None
            or new is None
            or any(_ann(old).get(k) != _ann(new).get(k) for k in keys)
            or readiness(old).status != readiness(new).status
        ):
            self.trigger.kick()

    def restore(self) -> None:
        """A new leader: the fences and their times, and the lost nodes the breaker
        counted, from the Nodes (the breaker's window; past its limit, the next pass
        opens it again)."""
        counted: dict[str, float] = {}
        for node in self.runtime.nodes.store.values():
            name = node["metadata"]["name"]
            gpus, at = fenced_record(node)
            if gpus:
                self.runtime.ledger.set_fence(node, gpus)
            for when in (at if gpus else None, lost_record(node)):
                if when is not None:
                    counted[name] = min(when, counted.get(name, when))
        self.breaker = BreakerState(tuple(sorted(counted.items())))
        self._restored = True

    async def run(self) -> None:
        self.restore()
        while True:
            await self.trigger.wait(timeout=self.settings.interval_s)
            try:
                await self.cycle(time.time())
            except (ApiError, TransportError) as exc:
                log.warning("repair pass failed: %s", exc)

    # -- fences --------------------------------------------------------------------

    async def cycle(self, now: float) -> None:
        self.asked = {u: t for u, t in self.asked.items() if now - t < ASKED_TTL_S}
        moves = self.plan_moves(now)
        move_off: dict[str, frozenset[int]] = {}
        for _, decision, _, _ in moves.values():
            for node, gpus in (decision.fence or {}).items():
                move_off[node] = move_off.get(node, frozenset()) | gpus
        fenced = await self.fence(now, move_off)
        for key, (body, decision, members, grace) in moves.items():
            if all(g <= fenced.get(n, frozenset()) for n, g in (decision.fence or {}).items()):
                as_repair = RepairDecision(
                    Action.MOVE,
                    delete=decision.delete,
                    record=decision.record,
                    reason=decision.reason,
                    message=decision.message,
                )
                await self.carry_out(key, body, as_repair, members, grace, now)
        await self.repair(now, fenced)

    def plan_moves(
        self, now: float
    ) -> dict[str, tuple[JSON, MoveDecision, list[MemberState], float]]:
        """Moving first: workloads with members on GPUs at risk, moved at their next
        checkpoint (the fences for it are made with this pass's)."""
        at_risk: dict[str, frozenset[int]] = {}
        for node in self.runtime.nodes.store.values():
            health = node_health(node, now, self.settings.stale_after_s)
            if health.at_risk:
                at_risk[health.name] = health.at_risk
        self.at_risk_notes = {}
        moves = {}
        watching: set[str] = set()
        breaker_open = self.breaker.open(self.settings.breaker, now)
        if not at_risk:
            self.watched = {}
            return {}
        for key, body in list(self.runtime.workloads.items()):
            parsed = self._members(body)
            if parsed is None:
                continue
            spec, members = parsed
            if spec.repair.checkpoint is None or spec.repair.checkpoint.annotation is None:
                continue
            decision = decide_move(
                spec.repair.policy,
                spec.repair.max_restarts,
                members,
                at_risk,
                self.watched,
                record_of(body),
                now,
                self.settings.backoff,
                frozenset(self.asked),
                breaker_open,
            )
            if decision.action is Action.WATCH:
                for uid, checkpoint in (decision.watch or {}).items():
                    self.watched.setdefault(uid, checkpoint)
                    watching.add(uid)
                self.at_risk_notes[key] = decision.message
            elif decision.action is Action.MOVE:
                moves[key] = (body, decision, members, parse_duration(spec.repair.grace_period))
        self.watched = {u: c for u, c in self.watched.items() if u in watching}
        return moves

    def _members(self, body: JSON) -> tuple[GPUWorkloadSpec, list[MemberState]] | None:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return None
        try:
            spec = GPUWorkloadSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            return None  # the workload controller reports it
        checkpoint_key = spec.repair.checkpoint.annotation if spec.repair.checkpoint else None
        progress_key = spec.repair.progress_annotation
        pairs = self.workloads.members(meta["namespace"], meta["name"], str(meta.get("uid") or ""))
        members = []
        for member, pod in pairs:
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            members.append(
                MemberState(
                    name=member.name,
                    rank=member.rank,
                    uid=str(pod["metadata"].get("uid") or ""),
                    node=member.node,
                    gpu_ids=member.gpu_ids,
                    deleting=member.deleting,
                    finished=member.phase in ("Succeeded", "Failed"),
                    checkpoint=annotations.get(checkpoint_key) if checkpoint_key else None,
                    pending_since=None
                    if member.node
                    else parse_time(pod["metadata"].get("creationTimestamp")),
                    domain=tuple(sorted(member.domain.items())),
                    running=member.phase == "Running" and member.node is not None,
                    progress=annotations.get(progress_key) if progress_key else None,
                    progress_seen=progress_seen(annotations) if progress_key else None,
                )
            )
        return spec, members

    async def fence(
        self, now: float, move_off: dict[str, frozenset[int]] | None = None
    ) -> dict[str, frozenset[int]]:
        nodes = self.runtime.nodes.store
        problems: dict[str, str] = {}
        ready = {name: readiness(n) for name, n in nodes.items()}
        self.not_ready_seen = {
            name: self.not_ready_seen.get(name, now)
            for name, r in ready.items()
            if r.status not in (None, "True")
        }
        lost = lost_nodes(ready, self.not_ready_seen, now, self.settings.node_lost_after_s)
        healths = [
            node_health(n, now, self.settings.stale_after_s, problems, name in lost)
            for name, n in nodes.items()
        ]
        if move_off:
            healths = [
                replace(h, move_off=move_off[h.name]) if h.name in move_off else h for h in healths
            ]
        for name, problem in problems.items():
            if self.bad_reports.get(name) != problem:
                log.warning("node %s: unreadable GPU health report: %s", name, problem)
                self.runtime.spawn_once(
                    post_event(
                        self.runtime.client,
                        {**nodes[name], "apiVersion": "v1", "kind": "Node"},
                        "Warning",
                        "InvalidGPUHealthReport",
                        f"{problem}; its GPUs are judged as if it had no report",
                    )
                )
        self.bad_reports = problems
        plan = plan_fences(healths, self.breaker, self.settings.breaker, now)
        self.breaker = plan.breaker
        for name in plan.lost - self.lost:
            log.warning(
                "node %s is lost (not Ready for %ss): its GPUs are faulty",
                name,
                self.settings.node_lost_after_s,
            )
        self.lost = plan.lost
        by_name = {h.name: h for h in healths}
        writes = self._lost_records(plan.lost, plan.breaker, now)
        for change in plan.changes:
            node = nodes.get(change.node)
            if node is None:
                continue
            self.runtime.ledger.set_fence(node, change.fenced)  # before anything else
            writes.append(self._write_fence(node, by_name[change.node], change.fenced, now))
            if change.added:
                log.info("fenced GPUs %s of %s", sorted(change.added), change.node)
            if change.removed:
                log.info("unfenced GPUs %s of %s", sorted(change.removed), change.node)
        await gather_limited(16, *writes)
        if plan.refused:
            FENCES_REFUSED.inc(len(plan.refused))
        for name, gpus in plan.refused.items():
            if name in self.refused_told or name not in nodes:
                continue
            self.refused_told.add(name)
            log.warning("circuit breaker: not fencing GPUs %s of %s", sorted(gpus), name)
            what = (
                "the node is lost (not Ready) but its members are not repaired"
                if name in lost
                else f"GPUs {sorted(gpus)} reported unhealthy are not fenced"
            )
            self.runtime.spawn_once(
                post_event(
                    self.runtime.client,
                    {**nodes[name], "apiVersion": "v1", "kind": "Node"},
                    "Warning",
                    "FencingPaused",
                    f"{what}: the circuit "
                    f"breaker is open (more than {self.settings.breaker.max_fraction:.0%} of "
                    f"the GPU nodes fenced or lost within "
                    f"{self.settings.breaker.window_s:.0f}s)",
                )
            )
        is_open = self.breaker.open(self.settings.breaker, now)
        if not is_open:
            self.refused_told.clear()
        FENCE_BREAKER_OPEN.set(1 if is_open else 0)
        FENCED_GPUS.set(sum(len(g) for g in plan.fenced.values()))
        # every GPU marked unhealthy, by us or by others, is avoided and repaired
        unhealthy: dict[str, frozenset[int]] = {}
        for h in healths:
            bad = plan.fenced.get(h.name, frozenset()) | h.marked_by_others
            if bad:
                unhealthy[h.name] = bad
        return unhealthy

    def _lost_records(
        self, lost: frozenset[str], breaker: BreakerState, now: float
    ) -> list[Awaitable[object]]:
        """egpu.io/lost-node on each lost node the breaker counted (when it counted it),
        taken off a node that is back once the breaker's window has passed it."""
        counted = dict(breaker.fenced_at)
        writes: list[Awaitable[object]] = []
        for name, node in self.runtime.nodes.store.items():
            at = lost_record(node)
            if name in lost and name in counted and at is None:
                text: str | None = json.dumps({"at": counted[name]})
            elif (
                name not in lost
                and _ann(node).get(LOST_NODE_ANNOTATION) is not None
                and (at is None or now - at >= self.settings.breaker.window_s)
            ):
                text = None
            else:
                continue
            writes.append(
                self.runtime.client.patch(
                    path_for("v1", "nodes", None, name),
                    {"metadata": {"annotations": {LOST_NODE_ANNOTATION: text}}},
                )
            )
        return writes

    async def _write_fence(
        self, node: JSON, health: NodeHealth, fenced: frozenset[int], now: float
    ) -> None:
        _, at = fenced_record(node)
        unhealthy = sorted(health.marked_by_others | fenced)
        record = json.dumps({"gpus": sorted(fenced), "at": at or now}) if fenced else None
        patch = {
            "metadata": {
                "annotations": {
                    UNHEALTHY_GPUS_ANNOTATION: ",".join(str(i) for i in unhealthy) or None,
                    FENCED_GPUS_ANNOTATION: record,
                }
            }
        }
        name = node["metadata"]["name"]
        await self.runtime.client.patch(path_for("v1", "nodes", None, name), patch)
        added = fenced - health.fenced_by_us
        removed = health.fenced_by_us - fenced
        obj = {**node, "apiVersion": "v1", "kind": "Node"}
        if added:
            await post_event(
                self.runtime.client,
                obj,
                "Warning",
                "GPUFenced",
                f"GPUs {sorted(added)} reported unhealthy by the node agent are fenced: "
                "nothing new is placed on them",
            )
        if removed:
            await post_event(
                self.runtime.client,
                obj,
                "Normal",
                "GPUUnfenced",
                f"GPUs {sorted(removed)} are healthy again (a passing check after a quiet "
                "period) and back in placement",
            )

    # -- repairs -------------------------------------------------------------------

    async def repair(self, now: float, unhealthy: dict[str, frozenset[int]]) -> None:
        nodes = set(self.runtime.nodes.store)
        breaker_open = self.breaker.open(self.settings.breaker, now)
        self._free = None
        self._watched_progress = {}

        async def one(key: str, body: JSON) -> None:
            try:
                await self.repair_one(key, body, now, unhealthy, nodes, breaker_open)
            except (ApiError, TransportError) as exc:
                log.warning("repair of %s failed: %s", key, exc)
            except Exception:  # one strange workload must not stop the others
                log.exception("repair of %s failed", key)

        # side by side: one workload's API calls never hold back another's repair (nor
        # the next pass's fences) under a burst of faults
        await gather_limited(
            REPAIRS_IN_FLIGHT, *(one(k, b) for k, b in list(self.runtime.workloads.items()))
        )
        self.progress = self._watched_progress  # members no longer watched are forgotten
        self.clocks_written = {
            u: p for u, p in self.clocks_written.items() if u in self._watched_progress
        }

    def free_nodes(self) -> list[FreeNode]:
        """The ledger's free GPUs per node, read once a pass (only when asked)."""
        if self._free is None:
            ledger = self.runtime.ledger.ledger
            views = [ledger.node_view(n) for n in ledger.node_names()]
            self._free = [FreeNode(v.name, v.model, len(v.free_gpus), v.domain) for v in views]
        return self._free

    def room(self, spec: GPUWorkloadSpec, members: list[MemberState], skip: set[str]) -> int:
        level = spec.topology.required if spec.topology is not None else None
        within = domain_of_running(members, level, frozenset(skip))
        return room_for_members(self.free_nodes(), within, spec.gpus_per_pod, spec.gpu_model)

    def hung(
        self, spec: GPUWorkloadSpec, members: list[MemberState], now: float, namespace: str
    ) -> frozenset[str]:
        """Members with no new progress for the workload's hang timeout. A clock still
        for half the timeout is recorded on its member, for a new leader."""
        if spec.repair.hang_timeout is None:
            return frozenset()
        timeout = parse_duration(spec.repair.hang_timeout)
        live = [m for m in members if m.running and not m.deleting]
        recorded = {m.uid: m.progress_seen for m in live if m.progress_seen is not None}
        clocks = track_progress(self.progress, {m.uid: m.progress for m in live}, now, recorded)
        self._watched_progress.update(clocks)
        by_uid = {m.uid: m for m in live}
        written = {u: p for u, p in self.clocks_written.items() if u in by_uid}
        for uid, clock in clocks_to_record(clocks, recorded | written, timeout, now).items():
            self.clocks_written[uid] = clock  # not again while the pod cache catches up
            self.runtime.spawn_once(self._record_clock(namespace, by_uid[uid], clock))
        return hung_members(clocks, timeout, now)

    async def _record_clock(self, namespace: str, member: MemberState, clock: Progress) -> None:
        text = json.dumps({"value": clock.value, "since": clock.since})
        try:
            await self.runtime.client.patch(
                path_for("v1", "pods", namespace, member.name),
                # the UID: never written onto a replacement of the same name
                {"metadata": {"uid": member.uid, "annotations": {PROGRESS_SEEN_ANNOTATION: text}}},
            )
        except (ApiError, TransportError) as exc:
            log.info("pod %s: hang clock not recorded: %s", member.name, exc)

    async def repair_one(
        self,
        key: str,
        body: JSON,
        now: float,
        unhealthy: dict[str, frozenset[int]],
        nodes: set[str],
        breaker_open: bool,
    ) -> None:
        parsed = self._members(body)
        if parsed is None:
            return
        spec, members = parsed
        gone = frozenset(m.node for m in members if m.node is not None and m.node not in nodes)
        lost = gone | self.lost
        record = record_of(body)
        hung = self.hung(spec, members, now, body["metadata"]["namespace"])
        room = 0
        hit = {m.uid for m in affected_members(members, unhealthy, lost)}
        if (spec.repair.policy == "Shrink" and hit) or record.dropped:
            room = self.room(spec, members, hit)  # dropped ranks grow back whatever the policy
        decision = decide_repair(
            spec.repair.policy,
            spec.repair.max_restarts,
            members,
            unhealthy,
            lost,
            record,
            now,
            self.settings.backoff,
            frozenset(self.asked),
            breaker_open,
            min_members=spec.min_replicas,
            room=room,
            hung=hung,
        )
        retry_after = self.settings.backoff.max_s
        if decision.action is Action.NOTHING and record.grown:
            decision = (
                decide_regrow_stuck(members, record, now, retry_after_s=retry_after) or decision
            )
        if decision.action is Action.NOTHING and record.dropped:
            decision = decide_grow(spec.replicas, record, room, breaker_open, now, retry_after)
            if decision.action is Action.NOTHING and decision.reason:  # still shrunk
                self.workloads.set_health(
                    key, HealthVerdict(False, decision.reason, decision.message)
                )
                return
        await self.carry_out(
            key, body, decision, members, parse_duration(spec.repair.grace_period), now, lost
        )

    async def carry_out(
        self,
        key: str,
        body: JSON,
        decision: RepairDecision,
        members: list[MemberState],
        grace_s: float,
        now: float,
        lost: frozenset[str] = frozenset(),
    ) -> None:
        meta = body["metadata"]
        if decision.action is Action.NOTHING and key in self.at_risk_notes:
            self.workloads.set_health(
                key, HealthVerdict(True, "GPUAtRisk", self.at_risk_notes[key])
            )
            return
        if decision.action is Action.NOTHING:
            in_flight = any(m.uid in self.asked for m in members) or any(
                m.deleting for m in members
            )
            if decision.record.restarts:
                last = decision.record
                self.workloads.set_health(
                    key,
                    HealthVerdict(
                        True,
                        "Repaired",
                        f"{last.restarts} repair(s); no member on an unhealthy GPU",
                        repairing=in_flight,
                    ),
                )
            else:
                self.workloads.set_health(
                    key, HealthVerdict(True, "NoFault", "no member on an unhealthy GPU")
                )
            return
        if decision.action in (Action.REPORT, Action.WAIT, Action.GIVE_UP):
            failed = decision.action is Action.GIVE_UP
            self.workloads.set_health(
                key, HealthVerdict(False, decision.reason, decision.message, failed=failed)
            )
            await self.workloads.events.post(body, "Warning", decision.reason, decision.message)
            if decision.action is not Action.WAIT:
                REPAIRS.labels(decision.action.value).inc()
            return
        # ReplaceMember / RestartGang / Shrink / Grow: the record first, so the
        # replacements (and the workload controller) see it
        new = decision.record
        text = json.dumps(
            {
                "restarts": new.restarts,
                "lastRepair": new.last_repair,
                "resumeFrom": new.resume_from,
                **({"dropped": list(new.dropped)} if new.dropped else {}),
                **({"grown": list(new.grown), "grownAt": new.grown_at} if new.grown else {}),
                **({"growFailedAt": new.grow_failed_at} if new.grow_failed_at else {}),
            },
            sort_keys=True,
        )
        updated = await self.runtime.client.patch(
            path_for(API_VERSION, "gpuworkloads", meta["namespace"], meta["name"]),
            {"metadata": {"annotations": {REPAIR_ANNOTATION: text}}},
        )
        if key in self.runtime.workloads and isinstance(updated, dict):
            self.runtime.workloads[key] = updated  # the recreated pods read it from here
        by_name = {m.name: m for m in members}
        for name in decision.delete:
            self.asked[by_name[name].uid] = now
        await gather_limited(
            16,
            *(
                delete_pod(
                    self.runtime.client,
                    meta["namespace"],
                    name,
                    by_name[name].uid,
                    # no kubelet is left on a lost node to give it a grace period
                    grace_seconds=0 if by_name[name].node in lost else int(grace_s),
                )
                for name in decision.delete
            ),
        )
        REPAIRS.labels(decision.action.value).inc()
        log.info("GPUWorkload %s: %s", key, decision.message)
        grew = decision.action is Action.GROW
        self.workloads.set_health(
            key, HealthVerdict(grew, decision.reason, decision.message, repairing=True)
        )
        kind = (
            "Warning" if decision.action is Action.SHRINK or decision.reason == "Hung" else "Normal"
        )
        await self.workloads.events.post(body, kind, decision.reason, decision.message)


def _ann(obj: JSON) -> dict[str, str]:
    found: dict[str, str] = (obj.get("metadata") or {}).get("annotations") or {}
    return found


def record_of(body: JSON) -> RepairRecord:
    raw = repair_record(body)
    restarts = raw.get("restarts")
    resume = raw.get("resumeFrom")
    return RepairRecord(
        restarts=restarts if isinstance(restarts, int) and restarts >= 0 else 0,
        last_repair=_seconds(raw.get("lastRepair")),
        resume_from=resume if isinstance(resume, str) and resume else None,
        dropped=_ranks(raw.get("dropped")),
        grown=_ranks(raw.get("grown")),
        grown_at=_seconds(raw.get("grownAt")),
        grow_failed_at=_seconds(raw.get("growFailedAt")),
    )


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _ranks(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(sorted({r for r in value if isinstance(r, int) and r >= 0}))


def start(runtime: Runtime, workloads: WorkloadController) -> RepairController:
    controller = RepairController(runtime, workloads)
    runtime.spawn_leading("repair", controller.run)
    return controller
