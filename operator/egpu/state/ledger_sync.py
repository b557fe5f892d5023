"""The one account of every node's resources: the placement ledger, kept equal to what
the API server says is there, plus the binder's reservations still in flight.

Every controller reads this one ledger (the binder places with it, the resize loop asks
it for room on a node); the node and pod caches feed it, the binder adds its intents.

What the ledger holds, per pod (an `Account`):
- bound, not finished: a fact, whoever bound it and however (kube-scheduler, our
  binder, a `nodeName` written by hand). At the GPUs the binder recorded for it when
  those can be trusted (see `egpu.state.pods`), else as many GPUs as it asks for.
  Facts are never refused: a GPU counted twice stays used until both let go.
- the binder's intent: a pod being bound right now. Kept across relists and rebuilds
  until the pod shows up bound (or the binder gives up), so a rebuild during a bind
  cannot hand its GPUs to anyone else.
- a recorded plan (ours, unbound): a reservation, made by an earlier leader; it must
  still fit, and a fact that takes its GPUs pushes it out (the binder then replans it).
Pods seen while their node is unknown or unreadable are remembered and counted as soon
as the node appears or is repaired.

GPUs published through DRA: a node's ResourceSlices give its GPU count and wiring (in
preference to its labels and interconnect annotation), and every allocated
ResourceClaim, whoever allocated it, holds the devices it names, counted before any
pod counted by GPU count alone. A claim reserved for one pod whose own account holds
exactly those GPUs on that node (its binding, intent or recorded plan) is that pod's
hold, not a second one: so the plan of a pod whose claim was allocated just before
the operator restarted is resumed, not pushed out by its own claim.

Fences: GPUs the repair controller took out of placement (`set_fence`), held here at
once and added to what the node's `egpu.io/unhealthy-gpus` annotation marks, so the
binder never places on them, even before the annotation written with them is seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from egpu.domain.dra import AllocatedDevice, ClaimAllocation, DraNode, parse_claim, parse_slices
from egpu.domain.node import node_from_kubernetes
from egpu.domain.placement import PodAssignment
from egpu.domain.pod import PodDemand, PodFacts
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, ReservationError, UnknownNodeError
from egpu.state.pods import is_ours, pod_demand, pod_key, read_pod

log = logging.getLogger("egpu.state.ledger")

JSON = dict[str, Any]
HOSTNAME_ONLY = Topology(levels=("kubernetes.io/hostname",))

BOUND, INTENT, PLANNED = "bound", "intent", "planned"
# Ledger holds of ResourceClaims are keyed apart from pods' (pod keys hold no colon).
_CLAIM_PREFIX = "claim:"
_K = TypeVar("_K")

__all__ = [
    "HOSTNAME_ONLY",
    "Account",
    "LedgerSync",
    "PodDemand",
    "is_ours",
    "node_schedulable",
    "pod_demand",
    "pod_key",
]


@dataclass(frozen=True, slots=True)
class Account:
    """What the ledger holds for one pod."""

    kind: str  # BOUND, INTENT or PLANNED
    node: str
    gpus: tuple[int, ...] | int  # GPU ids, or only how many (ids unknown)
    cpu_millis: int
    memory_bytes: int
    extras: tuple[tuple[str, int], ...] = ()  # extended resources, host ports


def _order(account: Account) -> int:
    """Counting order on a node: known GPUs, then GPU counts, then recorded plans."""
    if account.kind == PLANNED:
        return 2
    return 1 if isinstance(account.gpus, int) else 0


def _placed_first(account: Account) -> bool:
    return _order(account) == 0


def node_schedulable(node: JSON) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _assignment(
    node: str,
    gpus: tuple[int, ...],
    cpu: int,
    memory: int,
    extras: tuple[tuple[str, int], ...] = (),
) -> PodAssignment:
    # Every pod is its own hold in the ledger (hold id = pod key, rank 0), so no label
    # a user writes can make two pods share or replace one hold.
    return PodAssignment(
        rank=0,
        node=node,
        gpu_indices=gpus,
        domain={},
        cpu_millis=cpu,
        memory_bytes=memory,
        extras=extras,
    )


class LedgerSync:
    def __init__(self, topology: Topology = HOSTNAME_ONLY) -> None:
        self.ledger = ClusterLedger(topology)
        self.facts: dict[str, PodFacts] = {}  # live pods that are bound or carry a plan
        self.accounts: dict[str, Account] = {}  # what the ledger holds, by pod key
        self.intents: dict[str, PodAssignment] = {}  # the binder's binds in flight
        self.ignored_plans: dict[str, str] = {}  # pod key -> plan id given up on
        self.bad_nodes: dict[str, str] = {}  # nodes whose GPU info cannot be read, and why
        self._on_node: dict[str, set[str]] = {}  # node -> pods counted (or to count) there
        self._where: dict[str, str] = {}  # pod key -> its node in _on_node
        self._last: tuple[JSON | None, PodFacts | None] = (None, None)
        self.fences: dict[str, frozenset[int]] = {}  # node -> GPUs fenced by repair
        self.dra_nodes: dict[str, DraNode] = {}  # node -> the GPUs its ResourceSlices publish
        self.bad_slices: dict[str, str] = {}  # node -> why its slices cannot be read
        self.claims: dict[str, ClaimAllocation] = {}  # allocated claims, by claim key
        self._pool_claims: dict[tuple[str, str], set[str]] = {}  # (driver, pool) -> claims
        self._uid_claims: dict[str, set[str]] = {}  # pod UID -> claims reserved for it
        self._pod_uids: dict[str, str] = {}  # pod key -> UID, of every pod seen
        self._uid_keys: dict[str, str] = {}  # UID -> pod key
        self._pool_nodes: dict[tuple[str, str], str] = {}  # (driver, pool) -> node
        self._node_slices: dict[str, dict[str, JSON]] = {}  # node -> its slices by name
        self._node_objects: dict[str, JSON] = {}  # the Node objects last seen, by name

    # -- whole rebuilds ------------------------------------------------------------------

    @classmethod
    def rebuild(
        cls,
        topology: Topology,
        nodes: Iterable[JSON],
        pods: Iterable[JSON],
        intents: dict[str, PodAssignment] | None = None,
        ignored_plans: dict[str, str] | None = None,
        fences: dict[str, frozenset[int]] | None = None,
        slices: Iterable[JSON] = (),
        claims: Iterable[JSON] = (),
    ) -> LedgerSync:
        sync = cls(topology)
        sync.fences = dict(fences or {})
        sync._read_slices(slices)
        sync._set_claims(_read_claims(claims))
        sync.intents = dict(intents or {})
        sync.ignored_plans = dict(ignored_plans or {})
        sync._fill(nodes, pods)
        return sync

    def reset(
        self,
        topology: Topology,
        nodes: Iterable[JSON],
        pods: Iterable[JSON],
        slices: Iterable[JSON] | None = None,
        claims: Iterable[JSON] | None = None,
    ) -> None:
        """Rebuild from the caches in place (a relist, a new topology); the binds in
        flight are kept. Slices and claims left out keep what was read of them."""
        self.ledger = ClusterLedger(topology)
        self.facts, self.accounts, self.bad_nodes = {}, {}, {}
        self._on_node, self._where, self._node_objects = {}, {}, {}
        if slices is not None:
            self._read_slices(slices)
        if claims is not None:
            self._set_claims(_read_claims(claims))
        self._pod_uids, self._uid_keys = {}, {}
        self._fill(nodes, pods)

    def _fill(self, nodes: Iterable[JSON], pods: Iterable[JSON]) -> None:
        for node in nodes:
            self.node_changed(None, node)
        for pod in pods:
            facts = read_pod(pod)
            self._know_uid(facts.key, facts.uid)
            self._set_facts(facts.key, facts)
        for key in self.intents:
            self._index(key)
        for name in list(self._node_objects):  # claims that are their pods' holds
            self._count_claims(name)
        # Pods whose GPUs are known (facts, binds in flight) first, then pods counted by
        # GPU count alone, then recorded plans, each in one fixed order: an old plan
        # never takes what is really used, and `_refresh` lays a node out the same way.
        keys = set(self.facts) | set(self.intents)
        ordered = sorted(
            (_order(desired), key) for key in keys if (desired := self._desired(key)) is not None
        )
        for _, key in ordered:
            self._settle(key, retry=False)

    # -- nodes ---------------------------------------------------------------------------

    def node_changed(self, old: JSON | None, new: JSON | None) -> None:
        if new is None:
            if old is not None:
                self._node_objects.pop(old["metadata"]["name"], None)
                self._node_gone(old["metadata"]["name"])
            return
        meta, status = new["metadata"], new.get("status") or {}
        name = meta["name"]
        self._node_objects[name] = new
        try:
            if name in self.bad_slices:
                raise ValueError(self.bad_slices[name])
            node = node_from_kubernetes(
                name,
                meta.get("labels") or {},
                meta.get("annotations") or {},
                status.get("allocatable") or {},
                schedulable=node_schedulable(new),
                taints=(new.get("spec") or {}).get("taints"),
                dra=self.dra_nodes.get(name),
                images=status.get("images"),
            )
        except ValueError as exc:
            # Out of placement until it can be read, as if it were not there; what runs
            # on it is counted again once it is repaired.
            self._node_gone(name)
            self.bad_nodes[name] = str(exc)
            return
        self.bad_nodes.pop(name, None)
        fence = self.fences.get(name)
        if fence:
            extra = frozenset(i for i in fence if 0 <= i < node.gpu_count)
            node = replace(node, unhealthy_gpus=node.unhealthy_gpus | extra)
        if name in self.ledger:
            self.ledger.update_node(node)
        else:
            self.ledger.add_node(node)
        self._count_claims(name)
        self._refresh(name)  # a cordon, fewer GPUs: old plans must still fit

    def set_fence(self, node: JSON, gpus: frozenset[int]) -> None:
        """Fence these GPUs of `node` (the Node object as cached), replacing its earlier
        fence; an empty set lifts it."""
        name = node["metadata"]["name"]
        if gpus:
            self.fences[name] = frozenset(gpus)
        else:
            self.fences.pop(name, None)
        self.node_changed(None, node)

    def _node_gone(self, name: str) -> None:
        self.bad_nodes.pop(name, None)
        if name not in self.ledger:
            return
        self.ledger.remove_node(name)
        for key in self._on_node.get(name, ()):
            if self.accounts.pop(key, None) is not None:
                log.info("node %s went; %s is no longer counted there", name, key)

    # -- DRA: ResourceSlices and ResourceClaims -----------------------------------------

    def slices_changed(self, slices: Iterable[JSON]) -> None:
        """The ResourceSlices now in the cache, all of them; nodes whose published GPUs
        changed are read again."""
        before = set(self._node_slices)
        self._node_slices = {}
        for item in slices:
            self._file_slice(item)
        for name in sorted(before | set(self._node_slices)):
            self._node_slices_read(name)

    def slice_changed(self, old: JSON | None, new: JSON | None) -> None:
        """One ResourceSlice added, changed or deleted: only its node is read again."""
        nodes = set()
        if old is not None:
            nodes.add(self._unfile_slice(old))
        if new is not None:
            nodes.add(self._file_slice(new))
        for name in sorted(n for n in nodes if n):
            self._node_slices_read(name)

    def _file_slice(self, item: JSON) -> str:
        node = str((item.get("spec") or {}).get("nodeName") or "")
        if node:
            name = str((item.get("metadata") or {}).get("name"))
            self._node_slices.setdefault(node, {})[name] = item
        return node

    def _unfile_slice(self, item: JSON) -> str:
        node = str((item.get("spec") or {}).get("nodeName") or "")
        held = self._node_slices.get(node)
        if held is not None:
            held.pop(str((item.get("metadata") or {}).get("name")), None)
            if not held:
                del self._node_slices[node]
        return node

    def _node_slices_read(self, name: str) -> None:
        before = (self.dra_nodes.get(name), self.bad_slices.get(name))
        self._parse_node_slices(name)
        if before != (self.dra_nodes.get(name), self.bad_slices.get(name)):
            node = self._node_objects.get(name)
            if node is not None:
                self.node_changed(None, node)

    def _read_slices(self, slices: Iterable[JSON]) -> None:
        self._node_slices, self.dra_nodes, self.bad_slices, self._pool_nodes = {}, {}, {}, {}
        for item in slices:
            self._file_slice(item)
        for name in sorted(self._node_slices):
            self._parse_node_slices(name)

    def _parse_node_slices(self, name: str) -> None:
        """One driver at a time, so one driver's bad slice leaves out its node alone."""
        old = self.dra_nodes.pop(name, None)
        if old is not None:
            self._pool_nodes.pop((old.driver, old.pool), None)
        self.bad_slices.pop(name, None)
        drivers: dict[str, list[JSON]] = {}
        for item in (self._node_slices.get(name) or {}).values():
            drivers.setdefault(str((item.get("spec") or {}).get("driver")), []).append(item)
        for _, group in sorted(drivers.items()):
            try:
                self.dra_nodes.update(parse_slices(group))
            except (ValueError, TypeError) as exc:
                self.bad_slices[name] = f"ResourceSlice: {exc}"
        dra = self.dra_nodes.get(name)
        if dra is not None:
            self._pool_nodes[(dra.driver, dra.pool)] = name

    def _set_claims(self, claims: dict[str, ClaimAllocation]) -> None:
        self.claims, self._pool_claims, self._uid_claims = {}, {}, {}
        for key, claim in claims.items():
            self._index_claim(key, claim)

    def _index_claim(self, key: str, claim: ClaimAllocation) -> None:
        self.claims[key] = claim
        for device in claim.devices:
            self._pool_claims.setdefault((device.driver, device.pool), set()).add(key)
        for uid in claim.reserved_for:
            self._uid_claims.setdefault(uid, set()).add(key)

    def _unindex_claim(self, key: str) -> ClaimAllocation | None:
        claim = self.claims.pop(key, None)
        if claim is None:
            return None
        for device in claim.devices:
            _discard(self._pool_claims, (device.driver, device.pool), key)
        for uid in claim.reserved_for:
            _discard(self._uid_claims, uid, key)
        return claim

    def claim_changed(self, old: JSON | None, new: JSON | None) -> None:
        claim = new or old
        if claim is None:
            return
        key = _claim_key(claim)
        before = self._unindex_claim(key)
        after = _read_claim(new) if new is not None else None
        if after is not None:
            self._index_claim(key, after)
        if before == after:
            return
        nodes = {self._claim_node(c) for c in (before, after) if c is not None}
        if before is not None:
            self.ledger.remove_foreign_usage(_CLAIM_PREFIX + key)
        for node in sorted(n for n in nodes if n is not None):
            self._count_claims(node)
            self._refresh(node)

    def _claim_node(self, claim: ClaimAllocation) -> str | None:
        for device in claim.devices:
            node = self._pool_nodes.get((device.driver, device.pool))
            if node is not None:
                return node
        return None

    def holders(
        self, devices: Iterable[AllocatedDevice], except_claim: str
    ) -> dict[AllocatedDevice, str]:
        """Which other allocated claim (by key) holds each of these devices, if any:
        only the claims of the devices' pools are looked at."""
        wanted = set(devices)
        pools = {(d.driver, d.pool) for d in wanted}
        return {
            device: key
            for pool in pools
            for key in self._pool_claims.get(pool, ())
            if key != except_claim
            for device in self.claims[key].devices
            if device in wanted
        }

    def claimed_gpus(self, node: str) -> dict[str, tuple[int, ...]]:
        """The GPU ids each allocated claim holds on `node`, by claim key."""
        dra = self.dra_nodes.get(node)
        if dra is None:
            return {}
        names = dra.device_index()
        pool = (dra.driver, dra.pool)
        held: dict[str, tuple[int, ...]] = {}
        for key in self._pool_claims.get(pool, ()):
            ids = tuple(
                sorted(
                    names[d.device]
                    for d in self.claims[key].devices
                    if (d.driver, d.pool) == pool and d.device in names
                )
            )
            if ids:
                held[key] = ids
        return held

    def _held_by_its_pod(self, claim: ClaimAllocation, node: str, ids: tuple[int, ...]) -> bool:
        """The claim is reserved for one pod only, whose own account holds exactly
        these GPUs of this node."""
        if len(claim.reserved_for) != 1:
            return False
        key = self._uid_keys.get(claim.reserved_for[0])
        desired = self._desired(key) if key is not None else None
        return (
            desired is not None
            and desired.node == node
            and not isinstance(desired.gpus, int)
            and set(desired.gpus) == set(ids)
        )

    def _count_claims(self, node: str) -> None:
        if node not in self.ledger:
            return
        for key, ids in sorted(self.claimed_gpus(node).items()):
            if self._held_by_its_pod(self.claims[key], node, ids):
                self.ledger.remove_foreign_usage(_CLAIM_PREFIX + key)
            else:
                self.ledger.add_foreign_usage(_CLAIM_PREFIX + key, node, gpus=ids, is_pod=False)

    def _recount_claims_of(self, key: str) -> None:
        """The pod's account may have changed: its claims are its holds, or not."""
        uid = self._pod_uids.get(key)
        nodes = {
            node
            for claim_key in self._uid_claims.get(uid or "", ())
            if (node := self._claim_node(self.claims[claim_key])) is not None
        }
        for node in sorted(nodes):
            self._count_claims(node)

    # -- pods ----------------------------------------------------------------------------

    def pod_changed(self, old: JSON | None, new: JSON | None) -> None:
        pod = new or old
        if pod is None:
            return
        key = pod_key(pod)
        if new is None:
            self.forget(key)
            return
        facts = read_pod(new)
        self._last = (new, facts)
        self._know_uid(key, facts.uid)
        self._set_facts(key, facts)
        self._settle(key)

    def _know_uid(self, key: str, uid: str) -> None:
        old = self._pod_uids.get(key)
        if old == uid:
            return
        if old is not None:
            self._uid_keys.pop(old, None)
        if uid:
            self._pod_uids[key], self._uid_keys[uid] = uid, key

    def facts_of(self, pod: JSON) -> PodFacts:
        """The pod read, once per change: listeners after the ledger reuse its reading."""
        last_pod, facts = self._last
        return facts if last_pod is pod and facts is not None else read_pod(pod)

    def forget(self, key: str) -> None:
        """The pod is gone: nothing of it is held any more."""
        self.facts.pop(key, None)
        self.intents.pop(key, None)
        self.ignored_plans.pop(key, None)
        node = self._where.get(key)
        self._release(key)
        self._unindex(key)
        self._recount_claims_of(key)  # its claims hold their devices until they go
        uid = self._pod_uids.pop(key, None)
        if uid is not None:
            self._uid_keys.pop(uid, None)
        if node is not None:
            self._refresh(node)

    def _set_facts(self, key: str, facts: PodFacts) -> None:
        if facts.live and (facts.bound or facts.plan is not None):
            self.facts[key] = facts
        else:
            self.facts.pop(key, None)
            if not facts.live:
                self.intents.pop(key, None)  # finished or deleted before it was bound
        self._index(key)

    # -- the binder's intents ------------------------------------------------------------

    def reserve_intents(self, pods: list[tuple[str, PodAssignment]]) -> None:
        """Hold these pods where the binder is about to bind them: all, or none
        (ReservationError). A pod whose recorded plan is held already keeps that hold."""
        fresh: list[tuple[str, PodAssignment]] = []
        for key, a in pods:
            held = self.accounts.get(key)
            if held is None or (held.kind, held.node, held.gpus) != (
                PLANNED,
                a.node,
                a.gpu_indices,
            ):
                fresh.append((key, a))
        with self.ledger.begin():
            for key, _ in fresh:
                self._release_in_ledger(key)
            for key, a in fresh:
                self.ledger.reserve_pods(
                    key,
                    [_assignment(a.node, a.gpu_indices, a.cpu_millis, a.memory_bytes, a.extras)],
                )
        for key, a in pods:
            self.intents[key] = a
            self.accounts[key] = Account(
                INTENT, a.node, a.gpu_indices, a.cpu_millis, a.memory_bytes, a.extras
            )
            self._index(key)
            self._recount_claims_of(key)

    def release_intent(self, key: str, *, drop_plan: bool = True) -> None:
        """The binder gave up binding this pod (it is bound elsewhere, or failed). With
        `drop_plan`, the plan recorded on the pod is not counted any more either."""
        self.intents.pop(key, None)
        facts = self.facts.get(key)
        if drop_plan and facts is not None and facts.plan is not None:
            self.ignored_plans[key] = facts.plan.plan_id
        self._settle(key)

    def drop_plans(self, keys: Iterable[str]) -> None:
        """Stop counting these pods' recorded plans (an incomplete plan of a dead leader)."""
        for key in keys:
            facts = self.facts.get(key)
            if facts is not None and facts.plan is not None:
                self.ignored_plans[key] = facts.plan.plan_id
                self._settle(key)

    # -- reading -------------------------------------------------------------------------

    def account_of(self, key: str) -> Account | None:
        return self.accounts.get(key)

    def held(self, key: str) -> bool:
        return key in self.accounts

    def gpus_asked_beyond(self, node: str) -> int:
        """How many more GPUs the pods counted on `node` ask (bound, reserved or planned)
        than the node has; 0 when they fit. Bound pods are facts and a plan is only an
        intention: a positive answer means some plan there no longer fits, e.g. because
        another scheduler, which cannot see plans, bound a pod onto the planned GPUs."""
        if node not in self.ledger:
            return 0
        asked = 0
        for key in self._on_node.get(node, ()):
            # What is counted here, and every bound pod (a fact, counted or not); a plan
            # that could not be counted holds nothing and asks nothing.
            account = self.accounts.get(key)
            if account is None:
                desired = self._desired(key)
                account = desired if desired is not None and desired.kind == BOUND else None
            if account is not None and account.node == node:
                gpus = account.gpus
                asked += gpus if isinstance(gpus, int) else len(gpus)
        return max(0, asked - self.ledger.node_view(node).gpu_count)

    def audit(
        self,
        nodes: Iterable[JSON],
        pods: Iterable[JSON],
        slices: Iterable[JSON] = (),
        claims: Iterable[JSON] = (),
    ) -> list[str]:
        """Where this ledger differs from one rebuilt from scratch out of `nodes`,
        `pods`, `slices` and `claims` (with the same binds in flight); empty when they
        agree."""
        fresh = LedgerSync.rebuild(
            self.ledger.topology,
            nodes,
            pods,
            self.intents,
            self.ignored_plans,
            self.fences,
            slices,
            claims,
        )
        problems = []
        for name in sorted(set(self.ledger.node_names()) | set(fresh.ledger.node_names())):
            mine = self.ledger.node_usage(name) if name in self.ledger else None
            theirs = fresh.ledger.node_usage(name) if name in fresh.ledger else None
            if mine != theirs:
                problems.append(f"node {name}: ledger {mine} != rebuilt {theirs}")
        if set(self.bad_nodes) != set(fresh.bad_nodes):
            mine_bad, theirs_bad = sorted(self.bad_nodes), sorted(fresh.bad_nodes)
            problems.append(f"unreadable nodes {mine_bad} != rebuilt {theirs_bad}")
        return problems

    # -- keeping one pod's account right ----------------------------------------------

    def _target(self, key: str) -> str | None:
        intent = self.intents.get(key)
        facts = self.facts.get(key)
        if facts is not None and facts.bound:
            return facts.node
        if intent is not None:
            return intent.node
        if facts is not None and facts.plan is not None:
            return facts.plan.node
        return None

    def _index(self, key: str) -> None:
        node = self._target(key)
        if self._where.get(key) == node:
            return
        self._unindex(key)
        if node is not None:
            self._where[key] = node
            self._on_node.setdefault(node, set()).add(key)

    def _unindex(self, key: str) -> None:
        node = self._where.pop(key, None)
        if node is not None:
            keys = self._on_node.get(node)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._on_node[node]

    def _desired(self, key: str) -> Account | None:
        facts = self.facts.get(key)
        intent = self.intents.get(key)
        if facts is not None and facts.bound:
            assert facts.node is not None
            ids = facts.bound_gpus
            if (
                ids is None
                and intent is not None
                and intent.node == facts.node
                and len(intent.gpu_indices) == facts.demand.gpus
            ):
                ids = intent.gpu_indices
            return Account(
                BOUND,
                facts.node,
                ids if ids is not None else facts.demand.gpus,
                facts.demand.cpu_millis,
                facts.demand.memory_bytes,
                facts.demand.extras,
            )
        if intent is not None:
            return Account(
                INTENT,
                intent.node,
                intent.gpu_indices,
                intent.cpu_millis,
                intent.memory_bytes,
                intent.extras,
            )
        plan = facts.plan if facts is not None else None
        if (
            facts is not None
            and plan is not None
            and facts.ours
            and self.ignored_plans.get(key) != plan.plan_id
            and len(plan.gpu_indices) == facts.demand.gpus
        ):
            return Account(
                PLANNED,
                plan.node,
                plan.gpu_indices,
                facts.demand.cpu_millis,
                facts.demand.memory_bytes,
                facts.demand.extras,
            )
        return None

    def _settle(self, key: str, retry: bool = True) -> None:
        facts = self.facts.get(key)
        if facts is not None and facts.bound and key in self.intents:
            del self.intents[key]  # the bind is seen (here, or elsewhere by someone else)
        self._index(key)
        desired = self._desired(key)
        current = self.accounts.get(key)
        if desired == current:
            return
        if current is not None:
            self._release(key)
        self._recount_claims_of(key)
        if not retry:  # a rebuild, in its own order
            if desired is not None:
                self._apply(key, desired)
            return
        if desired is not None and _placed_first(desired):
            self._apply(key, desired)
        for node in {a.node for a in (current, desired) if a is not None}:
            self._refresh(node)

    def _apply(self, key: str, account: Account) -> bool:
        if account.node not in self.ledger:
            return False  # counted when the node appears (or is readable again)
        try:
            if account.kind == BOUND:
                try:
                    self.ledger.add_foreign_usage(
                        key,
                        account.node,
                        cpu_millis=account.cpu_millis,
                        memory_bytes=account.memory_bytes,
                        gpus=account.gpus,
                        extras=account.extras,
                    )
                except ValueError:  # GPU ids the node does not have: count them instead
                    count = account.gpus if isinstance(account.gpus, int) else len(account.gpus)
                    self.ledger.add_foreign_usage(
                        key,
                        account.node,
                        cpu_millis=account.cpu_millis,
                        memory_bytes=account.memory_bytes,
                        gpus=count,
                        extras=account.extras,
                    )
            else:
                assert isinstance(account.gpus, tuple)
                hold = _assignment(
                    account.node,
                    account.gpus,
                    account.cpu_millis,
                    account.memory_bytes,
                    account.extras,
                )
                if account.kind == INTENT:  # the binder reserved it: a fact to us
                    self.ledger.adopt_pods(key, [hold])
                else:  # an old plan: only if it still fits
                    self.ledger.reserve_pods(key, [hold])
        except (ReservationError, UnknownNodeError, ValueError) as exc:
            log.info("%s not counted on %s as %s: %s", key, account.node, account.kind, exc)
            return False
        self.accounts[key] = account
        return True

    def _release(self, key: str) -> None:
        if self.accounts.pop(key, None) is not None:
            self._release_in_ledger(key)

    def _release_in_ledger(self, key: str) -> None:
        self.ledger.release_pod(key, 0)
        self.ledger.remove_foreign_usage(key)

    def _refresh(self, node: str) -> None:
        """Something on `node` changed: count what could not be counted there before,
        and lay out again what depends on the order things are counted in (pods counted
        by GPU count alone take whichever GPUs are left; recorded plans must still fit),
        in the one order a rebuild uses, so the two always agree to the GPU."""
        keys = sorted(self._on_node.get(node, ()))
        later: list[tuple[int, str]] = []
        for key in keys:
            desired = self._desired(key)
            if desired is None:
                continue
            if _placed_first(desired):
                if key not in self.accounts:
                    self._apply(key, desired)
            else:
                later.append((_order(desired), key))
        for _, key in later:
            self._release(key)
        for _, key in sorted(later):
            desired = self._desired(key)
            if desired is not None:
                self._apply(key, desired)


def _discard(index: dict[_K, set[str]], at: _K, key: str) -> None:
    keys = index.get(at)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[at]


def _claim_key(claim: JSON) -> str:
    meta = claim.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _read_claim(claim: JSON) -> ClaimAllocation | None:
    try:
        return parse_claim(claim)
    except (ValueError, TypeError) as exc:  # the API server validates; never expected
        log.warning("ResourceClaim %s not counted: %s", _claim_key(claim), exc)
        return None


def _read_claims(claims: Iterable[JSON]) -> dict[str, ClaimAllocation]:
    read = {_claim_key(c): _read_claim(c) for c in claims}
    return {key: allocation for key, allocation in read.items() if allocation is not None}
