"""The ledger's incremental indexes: reserve/release, transactions, node changes, and
random operation sequences checked against a brute-force recomputation."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import Interconnect
from egpu.domain.node import Node
from egpu.domain.placement import Placement, PodAssignment
from egpu.domain.topology import Topology
from egpu.engines.placement import (
    ClusterLedger,
    DomainStats,
    ReservationError,
    TransactionError,
    UnknownNodeError,
    place_gang,
)

pytestmark = pytest.mark.unit

BLOCK, LEAF, HOST = "egpu.io/block", "egpu.io/leaf", "kubernetes.io/hostname"
GIB = 2**30


def gpu_node(
    name: str,
    leaf: str,
    *,
    model: str = "H100",
    used: Iterable[int] = (),
    unhealthy: Iterable[int] = (),
    schedulable: bool = True,
    cpu: int = 32_000,
) -> Node:
    return Node(
        name=name,
        labels={BLOCK: leaf.split("-")[0], LEAF: leaf, HOST: name},
        cpu_millis=cpu,
        memory_bytes=256 * GIB,
        gpu_count=8,
        gpu_model=model,
        unhealthy_gpus=frozenset(unhealthy),
        interconnect=Interconnect(((0, 1, 2, 3), (4, 5, 6, 7)), (0, 0, 0, 0, 1, 1, 1, 1)),
        schedulable=schedulable,
        used_gpus=frozenset(used),
    )


def small_cluster() -> list[Node]:
    return [
        gpu_node(f"{leaf}-n{i}", leaf, model="A100" if leaf.startswith("b2") else "H100")
        for leaf in ("b0-l0", "b0-l1", "b1-l0", "b2-l0")
        for i in range(3)
    ]


def snapshot(ledger: ClusterLedger) -> tuple[object, ...]:
    """Everything a caller can read from the ledger."""
    views = tuple(ledger.node_view(n) for n in sorted(ledger.node_names()))
    domains: list[DomainStats] = [ledger.domain_stats(())]
    for level in (BLOCK, LEAF):
        domains += [ledger.domain_stats(p) for p in sorted(ledger.domain_paths(level))]
    gangs = tuple((g, ledger.gang_pods(g)) for g in ledger.gangs())
    return views, tuple(domains), gangs


def placed(result: object) -> Placement:
    assert isinstance(result, Placement), getattr(result, "message", result)
    return result


def test_release_restores_every_index() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    before = snapshot(ledger)
    for gang in (GangRequest("a", 4, 8), GangRequest("b", 3, 2), GangRequest("c", 1, 1)):
        ledger.reserve(placed(place_gang(ledger, gang)))
    assert snapshot(ledger) != before
    assert ledger.domain_stats(()).free_gpus == 96 - 32 - 6 - 1
    assert ledger.release_gang("b") == 3
    assert ledger.release_pod("c", 0) is True
    assert ledger.release_pod("c", 0) is False  # twice is harmless
    assert ledger.release_gang("a") == 4
    assert snapshot(ledger) == before
    assert ledger.verify() == []


def test_indexes_count_whole_nodes_and_free_histogram() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    # The pod goes to the fullest block (b1, smaller than b0; b2 has A100s only).
    ledger.reserve(placed(place_gang(ledger, GangRequest("a", 1, 3, gpu_model="H100"))))
    assert ledger.gang_pods("a")[0].node == "b1-l0-n0"
    leaf = ledger.domain_stats(("b1", "b1-l0"))
    assert (leaf.nodes, leaf.free_gpus, leaf.whole_free_nodes) == (3, 21, 2)
    assert leaf.free_histogram == (0, 0, 0, 0, 0, 1, 0, 0, 2)
    assert ledger.domain_stats((), model="A100").free_gpus == 24
    assert ledger.stranded_gpus(8) == 5


def test_a_failed_gang_reserve_leaves_no_trace() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    ledger.reserve(placed(place_gang(ledger, GangRequest("a", 1, 8))))
    taken = ledger.gang_pods("a")[0]
    before = snapshot(ledger)
    labels = {BLOCK: "b0", LEAF: "b0-l0", HOST: "x"}
    good = [PodAssignment(r, f"b1-l0-n{r}", tuple(range(8)), labels) for r in range(2)]
    bad_pods = {
        "gpu already held": PodAssignment(2, taken.node, (0,), labels),
        "no such node": PodAssignment(2, "nowhere", (0,), labels),
        "no such GPU": PodAssignment(2, "b0-l1-n0", (8,), labels),
        "two pods, one GPU": PodAssignment(2, "b1-l0-n0", (0,), labels),
        "rank twice": PodAssignment(1, "b0-l1-n0", (0,), labels),
        "too much CPU": PodAssignment(2, "b0-l1-n0", (0,), labels, cpu_millis=64_000),
    }
    for what, bad in bad_pods.items():
        with pytest.raises(ReservationError):
            ledger.reserve_pods("b", [*good, bad])
        assert snapshot(ledger) == before, what
    with pytest.raises(ReservationError, match="already reserved"):
        ledger.reserve_pods("a", [PodAssignment(0, "b0-l1-n0", (0,), labels)])
    assert ledger.verify() == []


def test_transactions_roll_back_everything_in_reverse() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    ledger.reserve(placed(place_gang(ledger, GangRequest("keep", 2, 8))))
    before = snapshot(ledger)
    with pytest.raises(RuntimeError, match="binding failed"), ledger.begin():
        ledger.reserve(placed(place_gang(ledger, GangRequest("x", 3, 8))))
        ledger.release_gang("keep")
        ledger.add_foreign_usage("ns/other", "b0-l1-n2", cpu_millis=500, gpus=2)
        ledger.set_unhealthy_gpus("b1-l0-n0", [1, 2])
        ledger.set_schedulable("b1-l0-n1", False)
        ledger.update_node(gpu_node("b0-l0-n0", "b1-l7", used=(7,)))
        ledger.add_node(gpu_node("new", "b9-l0"))
        lost = ledger.remove_node("b0-l1-n0")
        assert ledger.verify() == []
        raise RuntimeError("binding failed")
    assert lost == () or all(p.gang_id in {"x", "keep"} for p in lost)
    assert snapshot(ledger) == before
    assert "new" not in ledger
    assert ledger.verify() == []


def test_nested_transactions_commit_and_roll_back_separately() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    outer = ledger.begin()
    ledger.reserve(placed(place_gang(ledger, GangRequest("a", 1, 8))))
    after_a = snapshot(ledger)
    inner = ledger.begin()
    ledger.reserve(placed(place_gang(ledger, GangRequest("b", 1, 8))))
    with pytest.raises(TransactionError):
        outer.commit()  # the inner one is still open
    inner.rollback()
    assert snapshot(ledger) == after_a
    outer.commit()
    with pytest.raises(TransactionError):
        outer.rollback()
    assert ledger.gangs() == ["a"]


def test_node_changes_keep_reservations() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    ledger.reserve(placed(place_gang(ledger, GangRequest("a", 2, 4))))
    node = ledger.gang_pods("a")[0].node
    # A relabel moves the node (and its reservations) to another leaf.
    assert ledger.node_view(node).domain[LEAF] != "b0-l1"
    ledger.update_node(gpu_node(node, "b0-l1"))
    assert ledger.node_view(node).domain[LEAF] == "b0-l1"
    assert ledger.node_view(node).free_gpus == ()
    assert ledger.domain_stats(("b0", "b0-l1")).nodes == 4
    assert ledger.verify() == []
    lost = ledger.remove_node(node)
    assert [p.rank for p in lost] == [0, 1]
    assert ledger.gangs() == []
    with pytest.raises(UnknownNodeError):
        ledger.node_view(node)
    assert ledger.verify() == []


def test_foreign_usage_counts_and_comes_back() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    before = snapshot(ledger)
    marked = ledger.add_foreign_usage("ns/p", "b0-l0-n0", cpu_millis=1000, gpus=2)
    assert marked == (0, 1)
    assert ledger.node_view("b0-l0-n0").cpu_free_millis == 31_000
    # Re-adding the same key replaces it (level-based reconciliation).
    assert ledger.add_foreign_usage("ns/p", "b0-l0-n0", gpus=[5, 6]) == (5, 6)
    assert ledger.node_view("b0-l0-n0").free_gpus == (0, 1, 2, 3, 4, 7)
    assert ledger.remove_foreign_usage("ns/p") is True
    assert ledger.remove_foreign_usage("ns/p") is False
    assert snapshot(ledger) == before


def test_adopting_bound_pods_accepts_facts_reserve_would_refuse() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    ledger.set_schedulable("b0-l0-n0", False)
    ledger.set_unhealthy_gpus("b0-l0-n1", [0])
    ledger.add_foreign_usage("ns/other", "b0-l0-n2", gpus=[0, 1])
    labels = {BLOCK: "b0", LEAF: "b0-l0"}
    bound = [
        PodAssignment(0, "b0-l0-n0", (0, 1), labels, cpu_millis=40_000),  # cordoned, CPU over
        PodAssignment(1, "b0-l0-n1", (0, 1), labels),  # GPU 0 unhealthy
        PodAssignment(2, "b0-l0-n2", (1, 2), labels),  # GPU 1 also counted by a foreign pod
    ]
    with pytest.raises(ReservationError):
        ledger.reserve_pods("g", bound)
    ledger.adopt_pods("g", bound)
    assert [p.rank for p in ledger.gang_pods("g")] == [0, 1, 2]
    assert ledger.node_view("b0-l0-n0").cpu_free_millis == 0
    assert ledger.node_view("b0-l0-n1").free_gpus == (2, 3, 4, 5, 6, 7)
    ledger.remove_foreign_usage("ns/other")
    assert ledger.node_view("b0-l0-n2").free_gpus == (0, 3, 4, 5, 6, 7)  # GPU 1 still ours
    ledger.adopt_pods("g", [PodAssignment(2, "b0-l0-n2", (5,), labels)])  # seen again: replaced
    assert ledger.node_view("b0-l0-n2").free_gpus == (0, 1, 2, 3, 4, 6, 7)
    assert ledger.verify() == []
    before = snapshot(ledger)
    with pytest.raises(ReservationError, match="has no GPU"):
        ledger.adopt_pods("h", [PodAssignment(0, "b1-l0-n0", (0,), labels),
                                PodAssignment(1, "b1-l0-n1", (9,), labels)])  # fmt: skip
    assert snapshot(ledger) == before
    with pytest.raises(UnknownNodeError):
        ledger.adopt_pods("h", [PodAssignment(0, "b1-l0-n0", (0,), labels),
                                PodAssignment(1, "gone", (0,), labels)])  # fmt: skip
    assert snapshot(ledger) == before
    with pytest.raises(ValueError, match="no GPU 8"):
        ledger.add_foreign_usage("ns/p", "b0-l0-n2", gpus=[8])
    assert snapshot(ledger) == before


def test_health_and_cordon_change_what_is_free() -> None:
    ledger = ClusterLedger(Topology(), small_cluster())
    ledger.set_unhealthy_gpus("b0-l0-n0", [0])
    ledger.set_schedulable("b0-l0-n1", False)
    leaf = ledger.domain_stats(("b0", "b0-l0"))
    assert (leaf.nodes, leaf.free_gpus, leaf.whole_free_nodes) == (2, 15, 1)
    with pytest.raises(ValueError, match="no GPU 8"):
        ledger.set_unhealthy_gpus("b0-l0-n0", [8])


@dataclass
class Shadow:
    """A brute-force model of the cluster, updated by the test alone."""

    leaf: dict[str, str]
    model: dict[str, str]
    used: dict[str, set[int]]
    cpu: dict[str, int] = field(default_factory=dict)
    unhealthy: dict[str, set[int]] = field(default_factory=dict)
    cordoned: set[str] = field(default_factory=set)
    gangs: dict[str, list[tuple[str, tuple[int, ...], int]]] = field(default_factory=dict)
    foreign: dict[str, tuple[str, tuple[int, ...], int]] = field(default_factory=dict)

    def copy(self) -> Shadow:
        return Shadow(
            leaf=dict(self.leaf),
            model=dict(self.model),
            used={k: set(v) for k, v in self.used.items()},
            cpu=dict(self.cpu),
            unhealthy={k: set(v) for k, v in self.unhealthy.items()},
            cordoned=set(self.cordoned),
            gangs={k: list(v) for k, v in self.gangs.items()},
            foreign=dict(self.foreign),
        )

    def cpu_free(self, node: str) -> int:
        return max(0, 32_000 - self.cpu.get(node, 0))

    def free(self, node: str) -> tuple[int, ...]:
        if node in self.cordoned:
            return ()
        gone = self.used[node] | self.unhealthy.get(node, set())
        return tuple(i for i in range(8) if i not in gone)

    def expected(self, prefix: tuple[str, ...]) -> tuple[int, int, int, int, tuple[int, ...]]:
        hist = [0] * 9
        nodes = free_total = whole = cpu = 0
        for node, leaf in self.leaf.items():
            path = (leaf.split("-")[0], leaf)
            if path[: len(prefix)] != prefix or node in self.cordoned:
                continue
            free = len(self.free(node))
            nodes += 1
            free_total += free
            cpu += self.cpu_free(node)
            whole += free == 8
            hist[free] += 1
        while hist and hist[-1] == 0:
            hist.pop()
        return nodes, free_total, whole, cpu, tuple(hist)


def check_against_shadow(ledger: ClusterLedger, shadow: Shadow) -> None:
    assert ledger.verify() == []
    for node in shadow.leaf:
        view = ledger.node_view(node)
        assert (view.free_gpus, view.cpu_free_millis) == (shadow.free(node), shadow.cpu_free(node))
    paths = [(), *ledger.domain_paths(BLOCK), *ledger.domain_paths(LEAF)]
    expected_paths = {()} | {
        p
        for leaf in shadow.leaf.values()
        for p in ((leaf.split("-")[0],), (leaf.split("-")[0], leaf))
    }
    assert set(paths) == expected_paths
    for path in paths:
        got = ledger.domain_stats(path)
        assert (
            got.nodes,
            got.free_gpus,
            got.whole_free_nodes,
            got.free_cpu_millis,
            got.free_histogram,
        ) == shadow.expected(path), path
    assert sorted(ledger.gangs()) == sorted(shadow.gangs)


def random_step(rng: random.Random, ledger: ClusterLedger, shadow: Shadow, step: int) -> None:
    nodes = sorted(shadow.leaf)
    action = rng.choice(
        ["place", "place", "place", "release", "release_pod", "foreign", "unforeign",
         "health", "cordon", "relabel", "bad_reserve", "rollback"]
    )  # fmt: skip
    if action == "place":
        gang = GangRequest(
            f"g{step}",
            rng.choice([1, 1, 2, 3, 5]),
            rng.choice([1, 2, 4, 8]),
            cpu_millis_per_pod=rng.choice([0, 0, 2000, 9000]),
        )
        result = place_gang(ledger, gang)
        if isinstance(result, Placement):
            ledger.reserve(result)
            shadow.gangs[gang.gang_id] = []
            for pod in result.assignments:
                assert set(pod.gpu_indices) <= set(shadow.free(pod.node))
                assert pod.cpu_millis <= shadow.cpu_free(pod.node)
                shadow.used[pod.node] |= set(pod.gpu_indices)
                shadow.cpu[pod.node] = shadow.cpu.get(pod.node, 0) + pod.cpu_millis
                shadow.gangs[gang.gang_id].append((pod.node, pod.gpu_indices, pod.cpu_millis))
    elif action == "release" and shadow.gangs:
        gang_id = rng.choice(sorted(shadow.gangs))
        assert ledger.release_gang(gang_id) == len(shadow.gangs[gang_id])
        for node, gpus, cpu in shadow.gangs.pop(gang_id):
            shadow.used[node] -= set(gpus)
            shadow.cpu[node] -= cpu
    elif action == "release_pod" and shadow.gangs:
        gang_id = rng.choice(sorted(shadow.gangs))
        held = rng.choice(ledger.gang_pods(gang_id))
        assert ledger.release_pod(gang_id, held.rank)
        shadow.used[held.node] -= set(held.gpu_indices)
        shadow.cpu[held.node] -= held.cpu_millis
        shadow.gangs[gang_id].remove((held.node, held.gpu_indices, held.cpu_millis))
        if not shadow.gangs[gang_id]:
            del shadow.gangs[gang_id]
    elif action == "foreign":
        key, node = f"f{step}", rng.choice(nodes)
        before = set(range(8)) - shadow.used[node] - shadow.unhealthy.get(node, set())
        cpu = rng.choice([0, 500, 40_000])  # a fact may exceed allocatable
        marked = ledger.add_foreign_usage(key, node, cpu_millis=cpu, gpus=rng.randint(0, 3))
        assert set(marked) <= before
        shadow.used[node] |= set(marked)
        shadow.cpu[node] = shadow.cpu.get(node, 0) + cpu
        shadow.foreign[key] = (node, marked, cpu)
    elif action == "unforeign" and shadow.foreign:
        key = rng.choice(sorted(shadow.foreign))
        node, marked, cpu = shadow.foreign.pop(key)
        assert ledger.remove_foreign_usage(key)
        shadow.used[node] -= set(marked)
        shadow.cpu[node] -= cpu
    elif action == "health":
        node = rng.choice(nodes)
        bad = set(rng.sample(range(8), rng.choice([0, 0, 1, 2])))
        ledger.set_unhealthy_gpus(node, bad)
        shadow.unhealthy[node] = bad
    elif action == "cordon":
        node = rng.choice(nodes)
        flag = node in shadow.cordoned
        ledger.set_schedulable(node, flag)
        shadow.cordoned ^= {node}
    elif action == "relabel":
        node = rng.choice(nodes)
        leaf = rng.choice(["b0-l0", "b0-l1", "b1-l0", "b3-l0"])
        ledger.update_node(
            gpu_node(
                node,
                leaf,
                model=shadow.model[node],
                unhealthy=shadow.unhealthy.get(node, ()),
                schedulable=node not in shadow.cordoned,
            )
        )
        shadow.leaf[node] = leaf
    elif action == "bad_reserve":
        node = rng.choice(nodes)
        busy = shadow.used[node] | shadow.unhealthy.get(node, set())
        if busy or node in shadow.cordoned:
            gpu = min(busy) if busy else 0
            with pytest.raises(ReservationError):
                ledger.reserve_pods(f"bad{step}", [PodAssignment(0, node, (gpu,), {})])
    elif action == "rollback":
        scratch = shadow.copy()  # what the steps do, thrown away with them
        with ledger.begin() as tx:
            for inner in range(3):
                random_step(rng, ledger, scratch, 1000 * (step + 1) + inner)
            tx.rollback()


@pytest.mark.parametrize("seed", range(12))
def test_random_sequences_keep_indexes_equal_to_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    nodes = small_cluster()
    ledger = ClusterLedger(Topology(), nodes)
    shadow = Shadow(
        leaf={n.name: n.labels[LEAF] for n in nodes},
        model={n.name: n.gpu_model or "" for n in nodes},
        used={n.name: set() for n in nodes},
    )
    for step in range(150):
        random_step(rng, ledger, shadow, step)
        check_against_shadow(ledger, shadow)
