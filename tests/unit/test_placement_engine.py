"""Placement decisions on hand-made topologies whose best answers are known."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import Interconnect
from egpu.domain.node import Node
from egpu.domain.placement import Placement, Unschedulable, UnschedulableReason
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, place_gang

pytestmark = pytest.mark.unit

BLOCK, LEAF, HOST = "egpu.io/block", "egpu.io/leaf", "kubernetes.io/hostname"
GIB = 2**30
TWO_GROUPS = ((0, 1, 2, 3), (4, 5, 6, 7))


def gpu_node(
    name: str,
    leaf: str = "b0-l0",
    *,
    used: Iterable[int] = (),
    unhealthy: Iterable[int] = (),
    gpus: int = 8,
    groups: Sequence[Sequence[int]] = TWO_GROUPS,
    numa: Sequence[int] | None = None,
    model: str = "H100",
    cpu: int = 64_000,
    mem: int = 512 * GIB,
    schedulable: bool = True,
) -> Node:
    return Node(
        name=name,
        labels={BLOCK: leaf.split("-")[0], LEAF: leaf, HOST: name},
        cpu_millis=cpu,
        memory_bytes=mem,
        gpu_count=gpus,
        gpu_model=model,
        unhealthy_gpus=frozenset(unhealthy),
        interconnect=Interconnect(
            tuple(tuple(g) for g in groups),
            tuple(numa) if numa is not None else tuple(i * 2 // gpus for i in range(gpus)),
        ),
        schedulable=schedulable,
        used_gpus=frozenset(used),
    )


def leaves(shape: dict[str, int], used: Mapping[str, Iterable[int]] | None = None) -> list[Node]:
    """Nodes `<leaf>-n<i>` for each leaf; `used` marks GPUs busy on named nodes."""
    used = used or {}
    return [
        gpu_node(f"{leaf}-n{i}", leaf, used=used.get(f"{leaf}-n{i}", ()))
        for leaf, count in shape.items()
        for i in range(count)
    ]


def ledger_of(nodes: list[Node]) -> ClusterLedger:
    return ClusterLedger(Topology(), nodes)


def placed(result: object) -> Placement:
    assert isinstance(result, Placement), getattr(result, "message", result)
    return result


ALL = range(8)


# Each case: the cluster, the gang, the level it must land at and the nodes it must use.
CASES = [
    pytest.param(
        {"b0-l0": 2}, {"n": 1, "g": 4}, HOST, {"b0-l0-n0"}, id="single-pod-first-node-by-name"
    ),
    pytest.param(
        {"b0-l0": 3},
        {"n": 2, "g": 4},
        HOST,
        {"b0-l0-n0"},
        id="two-pods-share-one-node-when-they-fit",
    ),
    pytest.param(
        {"b0-l0": 3, "b0-l1": 5},
        {"n": 3, "g": 8},
        LEAF,
        {"b0-l0-n0", "b0-l0-n1", "b0-l0-n2"},
        id="best-fit-leaf-is-the-tightest-one",
    ),
    pytest.param(
        {"b0-l0": 2, "b0-l1": 2, "b1-l0": 4},
        {"n": 4, "g": 8},
        LEAF,
        {"b1-l0-n0", "b1-l0-n1", "b1-l0-n2", "b1-l0-n3"},
        id="a-leaf-that-holds-it-beats-a-block",
    ),
]


@pytest.mark.parametrize(("shape", "gang", "level", "nodes"), CASES)
def test_smallest_domain_best_fit(
    shape: dict[str, int], gang: dict[str, int], level: str, nodes: set[str]
) -> None:
    ledger = ledger_of(leaves(shape))
    result = placed(place_gang(ledger, GangRequest("g", gang["n"], gang["g"])))
    assert result.level == level
    assert {a.node for a in result.assignments} == nodes


def test_spanning_two_leaves_placed_when_preferred_refused_when_required() -> None:
    # Leaves of 3 and 2 free nodes; the gang of 4 whole nodes fits only across both.
    nodes = leaves({"b0-l0": 3, "b0-l1": 2})
    ledger = ledger_of(nodes)
    preferred = placed(place_gang(ledger, GangRequest("g", 4, 8, preferred_level=LEAF)))
    assert preferred.level == BLOCK
    assert preferred.domain == {BLOCK: "b0"}
    assert preferred.preferred_met is False
    assert len({a.domain[LEAF] for a in preferred.assignments}) == 2
    # The roomier leaf is taken whole first, so the gang spans as few leaves as it can.
    assert [a.domain[LEAF] for a in preferred.assignments].count("b0-l0") == 3

    required = place_gang(ledger, GangRequest("g", 4, 8, required_level=LEAF, gpu_model="H100"))
    assert isinstance(required, Unschedulable)
    assert required.reason is UnschedulableReason.REQUIRED_LEVEL
    assert required.message == (
        "no egpu.io/leaf domain has 32 free GPUs of model H100 for 4 pods x 8 GPUs; "
        "best has 24 (b0-l0)"
    )
    by_level = {d.level: d for d in required.levels}
    assert list(by_level) == [HOST, LEAF]
    assert (by_level[LEAF].best_domain, by_level[LEAF].best_pods) == ("b0-l0", 3)
    assert by_level[LEAF].best_path == ("b0", "b0-l0")
    assert by_level[HOST].best_pods == 1


def test_preferred_met_and_no_constraint_behave_alike() -> None:
    ledger = ledger_of(leaves({"b0-l0": 4, "b0-l1": 2}))
    plain = placed(place_gang(ledger, GangRequest("g", 2, 8)))
    hinted = placed(place_gang(ledger, GangRequest("g", 2, 8, preferred_level=LEAF)))
    assert plain.assignments == hinted.assignments
    assert plain.level == LEAF
    assert hinted.preferred_met is True
    assert plain.preferred_met is None


def test_required_level_accepts_a_smaller_domain() -> None:
    ledger = ledger_of(leaves({"b0-l0": 2}))
    result = placed(place_gang(ledger, GangRequest("g", 2, 2, required_level=BLOCK)))
    assert result.level == HOST


def test_cluster_level_when_no_block_holds_it() -> None:
    ledger = ledger_of(leaves({"b0-l0": 2, "b1-l0": 2}))
    result = placed(place_gang(ledger, GangRequest("g", 3, 8)))
    assert result.level == "cluster"
    assert result.domain == {}
    refused = place_gang(ledger, GangRequest("g", 3, 8, required_level=BLOCK))
    assert isinstance(refused, Unschedulable)
    assert "no egpu.io/block domain has 24 free GPUs" in refused.message


@pytest.mark.parametrize(
    ("used", "pod_gpus", "expected"),
    [
        ((), 4, (0, 1, 2, 3)),  # a whole group when one is free
        ((0,), 4, (4, 5, 6, 7)),  # the group that is still whole
        ((0,), 2, (1, 2)),  # best fit: the broken group, keeping 4-7 whole
        ((0, 4), 3, (1, 2, 3)),  # best fit among two groups with three free
        ((0, 1, 4, 5), 4, (2, 3, 6, 7)),  # no group holds 4: both halves, nothing better
    ],
)
def test_gpus_inside_a_node_follow_nvlink_groups(
    used: tuple[int, ...], pod_gpus: int, expected: tuple[int, ...]
) -> None:
    ledger = ledger_of([gpu_node("n0", used=used)])
    result = placed(place_gang(ledger, GangRequest("g", 1, pod_gpus)))
    assert result.assignments[0].gpu_indices == expected


def test_gpus_stay_on_one_numa_node_when_no_group_holds_the_pod() -> None:
    # Four NVLink pairs; NUMA 0 = GPUs 0-3, NUMA 1 = GPUs 4-7.
    pairs = ((0, 1), (2, 3), (4, 5), (6, 7))
    node = gpu_node("n0", used=(0, 4, 5), groups=pairs, numa=(0, 0, 0, 0, 1, 1, 1, 1))
    result = placed(place_gang(ledger_of([node]), GangRequest("g", 1, 3)))
    assert result.assignments[0].gpu_indices == (1, 2, 3)


def test_four_gpu_pods_get_whole_groups_on_a_shared_node() -> None:
    result = placed(place_gang(ledger_of([gpu_node("n0")]), GangRequest("g", 2, 4)))
    assert [a.gpu_indices for a in result.assignments] == [(0, 1, 2, 3), (4, 5, 6, 7)]


def test_a_node_whose_free_gpus_form_a_group_is_preferred() -> None:
    # Both nodes have 4 free GPUs; only n1's four are one NVLink group.
    nodes = [gpu_node("n0", used=(0, 1, 4, 5)), gpu_node("n1", used=(0, 1, 2, 3))]
    result = placed(place_gang(ledger_of(nodes), GangRequest("g", 1, 4)))
    assert result.assignments[0].node == "n1"


def test_keeping_a_pod_in_one_nvlink_group_outranks_a_tighter_count() -> None:
    # n0 is the tightest fit (4 free) but only as 2 + 2 across its groups; n1 has 5
    # free, among them the whole group 4-7.
    nodes = [gpu_node("n0", used=(0, 1, 4, 5)), gpu_node("n1", used=(0, 1, 2))]
    result = placed(place_gang(ledger_of(nodes), GangRequest("g", 1, 4)))
    assert (result.assignments[0].node, result.assignments[0].gpu_indices) == (
        "n1",
        (4, 5, 6, 7),
    )
    # Two pods that fit one node: the node that gives each a group of its own wins.
    nodes = [
        gpu_node("n0", used=(0, 1)),  # 6 free, 2 + 4: only one pod of 3 fits a group
        gpu_node("n1", used=(0,)),  # 7 free, 3 + 4: each pod of 3 gets a group
    ]
    result = placed(place_gang(ledger_of(nodes), GangRequest("g", 2, 3)))
    assert {a.node for a in result.assignments} == {"n1"}


def test_best_fit_still_decides_when_no_node_keeps_the_pod_in_one_group() -> None:
    # Both split a 4-GPU pod; the tighter one is taken, as before.
    nodes = [gpu_node("n0", used=(0, 1, 4, 5)), gpu_node("n1", used=(0, 1, 4))]
    result = placed(place_gang(ledger_of(nodes), GangRequest("g", 1, 4)))
    assert result.assignments[0].node == "n0"
    # 8-GPU pods never fit one group of 4: nothing changes for them.
    nodes = [gpu_node("n0"), gpu_node("n1", gpus=8)]
    result = placed(place_gang(ledger_of(nodes), GangRequest("g", 1, 8)))
    assert result.assignments[0].node == "n0"


def test_a_gang_in_a_leaf_prefers_a_node_that_keeps_each_pod_in_a_group() -> None:
    # A leaf whose tightest single node splits the pod, and another node that does not.
    nodes = [
        gpu_node("a", "b0-l0", used=(0, 1, 4, 5)),
        gpu_node("b", "b0-l0", used=(0, 1, 2)),
        gpu_node("c", "b0-l1", used=range(8)),
    ]
    result = placed(place_gang(ledger_of(nodes), GangRequest("g", 1, 4, required_level=LEAF)))
    assert result.assignments[0].node == "b"


def test_unhealthy_gpus_and_unschedulable_nodes_are_never_chosen() -> None:
    nodes = [
        gpu_node("n0", unhealthy=(0, 1, 2, 5)),
        gpu_node("n1", schedulable=False),
        gpu_node("n2", used=range(6)),
    ]
    ledger = ledger_of(nodes)
    result = placed(place_gang(ledger, GangRequest("g", 3, 2)))
    chosen = {(a.node, i) for a in result.assignments for i in a.gpu_indices}
    assert chosen == {("n2", 6), ("n2", 7), ("n0", 6), ("n0", 7), ("n0", 3), ("n0", 4)}
    refused = place_gang(ledger, GangRequest("g2", 1, 8))
    assert isinstance(refused, Unschedulable)
    assert refused.reason is UnschedulableReason.INSUFFICIENT_CAPACITY


def first_fit(nodes: list[Node], pods: int, gpus: int, free: dict[str, int]) -> list[str] | None:
    """The naive baseline: each pod on the first node by name with room."""
    trial = dict(free)
    chosen = []
    for _ in range(pods):
        target = next((n.name for n in nodes if trial[n.name] >= gpus), None)
        if target is None:
            return None
        trial[target] -= gpus
        chosen.append(target)
    free.update(trial)
    return chosen


def test_best_fit_keeps_a_leaf_whole_where_first_fit_strands_it() -> None:
    # b0-l0 is empty (4 nodes); b0-l1 has exactly 2 free nodes.
    busy = {"b0-l1-n0": ALL, "b0-l1-n1": ALL}
    nodes = leaves({"b0-l0": 4, "b0-l1": 4}, busy)
    ledger = ledger_of(nodes)
    small, big = GangRequest("small", 2, 8), GangRequest("big", 4, 8)

    first = placed(place_gang(ledger, small))
    assert {a.domain[LEAF] for a in first.assignments} == {"b0-l1"}
    ledger.reserve(first)
    second = placed(place_gang(ledger, big))
    assert second.level == LEAF
    assert {a.domain[LEAF] for a in second.assignments} == {"b0-l0"}

    # First fit puts the small gang into the first (empty) leaf; the big one then
    # finds no leaf with 4 free nodes and has to straddle two.
    free = {n.name: len(n.free_gpus) for n in nodes}
    assert first_fit(nodes, 2, 8, free) == ["b0-l0-n0", "b0-l0-n1"]
    leaves_used = {name.rsplit("-", 1)[0] for name in first_fit(nodes, 4, 8, free) or []}
    assert leaves_used == {"b0-l0", "b0-l1"}


def test_best_fit_node_fills_holes_where_first_fit_strands_a_whole_node() -> None:
    nodes = [gpu_node("n0"), gpu_node("n1", used=range(6))]
    ledger = ledger_of(nodes)
    small = placed(place_gang(ledger, GangRequest("small", 1, 2)))
    assert small.assignments[0].node == "n1"
    ledger.reserve(small)
    assert ledger.stranded_gpus() == 0
    assert isinstance(place_gang(ledger, GangRequest("big", 1, 8)), Placement)

    free = {n.name: len(n.free_gpus) for n in nodes}
    assert first_fit(nodes, 1, 2, free) == ["n0"]
    assert first_fit(nodes, 1, 8, free) is None  # 6 + 2 free GPUs, stranded


def test_rank_order_is_depth_first_over_the_topology() -> None:
    # Two blocks, two leaves each, two nodes per leaf; the gang needs 14 pods of 4 GPUs.
    nodes = leaves({"b0-l0": 2, "b0-l1": 2, "b1-l0": 2, "b1-l1": 2})
    ledger = ledger_of(nodes)
    result = placed(place_gang(ledger, GangRequest("g", 14, 4)))
    assert result.level == "cluster"
    ranks = [a.rank for a in result.assignments]
    assert ranks == list(range(14))
    for key in (BLOCK, LEAF, HOST):
        seen: list[str] = []
        for a in result.assignments:
            if not seen or seen[-1] != a.domain[key]:
                assert a.domain[key] not in seen, f"{key} {a.domain[key]} is not contiguous"
                seen.append(a.domain[key])
    # Pods sharing a node are neighbours and take one NVLink group each.
    first_node = [a for a in result.assignments if a.node == result.assignments[0].node]
    assert [a.rank for a in first_node] == [0, 1]
    assert [a.gpu_indices for a in first_node] == [(0, 1, 2, 3), (4, 5, 6, 7)]


def test_ranks_follow_natural_name_order() -> None:
    nodes = [gpu_node(f"n{i}") for i in (10, 2, 1)]
    result = placed(place_gang(ledger_of(nodes), GangRequest("g", 3, 8)))
    assert [a.node for a in result.assignments] == ["n1", "n2", "n10"]


def test_cpu_and_memory_are_counted_per_node() -> None:
    nodes = [gpu_node("n0", cpu=4000), gpu_node("n1", mem=8 * GIB), gpu_node("n2")]
    ledger = ledger_of(nodes)
    request = GangRequest("g", 1, 8, cpu_millis_per_pod=8000, memory_bytes_per_pod=64 * GIB)
    assert placed(place_gang(ledger, request)).assignments[0].node == "n2"
    two = GangRequest("g", 2, 8, cpu_millis_per_pod=8000, memory_bytes_per_pod=64 * GIB)
    refused = place_gang(ledger, two)
    assert isinstance(refused, Unschedulable)
    assert refused.message.endswith("(each pod also needs 8 CPU and 64Gi memory)")
    assert refused.levels[-1].best_pods == 1


def test_gpu_model_selects_nodes() -> None:
    nodes = [gpu_node("a0", model="A100"), gpu_node("h0", model="H100")]
    ledger = ledger_of(nodes)
    result = placed(place_gang(ledger, GangRequest("g", 1, 8, gpu_model="H100")))
    assert result.assignments[0].node == "h0"
    missing = place_gang(ledger, GangRequest("g", 1, 1, gpu_model="L40S"))
    assert isinstance(missing, Unschedulable)
    assert missing.reason is UnschedulableReason.NO_MATCHING_NODES
    assert missing.message == "no schedulable node has GPUs of model L40S"


def test_unknown_level_is_an_invalid_request() -> None:
    result = place_gang(ledger_of(leaves({"b0-l0": 1})), GangRequest("g", 1, 1, required_level="x"))
    assert isinstance(result, Unschedulable)
    assert result.reason is UnschedulableReason.INVALID_REQUEST
    assert "'x'" in result.message


@pytest.mark.parametrize(
    ("min_members", "required", "expected"),
    [
        (None, None, None),  # all or nothing: refused
        (3, None, 5),  # most that fit anywhere: 3 + 2 across both leaves
        (3, LEAF, 3),  # most that fit in one leaf
        (4, LEAF, None),  # one leaf holds only 3 < 4
    ],
)
def test_partial_gangs_get_the_most_pods_that_fit(
    min_members: int | None, required: str | None, expected: int | None
) -> None:
    ledger = ledger_of(leaves({"b0-l0": 3, "b0-l1": 2}))
    request = GangRequest("g", 8, 8, min_members=min_members, required_level=required)
    result = place_gang(ledger, request)
    if expected is None:
        assert isinstance(result, Unschedulable)
        return
    result = placed(result)
    assert result.partial
    assert len(result.assignments) == expected
    assert result.requested_pods == 8


def test_the_decision_changes_nothing() -> None:
    ledger = ledger_of(leaves({"b0-l0": 2}))
    before = ledger.domain_stats(())
    placed(place_gang(ledger, GangRequest("g", 2, 8)))
    assert ledger.domain_stats(()) == before


def test_topology_without_hostname_level_and_missing_labels() -> None:
    nodes = [
        gpu_node("n0"),
        Node("lone", {}, 64_000, 512 * GIB, gpu_count=8, gpu_model="H100"),
    ]
    ledger = ClusterLedger(Topology((BLOCK, LEAF)), nodes)
    # A node without labels is a domain of its own: no block holds both nodes.
    refused = place_gang(ledger, GangRequest("g", 2, 8, required_level=BLOCK))
    assert isinstance(refused, Unschedulable)
    assert refused.levels[-1].best_pods == 1
    result = placed(place_gang(ledger, GangRequest("g", 2, 8)))
    assert result.level == "cluster"
    lone = next(a for a in result.assignments if a.node == "lone")
    assert lone.domain == {BLOCK: "<unlabelled:lone>", LEAF: "<unlabelled:lone>", HOST: "lone"}


@pytest.mark.parametrize("levels", [(), (HOST,)])
def test_a_flat_topology_still_places_and_diagnoses(levels: tuple[str, ...]) -> None:
    ledger = ClusterLedger(Topology(levels), [gpu_node("n0"), gpu_node("n1", used=range(4))])
    result = placed(place_gang(ledger, GangRequest("g", 3, 4)))
    assert result.level == "cluster"
    assert sorted(a.node for a in result.assignments) == ["n0", "n0", "n1"]
    one = placed(place_gang(ledger, GangRequest("g", 1, 4)))
    assert (one.level, one.assignments[0].node) == (HOST, "n1")
    refused = place_gang(ledger, GangRequest("g", 2, 8, required_level=HOST))
    assert isinstance(refused, Unschedulable)
    assert refused.message.endswith("best has 8 (n0)")
    assert [d.level for d in refused.levels] == [HOST]


def test_within_keeps_the_rest_of_a_gang_in_its_members_domain() -> None:
    """The last members of a partly bound gang go where the first ones are, or wait."""
    from egpu.domain.gang import GangRequest as Request
    from egpu.domain.node import node_from_kubernetes
    from egpu.domain.placement import Placement as Placed
    from egpu.domain.placement import Unschedulable as Refused
    from egpu.domain.topology import Topology as Topo
    from egpu.engines.placement import ClusterLedger as Ledger
    from egpu.engines.placement import place_gang as place
    from egpu.sim.nodes import ClusterShape, node_manifests

    nodes = [
        node_from_kubernetes(
            m["metadata"]["name"],
            m["metadata"]["labels"],
            m["metadata"]["annotations"],
            m["status"]["allocatable"],
        )
        for m in node_manifests(ClusterShape(blocks=1, leaves_per_block=2, nodes_per_leaf=2))
    ]
    ledger = Ledger(Topo(), nodes)
    # Both leaves are equally good for two 8-GPU pods; pinned, they go to b0-l1.
    pinned = place(
        ledger, Request("g", 2, 8, required_level="egpu.io/leaf", within=("b0", "b0-l1"))
    )
    assert isinstance(pinned, Placed)
    assert {a.domain["egpu.io/leaf"] for a in pinned.assignments} == {"b0-l1"}
    # A pinned leaf that is too small refuses instead of spilling elsewhere.
    too_many = place(
        ledger, Request("g", 3, 8, required_level="egpu.io/leaf", within=("b0", "b0-l0"))
    )
    assert isinstance(too_many, Refused)
    gone = place(ledger, Request("g", 1, 8, within=("b9", "b9-l9")))
    assert isinstance(gone, Refused) and "no longer exists" in gone.message


def test_headroom_is_asked_of_the_node_but_not_reserved() -> None:
    # n0 has 10Gi of memory, n1 64Gi: a 4Gi pod with 8Gi of
    # headroom fits only on n1, and the ledger then holds just its 4Gi.
    nodes = [gpu_node("n0", mem=10 * GIB), gpu_node("n1", mem=64 * GIB)]
    ledger = ledger_of(nodes)
    plain = GangRequest("plain", 1, 4, memory_bytes_per_pod=4 * GIB)
    roomy = GangRequest("roomy", 1, 4, memory_bytes_per_pod=4 * GIB, memory_headroom_bytes=8 * GIB)
    assert placed(place_gang(ledger, plain)).assignments[0].node == "n0"  # best fit
    result = placed(place_gang(ledger, roomy))
    assert [(a.node, a.memory_bytes) for a in result.assignments] == [("n1", 4 * GIB)]
    cpu_roomy = GangRequest("c", 1, 4, cpu_millis_per_pod=1000, cpu_headroom_millis=64_000)
    refused = place_gang(ledger, cpu_roomy)
    assert isinstance(refused, Unschedulable)
    assert "resize headroom included" in refused.message


def test_negative_headroom_is_refused() -> None:
    with pytest.raises(ValueError, match="headroom must not be negative"):
        GangRequest("g", 1, 1, memory_headroom_bytes=-1)
