"""Keeps the placement ledger equal to the cluster, fed by the node and pod caches.

What the ledger holds, per pod:
- a pod of ours that is bound, or that carries the binder's assignment (written
  before binding): a gang hold at its recorded GPUs. A restarted operator thus
  finds every reservation it made, bound or not yet bound.
- a pod of another scheduler that is bound and not finished: foreign usage.
Finished (Succeeded/Failed) and deleted pods hold nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from egpu import SCHEDULER_NAME
from egpu.domain.node import node_from_kubernetes
from egpu.domain.placement import PodAssignment
from egpu.domain.quantity import cpu_millis, memory_bytes
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, ReservationError, UnknownNodeError

log = logging.getLogger("egpu.state.ledger")

JSON = dict[str, Any]

GANG_LABEL = "egpu.io/gang"
RANK_LABEL = "egpu.io/rank"
ASSIGNED_NODE_ANNOTATION = "egpu.io/assigned-node"
GPU_IDS_ANNOTATION = "egpu.io/gpu-ids"
DOMAIN_ANNOTATION = "egpu.io/domain"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True, slots=True)
class PodDemand:
    cpu_millis: int
    memory_bytes: int
    gpus: int


def pod_demand(pod: JSON) -> PodDemand:
    """Requests summed over containers (init containers: the max, as the scheduler does)."""
    spec = pod.get("spec") or {}

    def requests(container: JSON) -> Mapping[str, Any]:
        res = container.get("resources") or {}
        # Extended resources may be given as limits only; the API server copies
        # limits to requests, but be tolerant of objects that did not go through it.
        return {**(res.get("limits") or {}), **(res.get("requests") or {})}

    cpu = mem = gpus = 0
    for c in spec.get("containers") or []:
        r = requests(c)
        cpu += cpu_millis(r.get("cpu", 0))
        mem += memory_bytes(r.get("memory", 0))
        gpus += int(str(r.get(GPU_RESOURCE, 0)))
    for c in spec.get("initContainers") or []:
        r = requests(c)
        cpu = max(cpu, cpu_millis(r.get("cpu", 0)))
        mem = max(mem, memory_bytes(r.get("memory", 0)))
        gpus = max(gpus, int(str(r.get(GPU_RESOURCE, 0))))
    return PodDemand(cpu, mem, gpus)


def pod_key(pod: JSON) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def gang_id_of(pod: JSON) -> str:
    meta = pod["metadata"]
    gang = (meta.get("labels") or {}).get(GANG_LABEL)
    return f"{meta.get('namespace')}/{gang}" if gang else pod_key(pod)


def rank_of(pod: JSON) -> int:
    raw = (pod["metadata"].get("labels") or {}).get(RANK_LABEL, "0")
    return int(raw) if str(raw).isdigit() else 0


def is_ours(pod: JSON) -> bool:
    return (pod.get("spec") or {}).get("schedulerName") == SCHEDULER_NAME


def finished(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def node_schedulable(node: JSON) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def assignment_of(pod: JSON) -> PodAssignment | None:
    """The binder's recorded plan for a pod of ours, or its binding."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    node = spec.get("nodeName") or annotations.get(ASSIGNED_NODE_ANNOTATION)
    if not node:
        return None
    ids = tuple(
        int(x) for x in (annotations.get(GPU_IDS_ANNOTATION) or "").split(",") if x.isdigit()
    )
    try:
        domain = json.loads(annotations.get(DOMAIN_ANNOTATION) or "{}")
    except json.JSONDecodeError:
        domain = {}
    demand = pod_demand(pod)
    return PodAssignment(
        rank=rank_of(pod),
        node=node,
        gpu_indices=ids,
        domain=domain if isinstance(domain, dict) else {},
        cpu_millis=demand.cpu_millis,
        memory_bytes=demand.memory_bytes,
    )


class LedgerSync:
    def __init__(self, topology: Topology) -> None:
        self.ledger = ClusterLedger(topology)
        # pod key -> how the pod is held: ("gang", gang_id, rank) or ("foreign", key)
        self.held: dict[str, tuple[str, str, int]] = {}
        self.bad_nodes: dict[str, str] = {}  # nodes whose labels cannot be read, and why

    # -- nodes ---------------------------------------------------------------------

    def node_changed(self, old: JSON | None, new: JSON | None) -> None:
        if new is None:
            if old is not None and old["metadata"]["name"] in self.ledger:
                for pod in self.ledger.remove_node(old["metadata"]["name"]):
                    log.info("node %s vanished; hold of %s dropped", old["metadata"]["name"], pod)
            return
        meta, status = new["metadata"], new.get("status") or {}
        name = meta["name"]
        try:
            node = node_from_kubernetes(
                name,
                meta.get("labels") or {},
                meta.get("annotations") or {},
                status.get("allocatable") or {},
                schedulable=node_schedulable(new),
            )
        except ValueError as exc:
            self.bad_nodes[name] = str(exc)
            if name in self.ledger:
                self.ledger.set_schedulable(name, False)
            return
        self.bad_nodes.pop(name, None)
        if name in self.ledger:
            self.ledger.update_node(node)
        else:
            self.ledger.add_node(node)

    # -- pods ------------------------------------------------------------------------

    def pod_changed(self, old: JSON | None, new: JSON | None) -> None:
        pod = new or old
        if pod is None:
            return
        key = pod_key(pod)
        unbound_and_going = bool(new and new["metadata"].get("deletionTimestamp")) and not (
            (new or {}).get("spec") or {}
        ).get("nodeName")
        if new is None or unbound_and_going or finished(new):
            self.forget(key)
            return
        if key in self.held:
            return  # already accounted (reserved by the binder, or seen before)
        if is_ours(new):
            assignment = assignment_of(new)
            if assignment is None:
                return
            gang = gang_id_of(new)
            try:
                if (new.get("spec") or {}).get("nodeName"):
                    # Bound: a fact, held even on a cordoned node or a failed GPU.
                    self.ledger.adopt_pods(gang, [assignment])
                else:  # planned, not bound yet: a reservation that must still fit
                    self.ledger.reserve_pods(gang, [assignment])
            except (ReservationError, UnknownNodeError, ValueError) as exc:
                log.warning("cannot account pod %s on %s: %s", key, assignment.node, exc)
                return
            self.held[key] = ("gang", gang, assignment.rank)
        else:
            node = (new.get("spec") or {}).get("nodeName")
            if not node or node not in self.ledger:
                return
            demand = pod_demand(new)
            self.ledger.add_foreign_usage(
                key,
                node,
                cpu_millis=demand.cpu_millis,
                memory_bytes=demand.memory_bytes,
                gpus=demand.gpus,
            )
            self.held[key] = ("foreign", key, 0)

    def forget(self, key: str) -> None:
        held = self.held.pop(key, None)
        if held is None:
            return
        kind, ident, rank = held
        if kind == "gang":
            self.ledger.release_pod(ident, rank)
        else:
            self.ledger.remove_foreign_usage(ident)

    def mark_reserved(self, pod: JSON, gang: str, rank: int) -> None:
        """The binder reserved this pod in the ledger itself."""
        self.held[pod_key(pod)] = ("gang", gang, rank)

    # -- whole rebuild -----------------------------------------------------------------

    @classmethod
    def rebuild(cls, topology: Topology, nodes: list[JSON], pods: list[JSON]) -> LedgerSync:
        sync = cls(topology)
        for node in nodes:
            sync.node_changed(None, node)
        # Bound pods first: a recorded-but-unbound plan must not steal their GPUs.
        for pod in sorted(pods, key=lambda p: 0 if (p.get("spec") or {}).get("nodeName") else 1):
            sync.pod_changed(None, pod)
        return sync
