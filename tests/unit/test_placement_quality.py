"""Placement choices with a known best answer: wiring before count, fragmentation,
spanning the fewest domains at every level."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import Interconnect
from egpu.domain.node import Node
from egpu.domain.placement import Placement
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, place_gang

pytestmark = pytest.mark.unit

BLOCK, LEAF, HOST = "egpu.io/block", "egpu.io/leaf", "kubernetes.io/hostname"
TWO_GROUPS = ((0, 1, 2, 3), (4, 5, 6, 7))
PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7))
NUMA_HALVES = (0, 0, 0, 0, 1, 1, 1, 1)
FULL = range(8)


def node(
    name: str,
    leaf: str = "b0-l0",
    used: Iterable[int] = (),
    groups: Sequence[Sequence[int]] = TWO_GROUPS,
    numa: Sequence[int] = NUMA_HALVES,
) -> Node:
    return Node(
        name=name,
        labels={BLOCK: leaf.split("-")[0], LEAF: leaf, HOST: name},
        cpu_millis=64_000,
        memory_bytes=512 * 2**30,
        gpu_count=8,
        gpu_model="H100",
        interconnect=Interconnect(tuple(tuple(g) for g in groups), tuple(numa)),
        used_gpus=frozenset(used),
    )


def place(nodes: list[Node], request: GangRequest) -> Placement:
    ledger = ClusterLedger(Topology(), nodes)
    result = place_gang(ledger, request)
    assert isinstance(result, Placement), getattr(result, "message", result)
    assert not ledger.verify()
    return result


def groups_spanned(gpus: tuple[int, ...], groups: Sequence[Sequence[int]] = TWO_GROUPS) -> int:
    return sum(any(g in group for g in gpus) for group in groups)


# -- 1. a pod inside one NVLink group, then one NUMA node, outranks a tighter count -------


def test_a_pod_kept_in_one_numa_node_outranks_a_tighter_count() -> None:
    # NVLink pairs only, so no node keeps a 3-GPU pod in one group. n0 is the tighter
    # fit (3 free) but across both NUMA nodes; n1 has 4 free, all on NUMA node 0.
    nodes = [
        node("n0", used=(0, 1, 2, 4, 5), groups=PAIRS),
        node("n1", used=(4, 5, 6, 7), groups=PAIRS),
    ]
    result = place(nodes, GangRequest("g", 1, 3))
    (pod,) = result.assignments
    assert pod.node == "n1"
    assert set(pod.gpu_indices) <= {0, 1, 2, 3}


def test_a_whole_group_is_found_however_many_tighter_nodes_split_the_pod() -> None:
    # The tightest node has 4 free GPUs as 2 + 2, 300 more have 5 as 2 + 3; only z,
    # with 6 free, keeps a 4-GPU pod inside one group.
    nodes = [node("a", used=(0, 1, 4, 5))]
    nodes += [node(f"b{i}", used=(0, 1, 4)) for i in range(300)]
    nodes.append(node("z", used=(0, 1)))
    result = place(nodes, GangRequest("g", 1, 4))
    (pod,) = result.assignments
    assert (pod.node, pod.gpu_indices) == ("z", (4, 5, 6, 7))


def test_among_equally_tight_nodes_the_one_that_keeps_a_whole_group_wins() -> None:
    # Both have 4 free GPUs. A 2-GPU pod on n0 (4 + 0 free) breaks its whole group; on
    # n1 (2 + 2 free) it fills a half group and breaks none.
    nodes = [node("n0", used=(4, 5, 6, 7)), node("n1", used=(0, 1, 4, 5))]
    result = place(nodes, GangRequest("g", 1, 2))
    assert (result.assignments[0].node, result.assignments[0].gpu_indices) == ("n1", (2, 3))


# -- 2. spreading a gang over nodes keeps pods inside NVLink groups -------------------------


def test_spreading_over_nodes_counts_pods_that_fit_inside_a_group() -> None:
    # No node takes both pods; a0, a1 have 4 free as 2 + 2, b0, b1 a whole group free.
    nodes = [
        node("a0", used=(0, 1, 4, 5)),
        node("a1", used=(0, 1, 4, 5)),
        node("b0", used=(0, 1, 2, 3)),
        node("b1", used=(0, 1, 2, 3)),
    ]
    result = place(nodes, GangRequest("g", 2, 4))
    assert {a.node for a in result.assignments} == {"b0", "b1"}
    assert all(groups_spanned(a.gpu_indices) == 1 for a in result.assignments)


def test_a_leaf_where_every_pod_keeps_its_group_outranks_a_tighter_leaf() -> None:
    # Leaf l0 is tighter (8 free) but only as 2 + 2 per node; l1 has two whole groups.
    nodes = [
        node("l0-n0", "b0-l0", used=(0, 1, 4, 5)),
        node("l0-n1", "b0-l0", used=(0, 1, 4, 5)),
        node("l1-n0", "b0-l1", used=(0, 1, 2, 3)),
        node("l1-n1", "b0-l1", used=(0, 1, 2)),
    ]
    result = place(nodes, GangRequest("g", 2, 4))
    assert result.level == LEAF
    assert all(groups_spanned(a.gpu_indices) == 1 for a in result.assignments)
    assert {a.domain[LEAF] for a in result.assignments} == {"b0-l1"}


def test_when_groups_cannot_hold_every_pod_as_many_as_can_keep_theirs() -> None:
    # Three pods of 4: only two whole groups exist (b0, b1); the third is split.
    nodes = [
        node("a0", used=(0, 1, 4, 5)),
        node("b0", used=(0, 1, 2, 3)),
        node("b1", used=(0, 1, 2, 3)),
    ]
    result = place(nodes, GangRequest("g", 3, 4))
    spans = sorted(groups_spanned(a.gpu_indices) for a in result.assignments)
    assert spans == [1, 1, 2]


# -- 3. fragmentation tie-break between equally tight domains ------------------------------


def test_equally_tight_leaves_the_one_that_keeps_whole_nodes_wins() -> None:
    # l0 has two whole nodes, l1 four half nodes (a free group each): both take four
    # pods of 4 with 16 free GPUs. l1 keeps the two whole nodes of l0 whole.
    nodes = [
        node("l0-n0", "b0-l0"),
        node("l0-n1", "b0-l0"),
        *(node(f"l0-n{i}", "b0-l0", used=FULL) for i in (2, 3)),
        *(node(f"l1-n{i}", "b0-l1", used=(0, 1, 2, 3)) for i in range(4)),
    ]
    result = place(nodes, GangRequest("g", 4, 4))
    assert result.level == LEAF
    assert {a.domain[LEAF] for a in result.assignments} == {"b0-l1"}


def test_equally_tight_leaves_the_one_that_keeps_whole_groups_wins() -> None:
    # Four pods of 2 GPUs, 8 free GPUs in each leaf and no node takes them all: in l0
    # each node has a whole group free (4 + 0), in l1 each has 2 + 2. Both hold the pods
    # inside groups; l1 does it without breaking a whole group.
    nodes = [
        *(node(f"l0-n{i}", "b0-l0", used=(4, 5, 6, 7)) for i in range(2)),
        *(node(f"l1-n{i}", "b0-l1", used=(0, 1, 4, 5)) for i in range(2)),
    ]
    result = place(nodes, GangRequest("g", 4, 2))
    assert result.level == LEAF
    assert {a.domain[LEAF] for a in result.assignments} == {"b0-l1"}
    assert all(groups_spanned(a.gpu_indices) == 1 for a in result.assignments)


# -- 4. spanning uses the fewest domains at every level -------------------------------------


def test_spanning_blocks_uses_the_fewest_leaves_not_the_roomiest_block() -> None:
    # b0 is the roomiest block (10 free nodes) but over five leaves; b1 has 8 free nodes
    # in one leaf, b2 6 in one leaf. 14 whole nodes fit only across two blocks: b1 + b2
    # needs two leaves, b0 + anything at least six.
    nodes = [
        *(node(f"b0-l{leaf}-n{i}", f"b0-l{leaf}") for leaf in range(5) for i in range(2)),
        *(node(f"b1-l0-n{i}", "b1-l0") for i in range(8)),
        *(node(f"b2-l0-n{i}", "b2-l0") for i in range(6)),
    ]
    result = place(nodes, GangRequest("g", 14, 8))
    assert result.level == "cluster"
    assert {a.domain[BLOCK] for a in result.assignments} == {"b1", "b2"}
    assert len({a.domain[LEAF] for a in result.assignments}) == 2


def test_spanning_leaves_takes_the_tightest_set_of_fewest_leaves() -> None:
    # Leaves with 5, 4, 3, 3 free nodes; 6 whole nodes need two leaves. The two leaves
    # of 3 hold exactly 6 and leave the leaves of 5 and 4 untouched.
    sizes = {"b0-l0": 5, "b0-l1": 4, "b0-l2": 3, "b0-l3": 3}
    nodes = [node(f"{leaf}-n{i}", leaf) for leaf, n in sizes.items() for i in range(n)]
    result = place(nodes, GangRequest("g", 6, 8))
    assert result.level == BLOCK
    assert {a.domain[LEAF] for a in result.assignments} == {"b0-l2", "b0-l3"}


def test_spanning_many_children_still_uses_the_fewest() -> None:
    # 40 leaves of 1..3 free nodes: 62 nodes need 21 leaves (the 20 of 3, one of 2), far
    # more sets than the search looks at; the greedy answer still uses the fewest.
    sizes = [3] * 20 + [2] * 10 + [1] * 10
    nodes = [
        node(f"b0-l{leaf}-n{i}", f"b0-l{leaf}") for leaf, n in enumerate(sizes) for i in range(n)
    ]
    result = place(nodes, GangRequest("g", 62, 8))
    assert len({a.domain[LEAF] for a in result.assignments}) == 21
