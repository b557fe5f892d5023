"""The cluster ledger: what is free where, kept as incremental per-domain indexes.

Every change (reserve, release, foreign usage, node add/update/remove, GPU health,
cordon) touches only the changed node's path in the domain tree: O(levels). A gang
reserve checks every pod first and applies only if all pass, so it applies fully or
raises ReservationError and leaves no trace. `begin()` opens a transaction (nestable):
everything done until `rollback()` is undone exactly, in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from egpu.domain.gpu import model_matches
from egpu.domain.node import Node
from egpu.domain.placement import Placement, PodAssignment
from egpu.domain.topology import Topology
from egpu.engines.placement.capacity import stats_for
from egpu.engines.placement.errors import ReservationError, TransactionError, UnknownNodeError
from egpu.engines.placement.gpus import indices, pick_gpus
from egpu.engines.placement.tree import DomainNode, DomainTree, NodeState, Stats
from egpu.engines.placement.views import DomainStats, HeldPod, NodeUsage, NodeView
from egpu.engines.placement.wiring import profile_of

HoldKey = tuple[str, str, int]  # ("gang", gang id, rank) or ("foreign", key, 0)
_GANG = "gang"
_FOREIGN = "foreign"


@dataclass(frozen=True, slots=True)
class _Hold:
    node: str
    mask: int
    cpu: int
    mem: int
    extras: tuple[tuple[str, int], ...] = ()
    is_pod: bool = True  # takes a pod slot (a ResourceClaim's devices take none)


class Transaction:
    """Undo everything the ledger did since `begin()`, or keep it. A context manager
    rolls back when its block raises."""

    __slots__ = ("_ledger", "_token")

    def __init__(self, ledger: ClusterLedger) -> None:
        self._ledger = ledger
        self._token: object | None = ledger._open_transaction()

    def commit(self) -> None:
        self._end(rollback=False)

    def rollback(self) -> None:
        self._end(rollback=True)

    def _end(self, rollback: bool) -> None:
        if self._token is None:
            raise TransactionError("this transaction has already ended")
        self._ledger._close_transaction(self._token, rollback)
        self._token = None

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is None:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


class ClusterLedger:
    def __init__(self, topology: Topology, nodes: Iterable[Node] = ()) -> None:
        self.topology = topology
        self.tree = DomainTree(topology.domain_levels, topology.node_level)
        self._holds: dict[HoldKey, _Hold] = {}
        self._gang_ranks: dict[str, set[int]] = {}
        self._undo: list[Callable[[], object]] | None = None
        self._open: list[tuple[object, int]] = []
        for node in nodes:
            self.add_node(node)

    # -- transactions ------------------------------------------------------------------

    def begin(self) -> Transaction:
        return Transaction(self)

    def _open_transaction(self) -> object:
        if self._undo is None:
            self._undo = []
        token = object()
        self._open.append((token, len(self._undo)))
        return token

    def _close_transaction(self, token: object, rollback: bool) -> None:
        if not self._open or self._open[-1][0] is not token:
            raise TransactionError("transactions must end innermost first")
        _, mark = self._open.pop()
        undo = self._undo
        assert undo is not None
        if rollback:
            self._undo = None  # the inverses must not record themselves
            while len(undo) > mark:
                undo.pop()()
            self._undo = undo
        if not self._open:
            self._undo = None

    def _record(self, inverse: Callable[[], object]) -> None:
        if self._undo is not None:
            self._undo.append(inverse)

    # -- nodes -------------------------------------------------------------------------

    def add_node(self, node: Node) -> None:
        if node.name in self.tree.nodes:
            raise ValueError(f"node {node.name} is already in the ledger; use update_node")
        state = NodeState(node)
        self.tree.attach(state, node.labels)
        self._record(lambda: self.tree.detach(state))

    def update_node(self, node: Node) -> None:
        """Replace a node's facts (labels, capacity, GPUs, health, cordon); adds it if new.

        Reservations and foreign usage on it stay; GPUs that no longer exist drop out.
        """
        old = self.tree.nodes.get(node.name)
        if old is None:
            self.add_node(node)
            return
        new = NodeState(node)
        for key, mask in old.holds.items():
            hold = self._holds[key]
            kept = mask & new.all_mask
            new.holds[key] = kept
            new.used_mask |= kept
            new.cpu_used += hold.cpu
            new.mem_used += hold.mem
            _count(new, hold, 1)
        self.tree.detach(old)
        self.tree.attach(new, node.labels)

        def undo() -> None:
            self.tree.detach(new)
            self.tree.reattach(old)

        self._record(undo)

    def remove_node(self, name: str) -> tuple[HeldPod, ...]:
        """Forget a node; returns the gang pods that were reserved on it (now released)."""
        state = self._state(name)
        lost = tuple(self._held_pod(key) for key in sorted(state.holds) if key[0] == _GANG)
        for key in list(state.holds):
            self._hold_remove(key)
        self.tree.detach(state)
        self._record(lambda: self.tree.reattach(state))
        return lost

    def set_unhealthy_gpus(self, name: str, unhealthy: Iterable[int]) -> None:
        state = self._state(name)
        mask = 0
        for index in unhealthy:
            if not 0 <= index < state.gpu_count:
                raise ValueError(f"node {name} has no GPU {index}")
            mask |= 1 << index
        self._set(state, "healthy_mask", state.all_mask & ~mask)

    def set_schedulable(self, name: str, schedulable: bool) -> None:
        self._set(self._state(name), "schedulable", schedulable)

    def _set(self, state: NodeState, attr: str, value: object) -> None:
        old = getattr(state, attr)
        if old == value:
            return
        self.tree.unindex(state)
        setattr(state, attr, value)
        self.tree.index(state)
        self._record(lambda: self._set(state, attr, old))

    def _state(self, name: str) -> NodeState:
        state = self.tree.nodes.get(name)
        if state is None:
            raise UnknownNodeError(name)
        return state

    # -- holds: the one place usage changes ----------------------------------------------

    def _hold_add(self, key: HoldKey, hold: _Hold) -> None:
        state = self.tree.nodes[hold.node]
        self._holds[key] = hold
        if key[0] == _GANG:
            self._gang_ranks.setdefault(key[1], set()).add(key[2])
        mask = hold.mask & state.all_mask
        self.tree.unindex(state)
        state.holds[key] = mask
        state.used_mask |= mask
        state.cpu_used += hold.cpu
        state.mem_used += hold.mem
        _count(state, hold, 1)
        self.tree.index(state)
        self._record(lambda: self._hold_remove(key))

    def _hold_remove(self, key: HoldKey) -> None:
        hold = self._holds.pop(key)
        if key[0] == _GANG:
            ranks = self._gang_ranks[key[1]]
            ranks.discard(key[2])
            if not ranks:
                del self._gang_ranks[key[1]]
        state = self.tree.nodes[hold.node]
        self.tree.unindex(state)
        del state.holds[key]
        used = state.baseline_mask
        for mask in state.holds.values():
            used |= mask
        state.used_mask = used
        state.cpu_used -= hold.cpu
        state.mem_used -= hold.mem
        _count(state, hold, -1)
        self.tree.index(state)
        self._record(lambda: self._hold_add(key, hold))

    # -- gang reservations -----------------------------------------------------------------

    def reserve(self, placement: Placement) -> None:
        self.reserve_pods(placement.gang_id, placement.assignments)

    def reserve_pods(self, gang_id: str, assignments: Iterable[PodAssignment]) -> None:
        """Hold every pod's GPUs, CPU and memory; all or nothing (ReservationError)."""
        planned: list[tuple[HoldKey, _Hold]] = []
        taken: dict[str, tuple[int, int, int]] = {}
        extra_taken: dict[tuple[str, str], int] = {}  # (node, resource) -> amount
        pods_taken: dict[str, int] = {}
        seen: set[HoldKey] = set()
        for pod in assignments:
            key: HoldKey = (_GANG, gang_id, pod.rank)
            where = f"gang {gang_id} pod {pod.rank}"
            if key in self._holds or key in seen:
                raise ReservationError(f"{where} is already reserved")
            seen.add(key)
            state = self.tree.nodes.get(pod.node)
            if state is None:
                raise ReservationError(f"{where}: node {pod.node} is not in the ledger")
            if not state.schedulable:
                raise ReservationError(f"{where}: node {pod.node} is not schedulable")
            mask = 0
            for index in pod.gpu_indices:
                bit = 1 << index
                if not 0 <= index < state.gpu_count or mask & bit:
                    raise ReservationError(f"{where}: bad GPU list {list(pod.gpu_indices)}")
                mask |= bit
            gpus, cpu, mem = taken.get(pod.node, (0, 0, 0))
            busy = mask & ~(state.free_mask & ~gpus)
            if busy:
                raise ReservationError(
                    f"{where}: GPUs {list(indices(busy))} on node {pod.node} are not free"
                )
            cpu += pod.cpu_millis
            mem += pod.memory_bytes
            if state.cpu_used + cpu > state.cpu_alloc and pod.cpu_millis:
                raise ReservationError(f"{where}: node {pod.node} has too little CPU left")
            if state.mem_used + mem > state.mem_alloc and pod.memory_bytes:
                raise ReservationError(f"{where}: node {pod.node} has too little memory left")
            count = pods_taken[pod.node] = pods_taken.get(pod.node, 0) + 1
            if state.pods_alloc >= 0 and state.pods_used + count > state.pods_alloc:
                raise ReservationError(f"{where}: node {pod.node} has no pod slot left")
            for resource, amount in pod.extras:
                got = extra_taken.get((pod.node, resource), 0) + amount
                extra_taken[(pod.node, resource)] = got
                if amount and got > state.extra_free(resource):
                    raise ReservationError(f"{where}: node {pod.node} has too little {resource}")
            taken[pod.node] = (gpus | mask, cpu, mem)
            planned.append(
                (key, _Hold(pod.node, mask, pod.cpu_millis, pod.memory_bytes, pod.extras))
            )
        for key, hold in planned:
            self._hold_add(key, hold)

    def adopt_pods(self, gang_id: str, assignments: Iterable[PodAssignment]) -> None:
        """Account gang pods that are already bound: facts, not decisions.

        Unlike `reserve_pods`, nothing is refused for a cordoned node, an unhealthy
        GPU, short CPU/memory or a GPU another hold already counts (it stays used until
        both let go). A pod held under the same rank is replaced. Raises
        UnknownNodeError or ReservationError (bad GPU index) before changing anything.
        """
        pods = list(assignments)
        for pod in pods:
            state = self._state(pod.node)
            if any(not 0 <= index < state.gpu_count for index in pod.gpu_indices):
                raise ReservationError(
                    f"gang {gang_id} pod {pod.rank}: node {pod.node} has no GPU in "
                    f"{list(pod.gpu_indices)}"
                )
        for pod in pods:
            key: HoldKey = (_GANG, gang_id, pod.rank)
            if key in self._holds:
                self._hold_remove(key)
            mask = sum(1 << index for index in set(pod.gpu_indices))
            self._hold_add(key, _Hold(pod.node, mask, pod.cpu_millis, pod.memory_bytes, pod.extras))

    def release_pod(self, gang_id: str, rank: int) -> bool:
        """Give back one pod's hold; False if it held nothing (releasing twice is fine)."""
        key: HoldKey = (_GANG, gang_id, rank)
        if key not in self._holds:
            return False
        self._hold_remove(key)
        return True

    def release_gang(self, gang_id: str) -> int:
        """Give back every pod of the gang; returns how many were held."""
        ranks = sorted(self._gang_ranks.get(gang_id, ()))
        for rank in ranks:
            self._hold_remove((_GANG, gang_id, rank))
        return len(ranks)

    # -- pods of other schedulers ------------------------------------------------------------

    def add_foreign_usage(
        self,
        key: str,
        node: str,
        *,
        cpu_millis: int = 0,
        memory_bytes: int = 0,
        gpus: int | Sequence[int] = 0,
        extras: tuple[tuple[str, int], ...] = (),
        is_pod: bool = True,
    ) -> tuple[int, ...]:
        """Count a pod we did not place as used capacity; replaces an earlier entry of `key`.
        With `is_pod` False, the hold is no pod (the devices of a ResourceClaim).

        `gpus` is either the GPU indices the pod holds, or only how many (the device
        plugin chose; we then mark the ones our own picker would take). Facts are never
        refused: a GPU already held stays used until every holder lets go, and CPU or
        memory may exceed allocatable. Returns the GPU indices now marked for this pod.
        """
        hold_key: HoldKey = (_FOREIGN, key, 0)
        state = self._state(node)
        mask = 0
        if not isinstance(gpus, int):
            for index in gpus:
                if not 0 <= index < state.gpu_count:
                    raise ValueError(f"node {node} has no GPU {index}")
                mask |= 1 << index
        if hold_key in self._holds:
            self._hold_remove(hold_key)
        if isinstance(gpus, int):
            usable = state.usable_mask
            count = min(gpus, usable.bit_count())
            mask = pick_gpus(usable, state.group_masks, state.numa_masks, count)
        self._hold_add(hold_key, _Hold(node, mask, cpu_millis, memory_bytes, extras, is_pod))
        return indices(mask)

    def remove_foreign_usage(self, key: str) -> bool:
        hold_key: HoldKey = (_FOREIGN, key, 0)
        if hold_key not in self._holds:
            return False
        self._hold_remove(hold_key)
        return True

    # -- reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tree.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self.tree.nodes

    def node_names(self) -> list[str]:
        return list(self.tree.nodes)

    def node_view(self, name: str) -> NodeView:
        state = self._state(name)
        return NodeView(
            name=state.name,
            model=state.model or None,
            gpu_count=state.gpu_count,
            free_gpus=indices(state.free_mask),
            used_gpus=indices(state.used_mask),
            unhealthy_gpus=indices(state.all_mask & ~state.healthy_mask),
            cpu_free_millis=state.cpu_free,
            memory_free_bytes=state.mem_free,
            schedulable=state.schedulable,
            domain=dict(state.domain_labels),
        )

    def node_artefacts(self, name: str) -> frozenset[str]:
        """The artefacts the node holds (its cache agent's keys and its image names)."""
        return self._state(name).artefacts

    def free_gpus_holding(self, artefacts: tuple[str, ...], model: str | None = None) -> list[int]:
        """Free GPUs of each schedulable node (of a model matching `model`) that holds every
        one of `artefacts`: O(nodes holding them). None for no artefacts."""
        return [
            state.free_mask.bit_count()
            for state in self.tree.holding_all(artefacts)
            if state.schedulable and (model is None or model_matches(model, state.model))
        ]

    def node_usage(self, name: str) -> NodeUsage:
        state = self._state(name)
        return NodeUsage(
            name=name,
            gpus_used=(state.used_mask & state.all_mask).bit_count(),
            cpu_used_millis=state.cpu_used,
            memory_used_bytes=state.mem_used,
            cpu_allocatable_millis=state.cpu_alloc,
            memory_allocatable_bytes=state.mem_alloc,
            schedulable=state.schedulable,
            holders=frozenset(key[1] for key in state.holds),
            pods_used=state.pods_used,
            extras_used=tuple(sorted(state.extra_used.items())),
        )

    def domain_paths(self, level: str) -> list[tuple[str, ...]]:
        """Paths (outermost value first) of every domain at a level above the node."""
        if level not in self.tree.levels:
            raise ValueError(f"{level!r} is not a domain level of {list(self.tree.levels)}")
        depth = self.tree.levels.index(level) + 1
        return [d.path for d in self.tree.domains_at(depth)]

    def domain_stats(self, path: Sequence[str] = (), model: str | None = None) -> DomainStats:
        domain = self.tree.find(tuple(path))
        if domain is None:
            raise KeyError(f"no domain {list(path)}")
        if model is None:
            stats = stats_for(domain, model) or Stats()
        else:  # a selector: every model it matches (`model_matches`)
            stats = Stats()
            for name, found in domain.stats.items():
                if model_matches(model, name):
                    stats = stats.merged_with(found)
        hist = list(stats.hist)
        while hist and hist[-1] == 0:
            hist.pop()
        return DomainStats(
            path=domain.path,
            level=self.tree.level_name(domain.depth),
            nodes=stats.nodes,
            free_gpus=stats.free_gpus,
            whole_free_nodes=stats.whole,
            free_histogram=tuple(hist),
            free_cpu_millis=stats.free_cpu,
            free_memory_bytes=stats.free_mem,
        )

    def free_gpus(self, model: str | None = None) -> int:
        return self.domain_stats((), model).free_gpus

    def stranded_gpus(self, pod_gpus: int = 8, model: str | None = None) -> int:
        """Free GPUs on nodes with fewer than `pod_gpus` free: no room for such a pod."""
        hist = self.domain_stats((), model).free_histogram
        return sum(k * hist[k] for k in range(min(pod_gpus, len(hist))))

    def gangs(self) -> list[str]:
        return sorted(self._gang_ranks)

    def gang_pods(self, gang_id: str) -> tuple[HeldPod, ...]:
        ranks = sorted(self._gang_ranks.get(gang_id, ()))
        return tuple(self._held_pod((_GANG, gang_id, rank)) for rank in ranks)

    def _held_pod(self, key: HoldKey) -> HeldPod:
        hold = self._holds[key]
        state = self.tree.nodes[hold.node]
        return HeldPod(
            gang_id=key[1],
            rank=key[2],
            node=hold.node,
            gpu_indices=indices(state.holds[key]),
            cpu_millis=hold.cpu,
            memory_bytes=hold.mem,
        )

    def verify(self) -> list[str]:
        """Recompute every index from the nodes by brute force; describe any mismatch."""
        problems: list[str] = []
        for state in self.tree.nodes.values():
            used = state.baseline_mask
            for key, mask in state.holds.items():
                used |= mask
                if self._holds.get(key) is None or self._holds[key].node != state.name:
                    problems.append(f"node {state.name}: hold {key} unknown to the ledger")
            if used != state.used_mask:
                problems.append(f"node {state.name}: used GPUs drifted")
            cpu = state.baseline_cpu + sum(self._holds[k].cpu for k in state.holds)
            mem = state.baseline_mem + sum(self._holds[k].mem for k in state.holds)
            if (cpu, mem) != (state.cpu_used, state.mem_used):
                problems.append(f"node {state.name}: used CPU/memory drifted")
            extras: dict[str, int] = {}
            for k in state.holds:
                for resource, amount in self._holds[k].extras:
                    extras[resource] = extras.get(resource, 0) + amount
            extras = {r: n for r, n in extras.items() if n}
            if (len(state.holds), extras) != (state.pods_used, state.extra_used):
                problems.append(f"node {state.name}: used pods/extended resources drifted")
        for key, hold in self._holds.items():
            if key not in self.tree.nodes[hold.node].holds:
                problems.append(f"hold {key} is missing on node {hold.node}")
        problems.extend(self._verify_domain(self.tree.root))
        return problems

    def _verify_domain(self, domain: DomainNode) -> list[str]:
        problems: list[str] = []
        expected: dict[str, Stats] = {}
        lowest = list(self.tree.lowest_domains(domain))
        members = [s for d in lowest for s in d.nodes.values()]
        if len(members) != domain.size:
            problems.append(f"domain {domain.path}: size {domain.size} != {len(members)} nodes")
        for state in members:
            if not state.schedulable:
                continue
            free = state.free_mask.bit_count()
            whole = state.gpu_count > 0 and free == state.gpu_count
            profile = profile_of(state.free_mask, state.group_masks, state.numa_masks)
            expected.setdefault(state.model, Stats()).add(
                free, state.cpu_free, state.mem_free, whole, 1, profile
            )
        if set(expected) != set(domain.stats):
            problems.append(f"domain {domain.path}: models {sorted(domain.stats)} wrong")
        for model, want in expected.items():
            got = domain.stats.get(model)
            if got is None:
                continue
            a = (got.free_gpus, got.free_cpu, got.free_mem, got.whole, got.nodes)
            b = (want.free_gpus, want.free_cpu, want.free_mem, want.whole, want.nodes)
            if a != b or _trim(got.hist) != _trim(want.hist) or got.profiles != want.profiles:
                problems.append(f"domain {domain.path} model {model!r}: {a} != {b}")
        if domain.depth == self.tree.lowest_depth:
            bucketed = 0
            for model, buckets in domain.buckets.items():
                for free, bucket in enumerate(buckets):
                    bucketed += len(bucket)
                    for state in bucket.values():
                        if state.model != model or state.free_mask.bit_count() != free:
                            problems.append(f"node {state.name} in the wrong bucket")
            if bucketed != sum(s.schedulable for s in members):
                problems.append(f"domain {domain.path}: {bucketed} nodes in buckets")
            profiled = 0
            for model, by_profile in domain.profiled.items():
                for profile, same in by_profile.items():
                    profiled += len(same)
                    for state in same.values():
                        now = profile_of(state.free_mask, state.group_masks, state.numa_masks)
                        if state.model != model or now != profile or not same:
                            problems.append(f"node {state.name} under the wrong wiring profile")
            if profiled != bucketed:
                problems.append(f"domain {domain.path}: {profiled} nodes by wiring profile")
        for child in domain.children.values():
            problems.extend(self._verify_domain(child))
        return problems


def _count(state: NodeState, hold: _Hold, sign: int) -> None:
    """Add (sign 1) or take away (-1) one pod and its extended resources on the node."""
    if hold.is_pod:
        state.pods_used += sign
    used = state.extra_used
    for resource, amount in hold.extras:
        left = used.get(resource, 0) + sign * amount
        if left:
            used[resource] = left
        else:
            used.pop(resource, None)


def _trim(hist: list[int]) -> list[int]:
    out = list(hist)
    while out and out[-1] == 0:
        out.pop()
    return out
