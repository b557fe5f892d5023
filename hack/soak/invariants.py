"""What must hold of the cluster, judged from the API server's own objects.

Pure functions of one sample (pods, nodes, GPUWorkloads as the API server
returned them, and the time) plus a `Tracker` that remembers what earlier
samples showed, for the rules that are about time. Nothing here reads the
operator's caches or imports its code: the rules restate the contract, so a
bug in the operator's own parsing cannot hide from them.

Safety, at every sample:
- `gpu-shared`: two live pods bound to one node hold the same GPU id
  (`egpu.io/gpu-ids`, written by the binder on the pods it binds);
- `gpu-id-invalid`: an id outside the node's GPUs, or a number of ids other
  than the pod's `nvidia.com/gpu` request;
- `gpu-ids-missing`: a bound egpu-scheduler pod asking GPUs carries no ids;
- `gpu-overcommit`: the `nvidia.com/gpu` requests of the live pods bound to a
  node exceed its allocatable. A pod bound directly or by another scheduler
  within `race_grace_s` before (or any time after) the binder's last bind on
  that node is left out: two schedulers without a shared cache race there, and
  the kubelet's admission is the arbiter; those are reported as notes;
- `gang-split`: the bound members of a workload with `topology.required`
  sit in more than one domain of that level;
- `wrong-gpu-model`: a member bound to a node of another `gpuModel`;
- `member-misnamed` / `rank-duplicate`: a live pod owned by a workload whose
  name is not `<workload>-<rank>`, or two live owned pods with one rank;
- `gang-partly-bound`: an AllOrNothing gang with fewer than its minimum bound
  while an original member (created before the first bind) still waits, for
  longer than the gang's timeout plus `partial_grace_s`;
- `stuck-with-room`: a pending egpu-scheduler pod (a gang: the members it
  needs) for which the API server's own numbers show room, for longer than
  `liveness_s` without a break;
- `unowned-pod-lost`: a pod without an owner (the soak's bare and foreign pods)
  deleted by someone other than its creator or the pod garbage collector (its
  node deleted);
- `healthy-member-killed`: a Ready member of a fully bound gang deleted while
  its workload, its rank and its node remained (a failed replacement must not
  take healthy members with it).

Leadership, from the proxy's log of successful bindings (`check_leaders`):
- `bound-without-lease`: a process bound a pod while the API server showed another
  process holding the Lease at the samples just before and just after;
- `two-leaders`: two processes, both alive and reachable, bound pods within a few
  seconds of each other (a leader stops at its renew deadline, before a standby may
  take the Lease, so there is always a gap).

Eventual, once the cluster has been quiet (`eventual`):
- `members-wrong`: a workload's live members are not exactly ranks
  0..replicas-1;
- `stuck-with-room` at once, without the time allowance.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JSON = dict[str, Any]
GPU = "nvidia.com/gpu"
EGPU_SCHEDULER = "egpu-scheduler"
GPU_IDS = "egpu.io/gpu-ids"
RANK = "egpu.io/rank"
PRODUCT = "nvidia.com/gpu.product"
FAULT_LABEL = "egpu.io/sim-fault"


@dataclass(frozen=True)
class Violation:
    kind: str
    key: str  # one violation seen at many samples is reported once
    message: str
    pods: tuple[str, ...] = ()  # the pods involved (namespace/name), for the report


@dataclass(frozen=True)
class Sample:
    pods: list[JSON]
    nodes: list[JSON]
    workloads: list[JSON]
    now: float


# -- reading objects -----------------------------------------------------------------


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def quantity(value: Any) -> int:
    """A whole-number extended resource quantity ("8", 8); unreadable counts as 0."""
    try:
        return int(str(value))
    except ValueError:
        return 0


def gpus_requested(pod: JSON) -> int:
    spec = pod.get("spec") or {}

    def ask(container: JSON) -> int:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return quantity(merged.get(GPU, 0))

    containers = sum(ask(c) for c in spec.get("containers") or [])
    inits = max((ask(c) for c in spec.get("initContainers") or []), default=0)
    return max(containers, inits)


def name_of(obj: JSON) -> str:
    return str(obj["metadata"]["name"])


def key_of(pod: JSON) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def node_of(pod: JSON) -> str | None:
    node = (pod.get("spec") or {}).get("nodeName")
    return str(node) if node else None


def finished(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def holds_resources(pod: JSON) -> bool:
    """Bound and not finished: a terminating pod still holds its node's resources."""
    return node_of(pod) is not None and not finished(pod)


def waiting(pod: JSON) -> bool:
    """Not bound, not going, not finished: waiting for a scheduler."""
    return (
        node_of(pod) is None and not pod["metadata"].get("deletionTimestamp") and not finished(pod)
    )


def ours(pod: JSON) -> bool:
    return (pod.get("spec") or {}).get("schedulerName") == EGPU_SCHEDULER


def bind_time(pod: JSON) -> float:
    """When the pod was bound: its PodScheduled condition, else its creation (nodeName set
    at creation)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "True":
            t = parse_time(c.get("lastTransitionTime"))
            if t is not None:
                return t
    return parse_time(pod["metadata"].get("creationTimestamp")) or 0.0


def created(pod: JSON) -> float:
    return parse_time(pod["metadata"].get("creationTimestamp")) or 0.0


def gpu_ids(pod: JSON) -> list[int] | None:
    """The ids the binder recorded, None when absent; unreadable entries become -1."""
    raw = ((pod["metadata"].get("annotations") or {}).get(GPU_IDS) or "").strip()
    if not raw:
        return None
    return [int(x) if x.strip().isdigit() else -1 for x in raw.split(",")]


def owner_uid(pod: JSON) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "GPUWorkload" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def rank_label(pod: JSON) -> int | None:
    raw = str((pod["metadata"].get("labels") or {}).get(RANK, ""))
    return int(raw) if raw.isdigit() else None


def allocatable_gpus(node: JSON) -> int:
    return quantity(((node.get("status") or {}).get("allocatable") or {}).get(GPU, 0))


def node_usable(node: JSON) -> bool:
    """Where a scheduler may place new pods: Ready, not cordoned, no injected fault."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    if FAULT_LABEL in (node["metadata"].get("labels") or {}):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def cpu_millis(value: Any) -> int:
    text = str(value)
    if text.endswith("m"):
        return int(float(text[:-1]))
    return int(float(text) * 1000)


MEMORY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6}


def memory_bytes(value: Any) -> int:
    text = str(value)
    for suffix, scale in MEMORY_SUFFIX.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * scale)
    return int(float(text))


def requests_of(pod: JSON) -> tuple[int, int]:
    """(CPU millicores, memory bytes) summed over the containers."""
    cpu = mem = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        resources = c.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        cpu += cpu_millis(merged.get("cpu", 0))
        mem += memory_bytes(merged.get("memory", 0))
    return cpu, mem


# -- workloads -----------------------------------------------------------------------


@dataclass(frozen=True)
class Gang:
    """A workload and its live members, as the API server shows them."""

    workload: JSON
    members: list[JSON]

    @property
    def spec(self) -> JSON:
        return dict(self.workload.get("spec") or {})

    @property
    def name(self) -> str:
        return f"{self.workload['metadata']['namespace']}/{self.workload['metadata']['name']}"

    @property
    def replicas(self) -> int:
        return int(self.spec.get("replicas", 1))

    @property
    def all_or_nothing(self) -> bool:
        return (self.spec.get("gang") or {}).get("policy", "AllOrNothing") == "AllOrNothing"

    @property
    def min_members(self) -> int:
        if not self.all_or_nothing:
            return 1
        return int((self.spec.get("gang") or {}).get("minMembers") or self.replicas)

    @property
    def timeout_s(self) -> float:
        return parse_duration(str((self.spec.get("gang") or {}).get("timeout", "5m")))

    @property
    def required_level(self) -> str | None:
        return (self.spec.get("topology") or {}).get("required")

    @property
    def live(self) -> list[JSON]:
        return [
            p
            for p in self.members
            if not finished(p) and not p["metadata"].get("deletionTimestamp")
        ]

    @property
    def bound(self) -> list[JSON]:
        return [p for p in self.live if node_of(p)]

    @property
    def pending(self) -> list[JSON]:
        return [p for p in self.live if not node_of(p)]


def parse_duration(text: str) -> float:
    """Go durations as the API uses them: 30s, 5m, 1h30m, 500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    total, number, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text[i : i + 2] == "ms" else ch
        total += float(number or 0) * units[unit]
        number = ""
        i += len(unit)
    return total


def gangs(sample: Sample) -> list[Gang]:
    by_owner: dict[str, list[JSON]] = defaultdict(list)
    for pod in sample.pods:
        uid = owner_uid(pod)
        if uid:
            by_owner[uid].append(pod)
    return [
        Gang(w, by_owner.get(str(w["metadata"]["uid"]), []))
        for w in sample.workloads
        if not w["metadata"].get("deletionTimestamp")
    ]


# -- safety ----------------------------------------------------------------------------


def check_gpus(sample: Sample, race_grace_s: float) -> tuple[list[Violation], list[str]]:
    """GPU ids disjoint and valid per node; GPU counts within allocatable. Returns the
    violations and notes on races between schedulers (not violations)."""
    nodes = {name_of(n): n for n in sample.nodes}
    on_node: dict[str, list[JSON]] = defaultdict(list)
    for pod in sample.pods:
        if holds_resources(pod):
            on_node[str(node_of(pod))].append(pod)
    found: list[Violation] = []
    notes: list[str] = []
    for node_name, pods in sorted(on_node.items()):
        node = nodes.get(node_name)
        alloc = allocatable_gpus(node) if node is not None else None
        holders: dict[int, str] = {}
        for pod in pods:
            asked = gpus_requested(pod)
            if not ours(pod) or not asked:
                continue
            ids = gpu_ids(pod)
            if ids is None:
                found.append(
                    Violation(
                        "gpu-ids-missing",
                        f"{key_of(pod)}@{node_name}",
                        f"{key_of(pod)} is bound to {node_name} asking {asked} GPUs "
                        f"but carries no {GPU_IDS}",
                        (key_of(pod),),
                    )
                )
                continue
            bad = [i for i in ids if i < 0 or (alloc is not None and i >= alloc)]
            if bad or len(set(ids)) != asked:
                found.append(
                    Violation(
                        "gpu-id-invalid",
                        f"{key_of(pod)}@{node_name}",
                        f"{key_of(pod)} on {node_name} (allocatable {alloc}) asks {asked} GPUs "
                        f"and holds ids {ids}",
                        (key_of(pod),),
                    )
                )
            for gpu in set(ids):
                other = holders.get(gpu)
                if other is not None:
                    found.append(
                        Violation(
                            "gpu-shared",
                            f"{node_name}/{gpu}/{other}/{key_of(pod)}",
                            f"GPU {gpu} of {node_name} is held by both {other} and {key_of(pod)}",
                            (other, key_of(pod)),
                        )
                    )
                holders[gpu] = key_of(pod)
        if alloc is None:
            continue  # the node is gone; its pods wait for the pod garbage collector
        total = sum(gpus_requested(p) for p in pods)
        if total <= alloc:
            continue
        mine = [p for p in pods if ours(p)]
        last_bind = max((bind_time(p) for p in mine), default=0.0)
        counted = sum(gpus_requested(p) for p in mine) + sum(
            gpus_requested(p)
            for p in pods
            if not ours(p) and bind_time(p) <= last_bind - race_grace_s
        )
        listing = ", ".join(
            f"{key_of(p)}[{gpus_requested(p)} GPUs, "
            f"{'egpu' if ours(p) else (p.get('spec') or {}).get('schedulerName') or 'nodeName'}"
            f", bound {bind_time(p):.0f}]"
            for p in sorted(pods, key=bind_time)
        )
        if counted > alloc:
            found.append(
                Violation(
                    "gpu-overcommit",
                    f"{node_name}/" + ",".join(sorted(key_of(p) for p in pods)),
                    f"{node_name} has {alloc} GPUs; its live pods ask {total}: {listing}",
                    tuple(key_of(p) for p in pods),
                )
            )
        else:
            notes.append(f"race between schedulers on {node_name} ({total}/{alloc}): {listing}")
    return found, notes


def check_members(sample: Sample) -> list[Violation]:
    """Naming, ranks, domains and models of the members of each workload."""
    nodes = {name_of(n): n for n in sample.nodes}
    found: list[Violation] = []
    for gang in gangs(sample):
        wl = gang.workload["metadata"]["name"]
        by_rank: dict[int, list[str]] = defaultdict(list)
        for pod in gang.live:
            rank = rank_label(pod)
            if rank is None or name_of(pod) != f"{wl}-{rank}":
                found.append(
                    Violation(
                        "member-misnamed",
                        key_of(pod),
                        f"{key_of(pod)} is owned by GPUWorkload {gang.name} with rank label "
                        f"{(pod['metadata'].get('labels') or {}).get(RANK)!r}",
                        (key_of(pod),),
                    )
                )
                continue
            by_rank[rank].append(key_of(pod))
        for rank, names in sorted(by_rank.items()):
            if len(names) > 1:
                found.append(
                    Violation(
                        "rank-duplicate",
                        f"{gang.name}/{rank}",
                        f"rank {rank} of {gang.name} has {len(names)} live pods: {names}",
                        tuple(names),
                    )
                )
        level = gang.required_level
        model = gang.spec.get("gpuModel")
        domains: dict[str, list[str]] = defaultdict(list)
        for pod in gang.bound:
            node = nodes.get(str(node_of(pod)))
            if node is None:
                continue
            labels = node["metadata"].get("labels") or {}
            if level:
                domains[str(labels.get(level))].append(key_of(pod))
            if model and labels.get(PRODUCT) != model:
                found.append(
                    Violation(
                        "wrong-gpu-model",
                        key_of(pod),
                        f"{key_of(pod)} of {gang.name} (gpuModel {model}) is bound to "
                        f"{name_of(node)}, a {labels.get(PRODUCT)}",
                        (key_of(pod),),
                    )
                )
        if len(domains) > 1:
            found.append(
                Violation(
                    "gang-split",
                    gang.name + "/" + ",".join(sorted(domains)),
                    f"{gang.name} requires one {level} but its bound members sit in "
                    f"{len(domains)}: {dict(sorted(domains.items()))}",
                    tuple(key_of(p) for p in gang.live),
                )
            )
    return found


# -- room --------------------------------------------------------------------------------


@dataclass
class NodeRoom:
    name: str
    labels: dict[str, str]
    gpus: int
    cpu: int
    mem: int

    def pods(self, gpus: int, cpu: int, mem: int) -> int:
        """How many pods of this shape fit here now."""
        fit = self.gpus // gpus if gpus else 1_000
        if cpu:
            fit = min(fit, self.cpu // cpu)
        if mem:
            fit = min(fit, self.mem // mem)
        return max(0, fit)


def free_room(sample: Sample) -> list[NodeRoom]:
    """What is free on every usable node, by the API server's numbers (bound pods only)."""
    used: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for pod in sample.pods:
        if holds_resources(pod):
            cpu, mem = requests_of(pod)
            u = used[str(node_of(pod))]
            u[0] += gpus_requested(pod)
            u[1] += cpu
            u[2] += mem
    rooms = []
    for node in sample.nodes:
        if not node_usable(node):
            continue
        alloc = (node.get("status") or {}).get("allocatable") or {}
        u = used[name_of(node)]
        rooms.append(
            NodeRoom(
                name=name_of(node),
                labels=dict(node["metadata"].get("labels") or {}),
                gpus=quantity(alloc.get(GPU, 0)) - u[0],
                cpu=cpu_millis(alloc.get("cpu", 0)) - u[1],
                mem=memory_bytes(alloc.get("memory", 0)) - u[2],
            )
        )
    return rooms


def room_for(
    rooms: list[NodeRoom],
    pod: JSON,
    count: int,
    model: str | None,
    level: str | None,
    domain: str | None,
) -> bool:
    """Whether `count` pods shaped like `pod` fit at once: within one domain of `level`
    (that one, when `domain` is given), of the GPU model when one is asked."""
    gpus = gpus_requested(pod)
    cpu, mem = requests_of(pod)
    per_domain: dict[str, int] = defaultdict(int)
    for room in rooms:
        if model and room.labels.get(PRODUCT) != model:
            continue
        where = room.labels.get(level, "") if level else ""
        if level and (not where or (domain is not None and where != domain)):
            continue
        per_domain[where] += room.pods(gpus, cpu, mem)
    return any(n >= count for n in per_domain.values())


def stuck(sample: Sample) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Pending egpu-scheduler work the cluster has room for: key -> (why, pods)."""
    rooms = free_room(sample)
    nodes = {name_of(n): n for n in sample.nodes}
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    owned: set[str] = set()
    for gang in gangs(sample):
        owned |= {key_of(p) for p in gang.members}
        pending = [p for p in gang.pending if ours(p)]
        if not pending:
            continue
        bound = gang.bound
        if len(bound) + len(pending) < min(gang.min_members, gang.replicas):
            continue  # members still being created: the workload controller's part
        needed = max(1, min(len(pending), gang.min_members - len(bound)))
        level = gang.required_level
        domain = None
        if level and bound:
            node = nodes.get(str(node_of(bound[0])))
            domain = (node["metadata"].get("labels") or {}).get(level) if node else None
            if domain is None:
                continue
        if room_for(rooms, pending[0], needed, gang.spec.get("gpuModel"), level, domain):
            where = f" in {level}={domain}" if domain else f" in one {level}" if level else ""
            why = (
                f"{gang.name}: {len(pending)} members pending ({len(bound)} bound, "
                f"min {gang.min_members}); room for {needed} of {gpus_requested(pending[0])} "
                f"GPUs{where}"
            )
            out[gang.name] = why, tuple(key_of(p) for p in gang.live)
    for pod in sample.pods:
        if not ours(pod) or not waiting(pod) or key_of(pod) in owned or owner_uid(pod):
            continue
        if room_for(rooms, pod, 1, None, None, None):
            why = f"{key_of(pod)}: pending, asks {gpus_requested(pod)} GPUs; room"
            out[key_of(pod)] = why, (key_of(pod),)
    return out


# -- over time ---------------------------------------------------------------------------


@dataclass
class Tracker:
    """The rules about time, fed one sample after another."""

    race_grace_s: float = 20.0
    partial_grace_s: float = 30.0
    liveness_s: float = 90.0
    reported: dict[str, Violation] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stuck_since: dict[str, float] = field(default_factory=dict)
    # Pods the driver made without an owner, and the ones it deleted itself.
    # key -> None until a sample shows the pod, then the node it was last seen on ("" unbound)
    unowned: dict[str, str | None] = field(default_factory=dict)
    deleted_by_driver: set[str] = field(default_factory=set)
    nodes_deleted: dict[str, float] = field(default_factory=dict)  # node -> when
    # Ready members of fully bound gangs: pod uid -> (pod, workload uid, rank, node, since).
    healthy: dict[str, tuple[str, str, int, str, float]] = field(default_factory=dict)
    scales: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # uid -> (t, n)
    nodes_unready: dict[str, float] = field(default_factory=dict)  # node -> last seen so

    def created_unowned(self, key: str) -> None:
        self.unowned[key] = None

    def deleting(self, key: str) -> None:
        self.deleted_by_driver.add(key)

    def node_deleted(self, name: str, when: float) -> None:
        self.nodes_deleted[name] = when

    def scaled(self, uid: str, replicas: int, when: float) -> None:
        """The driver set a workload's replicas: members above it may go."""
        self.scales.setdefault(uid, []).append((when, replicas))

    def observe(self, sample: Sample) -> list[Violation]:
        """The violations this sample shows that were not reported before."""
        found, notes = check_gpus(sample, self.race_grace_s)
        for note in notes:
            if note not in self.notes[-50:]:
                self.notes.append(note)
        found += check_members(sample)
        found += self._partial_gangs(sample)
        found += self._stuck(sample)
        found += self._lost(sample)
        return self.new(found, sample.now)

    def eventual(self, sample: Sample) -> list[Violation]:
        """What must hold once the cluster has been quiet long enough."""
        found: list[Violation] = []
        for gang in gangs(sample):
            ranks = sorted(r for p in gang.live if (r := rank_label(p)) is not None)
            if ranks != list(range(gang.replicas)):
                found.append(
                    Violation(
                        "members-wrong",
                        gang.name,
                        f"{gang.name} wants ranks 0..{gang.replicas - 1}; live members have "
                        f"ranks {ranks}",
                        tuple(key_of(p) for p in gang.live),
                    )
                )
        for key, (why, pods) in stuck(sample).items():
            found.append(Violation("stuck-with-room", key, f"after the quiet period: {why}", pods))
        return found

    def new(self, found: list[Violation], now: float) -> list[Violation]:
        """The ones not reported before (a violation seen at many samples counts once)."""
        fresh = []
        for v in found:
            if v.key in self.reported:
                continue
            self.reported[v.key] = v
            self.first_seen[v.key] = now
            fresh.append(v)
        return fresh

    def _partial_gangs(self, sample: Sample) -> list[Violation]:
        found = []
        for gang in gangs(sample):
            bound, pending = gang.bound, gang.pending
            if not gang.all_or_nothing or not bound or not pending:
                continue
            if len(bound) >= min(gang.min_members, gang.replicas):
                continue
            first_bind = min(bind_time(p) for p in bound)
            originals = [p for p in pending if created(p) <= first_bind]
            if not originals:
                continue  # replacements of lost members: placed by room, see `stuck`
            if sample.now - first_bind > gang.timeout_s + self.partial_grace_s:
                found.append(
                    Violation(
                        "gang-partly-bound",
                        gang.name,
                        f"{gang.name}: {len(bound)} of {gang.replicas} members bound "
                        f"(min {gang.min_members}) for {sample.now - first_bind:.0f}s, past "
                        f"its {gang.timeout_s:.0f}s timeout; still waiting: "
                        f"{sorted(key_of(p) for p in originals)}",
                        tuple(key_of(p) for p in gang.live),
                    )
                )
        return found

    def _stuck(self, sample: Sample) -> list[Violation]:
        now_stuck = stuck(sample)
        for key in list(self.stuck_since):
            if key not in now_stuck:
                del self.stuck_since[key]
        found = []
        for key, (why, pods) in now_stuck.items():
            since = self.stuck_since.setdefault(key, sample.now)
            if sample.now - since > self.liveness_s:
                found.append(
                    Violation(
                        "stuck-with-room",
                        key,
                        f"for {sample.now - since:.0f}s without a break: {why}",
                        pods,
                    )
                )
        return found

    def _lost(self, sample: Sample) -> list[Violation]:
        pods = {key_of(p): p for p in sample.pods}
        found = []
        for key, last_node in list(self.unowned.items()):
            pod = pods.get(key)
            if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                self.unowned[key] = node_of(pod) or ""
                continue
            if last_node is None:
                continue  # not seen yet: its creation may still be on the way
            del self.unowned[key]
            if key in self.deleted_by_driver:
                continue
            if last_node in self.nodes_deleted:
                continue  # the pod garbage collector's, for a deleted node
            found.append(
                Violation(
                    "unowned-pod-lost",
                    key,
                    f"{key} (no owner to recreate it; last seen "
                    f"{'on ' + last_node if last_node else 'pending'}) was deleted, not by "
                    "its creator",
                    (key,),
                )
            )
        found += self._killed_members(sample, pods)
        return found

    def _killed_members(self, sample: Sample, pods: dict[str, JSON]) -> list[Violation]:
        """Members that were Ready in a fully bound gang and then went without a cause."""
        found = []
        workloads = {str(w["metadata"]["uid"]): w for w in sample.workloads}
        for node in sample.nodes:
            if not node_usable(node):
                self.nodes_unready[name_of(node)] = sample.now
        by_uid = {str(p["metadata"].get("uid")): p for p in pods.values()}
        for pod_uid, (key, uid, rank, node, since) in list(self.healthy.items()):
            pod = by_uid.get(pod_uid)
            if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                continue
            del self.healthy[pod_uid]
            workload = workloads.get(uid)
            if workload is None or workload["metadata"].get("deletionTimestamp"):
                continue
            if rank >= int((workload.get("spec") or {}).get("replicas", 1)):
                continue
            if any(t >= since - 5 and n <= rank for t, n in self.scales.get(uid, [])):
                continue  # scaled below it since
            if node in self.nodes_deleted or node in self.nodes_unready:
                continue  # the pod garbage collector's, or an eviction from a NotReady node
            found.append(
                Violation(
                    "healthy-member-killed",
                    key,
                    f"{key} (rank {rank}, Ready on {node}, its gang fully bound) was deleted "
                    "while its workload, rank and node remained",
                    (key,),
                )
            )
        for gang in gangs(sample):
            uid = str(gang.workload["metadata"]["uid"])
            if len(gang.bound) < gang.replicas or gang.pending:
                continue
            for pod in gang.bound:
                rank = rank_label(pod)
                if rank is not None and ready(pod):
                    self.healthy.setdefault(
                        str(pod["metadata"].get("uid")),
                        (key_of(pod), uid, rank, str(node_of(pod)), sample.now),
                    )
        return found


def check_leaders(
    binds: list[tuple[float, str, str]],
    lives: dict[str, tuple[float, float]],
    cut_off: list[tuple[str, float, float]],
    lease_holders: list[tuple[float, str | None]],
    window_s: float,
    started: float = 0.0,
) -> list[Violation]:
    """`binds`: (time, process, pod); `lives`: process -> (start, end); `cut_off`: (process,
    from, to) while its requests could not reach the API server; `lease_holders`: (time,
    process or None) as sampled. One violation per pair of processes."""

    def acting(route: str, t: float) -> bool:
        start, end = lives.get(route, (0.0, float("inf")))
        cut = any(r == route and a <= t <= b for r, a, b in cut_off)
        return start <= t < end and not cut

    def holder_around(t: float) -> str | None:
        before = [h for at, h in lease_holders if at <= t]
        after = [h for at, h in lease_holders if at >= t]
        return before[-1] if before and after and before[-1] == after[0] else None

    found: dict[str, Violation] = {}
    ordered = sorted(binds)
    for i, (t, route, pod) in enumerate(ordered):
        holder = holder_around(t)
        if holder is not None and holder != route:
            key = f"bound-without-lease/{route}/{holder}"
            found.setdefault(
                key,
                Violation(
                    "bound-without-lease",
                    key,
                    f"{route} bound {pod} at t+{t - started:.1f}s while the Lease was held by "
                    f"{holder} (the first such bind)",
                    (pod,),
                ),
            )
        for t2, route2, pod2 in ordered[i + 1 :]:
            if t2 - t > window_s:
                break
            if route2 == route or not (acting(route, t2) and acting(route2, t)):
                continue
            key = "two-leaders/" + "/".join(sorted((route, route2)))
            found.setdefault(
                key,
                Violation(
                    "two-leaders",
                    key,
                    f"{route} bound {pod} at t+{t - started:.1f}s and {route2} bound {pod2} "
                    f"at t+{t2 - started:.1f}s, both alive and reachable (the first such pair)",
                    (pod, pod2),
                ),
            )
    return list(found.values())


def ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def describe(found: list[Violation]) -> str:
    return json.dumps([v.__dict__ for v in found], indent=1)
