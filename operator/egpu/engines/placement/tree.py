"""The ledger's indexes: a tree of topology domains with free-capacity counts.

Every domain (the root, then one per label value at each level) keeps, per GPU
model, a histogram of its schedulable nodes by free GPU count, plus free GPU, CPU
and memory totals and the number of wholly free nodes. Lowest-level domains also
bucket their nodes by free GPU count. A node change touches only the domains on its
own path: O(levels), never a scan of the cluster.

Internal to the placement package: the ledger mutates it, the engine reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from types import MappingProxyType

from egpu.domain.gpu import Interconnect
from egpu.domain.node import Node
from egpu.domain.scheduling import Taint, is_host_port
from egpu.engines.placement.wiring import Profile, profile_of

_DIGITS = re.compile(r"(\d+)")


@lru_cache(maxsize=4096)  # domain names repeat: every tree built for a decision sorts them
def natural_key(text: str) -> tuple[tuple[int, str], ...]:
    """Sort "n2" before "n10", so ranks follow the names people read."""
    return tuple((int(part), "") if part.isdigit() else (0, part) for part in _DIGITS.split(text))


def unlabelled_value(node_name: str) -> str:
    """Domain value for a node that lacks a level's label: a domain of its own."""
    return f"<unlabelled:{node_name}>"


@lru_cache(maxsize=64)
def wiring_masks(wiring: Interconnect) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """NVLink groups and NUMA nodes as GPU bit masks (cached: nodes share wirings)."""
    groups = tuple(sum(1 << i for i in group) for group in wiring.nvlink_groups)
    numa: dict[int, int] = {}
    for gpu, numa_node in enumerate(wiring.numa):
        numa[numa_node] = numa.get(numa_node, 0) | (1 << gpu)
    return groups, tuple(numa[k] for k in sorted(numa))


class Stats:
    """Free capacity of the schedulable nodes of one GPU model inside one domain."""

    __slots__ = ("free_cpu", "free_gpus", "free_mem", "hist", "nodes", "profiles", "whole")

    def __init__(self) -> None:
        self.hist: list[int] = []
        self.profiles: dict[Profile, int] = {}  # nodes by wiring profile (wiring.py)
        self.free_gpus = 0
        self.free_cpu = 0
        self.free_mem = 0
        self.whole = 0
        self.nodes = 0

    def add(self, free: int, cpu: int, mem: int, whole: bool, sign: int, profile: Profile) -> None:
        hist = self.hist
        if free >= len(hist):
            hist.extend([0] * (free + 1 - len(hist)))
        hist[free] += sign
        profiles = self.profiles
        left = profiles.get(profile, 0) + sign
        if left:
            profiles[profile] = left
        else:
            del profiles[profile]
        self.free_gpus += sign * free
        self.free_cpu += sign * cpu
        self.free_mem += sign * mem
        self.whole += sign * whole
        self.nodes += sign

    def merged_with(self, other: Stats) -> Stats:
        out = Stats()
        size = max(len(self.hist), len(other.hist))
        out.hist = [0] * size
        for src in (self, other):
            for k, count in enumerate(src.hist):
                out.hist[k] += count
            for profile, count in src.profiles.items():
                out.profiles[profile] = out.profiles.get(profile, 0) + count
        out.free_gpus = self.free_gpus + other.free_gpus
        out.free_cpu = self.free_cpu + other.free_cpu
        out.free_mem = self.free_mem + other.free_mem
        out.whole = self.whole + other.whole
        out.nodes = self.nodes + other.nodes
        return out


class DomainNode:
    """One domain of the tree. `depth` 0 is the root (the whole cluster)."""

    __slots__ = (
        "buckets",
        "children",
        "depth",
        "nodes",
        "parent",
        "path",
        "profiled",
        "size",
        "sort_key",
        "stats",
        "value",
    )

    def __init__(self, depth: int, value: str, path: tuple[str, ...], parent: DomainNode | None):
        self.depth = depth
        self.value = value
        self.path = path
        self.parent = parent
        self.sort_key = natural_key(value)
        self.children: dict[str, DomainNode] = {}
        self.nodes: dict[str, NodeState] = {}  # lowest level only
        # lowest level only: model -> [free GPU count] -> nodes (a dict as an ordered set)
        self.buckets: dict[str, list[dict[str, NodeState]]] = {}
        # lowest level only: model -> wiring profile -> nodes
        self.profiled: dict[str, dict[Profile, dict[str, NodeState]]] = {}
        self.stats: dict[str, Stats] = {}
        self.size = 0  # attached nodes under this domain, schedulable or not


class NodeState:
    """The ledger's mutable view of one node. GPU sets are bit masks (bit i = GPU i)."""

    __slots__ = (
        "_sort_key",
        "all_mask",
        "artefacts",
        "baseline_cpu",
        "baseline_mask",
        "baseline_mem",
        "chain",
        "cpu_alloc",
        "cpu_used",
        "domain_labels",
        "dra",
        "extra_alloc",
        "extra_used",
        "gpu_count",
        "group_masks",
        "healthy_mask",
        "holds",
        "hostname",
        "ix_cpu",
        "ix_free",
        "ix_mem",
        "ix_profile",
        "labels",
        "mem_alloc",
        "mem_used",
        "model",
        "name",
        "numa_masks",
        "pods_alloc",
        "pods_used",
        "schedulable",
        "taints",
        "used_mask",
    )

    def __init__(self, node: Node) -> None:
        self.name = node.name
        self.hostname = node.hostname
        self.model = node.gpu_model or ""
        self.gpu_count = node.gpu_count
        self.all_mask = (1 << node.gpu_count) - 1
        self.healthy_mask = self.all_mask & ~sum(1 << i for i in node.unhealthy_gpus)
        self.baseline_mask = sum(1 << i for i in node.used_gpus)
        self.used_mask = self.baseline_mask
        self.baseline_cpu = node.used_cpu_millis
        self.baseline_mem = node.used_memory_bytes
        self.cpu_used = node.used_cpu_millis
        self.mem_used = node.used_memory_bytes
        self.cpu_alloc = node.cpu_millis
        self.mem_alloc = node.memory_bytes
        self.schedulable = node.schedulable
        self.dra = node.dra
        self.labels = node.labels
        self.taints = node.taints
        self.pods_alloc = -1 if node.max_pods is None else node.max_pods  # -1: no limit
        self.pods_used = 0
        self.extra_alloc = node.extended
        self.extra_used: dict[str, int] = {}
        self.group_masks, self.numa_masks = wiring_masks(node.wiring)
        self.artefacts = node.artefacts  # shared between nodes that hold the same
        self._sort_key: tuple[tuple[int, str], ...] | None = None
        self.chain: tuple[DomainNode, ...] = ()
        self.domain_labels: Mapping[str, str] = MappingProxyType({})
        self.holds: dict[tuple[str, str, int], int] = {}  # hold key -> GPU mask
        self.ix_free = -1  # what index() added, so unindex() removes exactly that
        self.ix_cpu = 0
        self.ix_mem = 0
        self.ix_profile: Profile = ((), ())

    def clone(self) -> NodeState:
        """A shallow copy (what copy.copy makes, several times faster)."""
        twin = object.__new__(NodeState)
        for name in NodeState.__slots__:
            setattr(twin, name, getattr(self, name))
        return twin

    @property
    def sort_key(self) -> tuple[tuple[int, str], ...]:
        """Natural order of the node name; computed on first use (building 15,000 nodes
        should not pay for sorting keys that most decisions never read)."""
        if self._sort_key is None:
            self._sort_key = natural_key(self.name)
        return self._sort_key

    @property
    def usable_mask(self) -> int:
        """Healthy GPUs no one holds (ignores the schedulable flag)."""
        return self.healthy_mask & ~self.used_mask & self.all_mask

    @property
    def free_mask(self) -> int:
        """GPUs a new pod may get: usable, on a schedulable node."""
        return self.usable_mask if self.schedulable else 0

    @property
    def cpu_free(self) -> int:
        return max(0, self.cpu_alloc - self.cpu_used)

    @property
    def mem_free(self) -> int:
        return max(0, self.mem_alloc - self.mem_used)

    @property
    def pods_free(self) -> int:
        """Pods the node may still take by its pod count (-1: no limit)."""
        if self.pods_alloc < 0:
            return -1
        return max(0, self.pods_alloc - self.pods_used)

    def extra_free(self, resource: str) -> int:
        """What is left of an extended resource (or a host port: one of each)."""
        alloc = self.extra_alloc.get(resource)
        if alloc is None:
            alloc = 1 if is_host_port(resource) else 0
        return max(0, alloc - self.extra_used.get(resource, 0))


class DomainTree:
    def __init__(self, levels: tuple[str, ...], node_level: str) -> None:
        self.levels = levels
        self.node_level = node_level
        self.lowest_depth = len(levels)
        self.root = DomainNode(0, "", (), None)
        self.nodes: dict[str, NodeState] = {}
        # Nodes the filters must look at even when a gang asks nothing special of them.
        # Tainted nodes by their taints: a filter asks once per distinct set of taints.
        self.tainted: dict[tuple[Taint, ...], dict[str, NodeState]] = {}
        self.pods_full: dict[str, NodeState] = {}  # indexed nodes with no pod slot left
        self.dra_nodes: dict[str, NodeState] = {}  # nodes whose GPUs come through DRA
        # Nodes that hold artefacts, by the (shared) set they hold, and for each artefact
        # key the distinct sets that hold it: a request's nodes are found without a scan.
        self.by_artefacts: dict[frozenset[str], dict[str, NodeState]] = {}
        self.artefact_sets: dict[str, dict[frozenset[str], None]] = {}

    # -- structure -----------------------------------------------------------------

    def attach(self, state: NodeState, labels: Mapping[str, str]) -> None:
        domain = self.root
        chain = [domain]
        names: dict[str, str] = {}
        for depth, level in enumerate(self.levels, start=1):
            value = labels.get(level) or unlabelled_value(state.name)
            names[level] = value
            child = domain.children.get(value)
            if child is None:
                child = DomainNode(depth, value, (*domain.path, value), domain)
                domain.children[value] = child
            domain = child
            chain.append(domain)
        names[self.node_level] = state.hostname
        state.chain = tuple(chain)
        state.domain_labels = MappingProxyType(names)
        for d in chain:
            d.size += 1
        domain.nodes[state.name] = state
        self._add(state)

    def reattach(self, state: NodeState) -> None:
        """Attach a state that was detached before, on its old path."""
        for d in state.chain:
            d.size += 1
        for parent, child in zip(state.chain, state.chain[1:], strict=False):
            linked = parent.children.setdefault(child.value, child)
            # Undo runs last-in first-out, so no other domain can have taken this place.
            assert linked is child, f"domain {child.path} was replaced while detached"
        state.chain[-1].nodes[state.name] = state
        self._add(state)

    def _add(self, state: NodeState) -> None:
        self.nodes[state.name] = state
        if state.taints:
            self.tainted.setdefault(state.taints, {})[state.name] = state
        if state.dra:
            self.dra_nodes[state.name] = state
        if state.artefacts:
            self._file_artefacts(state)
        self.index(state)

    def _file_artefacts(self, state: NodeState) -> None:
        held = state.artefacts
        group = self.by_artefacts.get(held)
        if group is None:
            group = self.by_artefacts[held] = {}
            for key in held:
                self.artefact_sets.setdefault(key, {})[held] = None
        group[state.name] = state

    def _unfile_artefacts(self, state: NodeState) -> None:
        held = state.artefacts
        group = self.by_artefacts[held]
        del group[state.name]
        if group:
            return
        del self.by_artefacts[held]
        for key in held:
            sets = self.artefact_sets[key]
            del sets[held]
            if not sets:
                del self.artefact_sets[key]

    def holds_any(self, keys: tuple[str, ...]) -> bool:
        """Whether some node (schedulable or not) holds one of these artefacts."""
        return any(key in self.artefact_sets for key in keys)

    def artefact_groups(
        self, keys: tuple[str, ...]
    ) -> Iterator[tuple[frozenset[str], dict[str, NodeState]]]:
        """Each distinct set of artefacts that holds one of `keys` at least, with its nodes."""
        seen: set[frozenset[str]] = set()
        for key in keys:
            for held in self.artefact_sets.get(key, ()):
                if held not in seen:
                    seen.add(held)
                    yield held, self.by_artefacts[held]

    def holding_all(self, keys: tuple[str, ...]) -> Iterator[NodeState]:
        """The nodes (schedulable or not) that hold every one of `keys` (none for no keys):
        only the sets that hold the rarest key are looked at."""
        if not keys:
            return
        rarest = min(keys, key=lambda k: len(self.artefact_sets.get(k, ())))
        for held in self.artefact_sets.get(rarest, ()):
            if all(key in held for key in keys):
                yield from self.by_artefacts[held].values()

    def detach(self, state: NodeState) -> None:
        self.unindex(state)
        del self.nodes[state.name]
        self.dra_nodes.pop(state.name, None)
        if state.artefacts:
            self._unfile_artefacts(state)
        if state.taints:
            group = self.tainted[state.taints]
            del group[state.name]
            if not group:
                del self.tainted[state.taints]
        lowest = state.chain[-1]
        del lowest.nodes[state.name]
        for d in state.chain:
            d.size -= 1
        # Drop domains left empty, innermost first; the root always stays.
        for d in reversed(state.chain[1:]):
            if d.size == 0 and d.parent is not None:
                d.parent.children.pop(d.value, None)

    # -- counts ----------------------------------------------------------------------

    def index(self, state: NodeState) -> None:
        if not state.schedulable:
            state.ix_free = -1
            return
        free_mask = state.free_mask
        free = free_mask.bit_count()
        cpu, mem = state.cpu_free, state.mem_free
        whole = state.gpu_count > 0 and free == state.gpu_count
        profile = profile_of(free_mask, state.group_masks, state.numa_masks)
        model = state.model
        for d in state.chain:
            stats = d.stats.get(model)
            if stats is None:
                stats = d.stats[model] = Stats()
            stats.add(free, cpu, mem, whole, 1, profile)
        lowest = state.chain[-1]
        buckets = lowest.buckets.setdefault(model, [])
        if free >= len(buckets):
            buckets.extend({} for _ in range(free + 1 - len(buckets)))
        buckets[free][state.name] = state
        lowest.profiled.setdefault(model, {}).setdefault(profile, {})[state.name] = state
        state.ix_free, state.ix_cpu, state.ix_mem = free, cpu, mem
        state.ix_profile = profile
        if state.pods_free == 0:
            self.pods_full[state.name] = state

    def unindex(self, state: NodeState) -> None:
        free = state.ix_free
        if free < 0:
            return
        whole = state.gpu_count > 0 and free == state.gpu_count
        model = state.model
        profile = state.ix_profile
        for d in state.chain:
            stats = d.stats[model]
            stats.add(free, state.ix_cpu, state.ix_mem, whole, -1, profile)
            if stats.nodes == 0:
                del d.stats[model]
        lowest = state.chain[-1]
        del lowest.buckets[model][free][state.name]
        by_profile = lowest.profiled[model]
        same = by_profile[profile]
        del same[state.name]
        if not same:
            del by_profile[profile]
        state.ix_free = -1
        self.pods_full.pop(state.name, None)

    # -- reading -----------------------------------------------------------------------

    def domains_at(self, depth: int) -> Iterator[DomainNode]:
        frontier = [self.root]
        for _ in range(depth):
            frontier = [c for d in frontier for c in d.children.values()]
        yield from frontier

    def find(self, path: tuple[str, ...]) -> DomainNode | None:
        domain: DomainNode | None = self.root
        for value in path:
            if domain is None:
                return None
            domain = domain.children.get(value)
        return domain

    def lowest_domains(self, domain: DomainNode) -> Iterator[DomainNode]:
        frontier = [domain]
        for _ in range(self.lowest_depth - domain.depth):
            frontier = [c for d in frontier for c in d.children.values()]
        yield from frontier

    def level_name(self, depth: int) -> str:
        """Label of the level at `depth`; depth lowest_depth + 1 is the node."""
        if depth == 0:
            return "cluster"
        if depth <= self.lowest_depth:
            return self.levels[depth - 1]
        return self.node_level
