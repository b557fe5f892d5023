"""Filters and scores as kube-scheduler applies them, one by one, then inside whole
placement decisions: a refused node is never chosen, and the diagnosis counts it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import Interconnect
from egpu.domain.node import Node, node_from_kubernetes, parse_taints
from egpu.domain.placement import FilterReason, Placement, PodAssignment, Unschedulable
from egpu.domain.scheduling import (
    NodeConstraints,
    PreferredTerm,
    Requirement,
    SelectorTerm,
    Taint,
    Toleration,
    blocking_taint,
    host_port_key,
    untolerated_soft_taints,
)
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, ReservationError, place_gang
from egpu.engines.placement.filters import (
    node_affinity_filter,
    node_selector_filter,
    pod_count_filter,
    resource_filter,
    score_tiers,
    taint_filter,
)
from egpu.engines.placement.tree import NodeState

pytestmark = pytest.mark.unit

LEAF, HOST = "egpu.io/leaf", "kubernetes.io/hostname"
TOPOLOGY = Topology(levels=(LEAF, HOST))
BROKEN = Taint("gpu", "broken", "NoSchedule")


def node(
    name: str,
    leaf: str = "l0",
    *,
    labels: Mapping[str, str] | None = None,
    taints: tuple[Taint, ...] = (),
    max_pods: int | None = None,
    extended: Mapping[str, int] | None = None,
    gpus: int = 8,
) -> Node:
    return Node(
        name=name,
        labels={LEAF: leaf, HOST: name, **(labels or {})},
        cpu_millis=64_000,
        memory_bytes=512 * 2**30,
        gpu_count=gpus,
        gpu_model="H100",
        interconnect=Interconnect.unknown(gpus),
        taints=taints,
        max_pods=max_pods,
        extended=dict(extended or {}),
    )


def state(n: Node) -> NodeState:
    return NodeState(n)


def request(
    pods: int = 1,
    gpus: int = 8,
    *,
    constraints: NodeConstraints | None = None,
    extras: tuple[tuple[str, int], ...] = (),
    gang: str = "g",
) -> GangRequest:
    return GangRequest(
        gang,
        pods,
        gpus,
        constraints=(constraints,) if constraints else (),
        extras=extras,
    )


# -- taints and tolerations -----------------------------------------------------------


@pytest.mark.parametrize(
    ("toleration", "tolerates"),
    [
        (Toleration("gpu", "Equal", "broken", "NoSchedule"), True),
        (Toleration("gpu", "Equal", "broken"), True),  # no effect: every effect
        (Toleration("gpu", "Exists"), True),
        (Toleration("", "Exists"), True),  # no key with Exists: every taint
        (Toleration("gpu", "Equal", "fine", "NoSchedule"), False),
        (Toleration("gpu", "Equal", "broken", "NoExecute"), False),
        (Toleration("other", "Exists"), False),
        (Toleration("", "Equal", "broken"), False),  # no key needs Exists
    ],
)
def test_toleration_matching(toleration: Toleration, tolerates: bool) -> None:
    assert toleration.tolerates(BROKEN) is tolerates


def test_no_schedule_and_no_execute_block_prefer_no_schedule_only_scores() -> None:
    soft = Taint("spot", "", "PreferNoSchedule")
    hard = Taint("maint", "", "NoExecute")
    assert blocking_taint((soft,), ()) is None
    assert untolerated_soft_taints((soft,), ()) == 1
    assert blocking_taint((soft, hard), ()) == hard
    assert blocking_taint((hard,), (Toleration("maint", "Exists", "", "NoExecute"),)) is None
    assert untolerated_soft_taints((soft,), (Toleration("spot", "Exists"),)) == 0


def test_taint_filter_refuses_untolerated_taints_with_the_taint_named() -> None:
    tainted = state(node("n1", taints=(BROKEN,)))
    refused = taint_filter(request(), tainted)
    assert refused is not None
    assert (refused.reason, refused.detail) == (FilterReason.TAINT, "gpu=broken:NoSchedule")
    ok = NodeConstraints(tolerations=(Toleration("gpu", "Equal", "broken", "NoSchedule"),))
    assert taint_filter(request(constraints=ok), tainted) is None
    assert taint_filter(request(), state(node("n2"))) is None


def test_node_taints_are_read_from_the_kubernetes_spec() -> None:
    raw = [
        {"key": "gpu", "value": "broken", "effect": "NoSchedule"},
        {"key": "x", "effect": "NoExecute"},
    ]
    assert parse_taints(raw) == (BROKEN, Taint("x", "", "NoExecute"))
    with pytest.raises(ValueError, match="effect"):
        parse_taints([{"key": "gpu", "effect": "Sometimes"}])
    n = node_from_kubernetes(
        "n1", {}, {}, {"nvidia.com/gpu": "8", "pods": "110", "rdma/ib": "4"}, taints=raw
    )
    assert n.taints == (BROKEN, Taint("x", "", "NoExecute"))
    assert n.max_pods == 110
    assert n.extended == {"rdma/ib": 4}


# -- nodeSelector and node affinity -------------------------------------------------------


def test_node_selector_needs_every_label() -> None:
    ask = NodeConstraints(node_selector=(("pool", "train"), ("zone", "a")))
    both = state(node("n1", labels={"pool": "train", "zone": "a"}))
    one = state(node("n2", labels={"pool": "train", "zone": "b"}))
    assert node_selector_filter(request(constraints=ask), both) is None
    refused = node_selector_filter(request(constraints=ask), one)
    assert refused is not None
    assert (refused.reason, refused.detail) == (FilterReason.NODE_SELECTOR, "zone=a")


@pytest.mark.parametrize(
    ("requirement", "labels", "matches"),
    [
        (Requirement("pool", "In", ("a", "b")), {"pool": "b"}, True),
        (Requirement("pool", "In", ("a",)), {"pool": "b"}, False),
        (Requirement("pool", "In", ("a",)), {}, False),
        (Requirement("pool", "NotIn", ("a",)), {"pool": "b"}, True),
        (Requirement("pool", "NotIn", ("a",)), {}, True),
        (Requirement("pool", "NotIn", ("a",)), {"pool": "a"}, False),
        (Requirement("pool", "Exists"), {"pool": ""}, True),
        (Requirement("pool", "Exists"), {}, False),
        (Requirement("pool", "DoesNotExist"), {}, True),
        (Requirement("pool", "DoesNotExist"), {"pool": "a"}, False),
        (Requirement("gen", "Gt", ("3",)), {"gen": "4"}, True),
        (Requirement("gen", "Gt", ("3",)), {"gen": "3"}, False),
        (Requirement("gen", "Gt", ("3",)), {"gen": "x"}, False),
        (Requirement("gen", "Gt", ("3",)), {}, False),
        (Requirement("gen", "Lt", ("3",)), {"gen": "-1"}, True),
        (Requirement("gen", "Lt", ("3",)), {"gen": "3"}, False),
    ],
)
def test_every_match_expressions_operator(
    requirement: Requirement, labels: dict[str, str], matches: bool
) -> None:
    assert requirement.matches(labels) is matches


def test_requirements_the_api_would_refuse_are_refused() -> None:
    for bad in (("k", "Near", ()), ("k", "In", ()), ("k", "Exists", ("x",)), ("k", "Gt", ("a",))):
        with pytest.raises(ValueError):
            Requirement(*bad)
    with pytest.raises(ValueError, match=r"metadata\.name"):
        SelectorTerm(fields=(Requirement("spec.unschedulable", "In", ("true",)),))


def test_required_affinity_is_an_or_of_terms_each_an_and_and_match_fields_name_nodes() -> None:
    by_name = SelectorTerm(fields=(Requirement("metadata.name", "In", ("n3",)),))
    by_labels = SelectorTerm(
        expressions=(Requirement("pool", "In", ("train",)), Requirement("gen", "Gt", ("2",)))
    )
    ask = request(constraints=NodeConstraints(required=(by_labels, by_name)))
    assert (
        node_affinity_filter(ask, state(node("n1", labels={"pool": "train", "gen": "3"}))) is None
    )
    refused = node_affinity_filter(ask, state(node("n2", labels={"pool": "train", "gen": "2"})))
    assert refused is not None and refused.reason == FilterReason.NODE_AFFINITY
    assert node_affinity_filter(ask, state(node("n3"))) is None
    # An empty term matches nothing; no terms at all: no node.
    empty = request(constraints=NodeConstraints(required=(SelectorTerm(),)))
    assert node_affinity_filter(empty, state(node("n1"))) is not None


# -- resources and pod count ----------------------------------------------------------------


def test_pod_count_filter_refuses_a_node_with_no_pod_slot_left() -> None:
    ledger = ClusterLedger(TOPOLOGY, [node("n1", max_pods=1), node("n2")])
    assert pod_count_filter(request(), ledger.tree.nodes["n1"]) is None
    ledger.add_foreign_usage("other/pod", "n1")
    refused = pod_count_filter(request(), ledger.tree.nodes["n1"])
    assert refused is not None and refused.reason == FilterReason.TOO_MANY_PODS
    assert pod_count_filter(request(), ledger.tree.nodes["n2"]) is None  # no limit known


def test_resource_filter_counts_extended_resources_and_host_ports() -> None:
    ledger = ClusterLedger(TOPOLOGY, [node("n1", extended={"rdma/ib": 2})])
    rdma = request(extras=(("rdma/ib", 2),))
    assert resource_filter(rdma, ledger.tree.nodes["n1"]) is None
    ledger.add_foreign_usage("other/pod", "n1", extras=(("rdma/ib", 1),))
    refused = resource_filter(rdma, ledger.tree.nodes["n1"])
    assert refused is not None and refused.detail == "rdma/ib"
    # A resource the node does not have at all.
    mig = resource_filter(request(extras=(("nvidia.com/mig-1g.10gb", 1),)), ledger.tree.nodes["n1"])
    assert mig is not None and mig.reason == FilterReason.INSUFFICIENT_RESOURCE
    port = host_port_key("TCP", 8080)
    assert resource_filter(request(extras=((port, 1),)), ledger.tree.nodes["n1"]) is None
    ledger.add_foreign_usage("web/pod", "n1", extras=((port, 1),))
    refused = resource_filter(request(extras=((port, 1),)), ledger.tree.nodes["n1"])
    assert refused is not None
    assert (refused.reason, refused.detail) == (FilterReason.HOST_PORT, "TCP/8080")
    assert (
        resource_filter(request(extras=((host_port_key("UDP", 8080), 1),)), ledger.tree.nodes["n1"])
        is None
    )


def test_the_ledger_counts_pods_and_extended_resources_and_gives_them_back() -> None:
    ledger = ClusterLedger(TOPOLOGY, [node("n1", max_pods=3, extended={"rdma/ib": 4})])
    ledger.add_foreign_usage("a/p", "n1", extras=(("rdma/ib", 1),))
    pod = PodAssignment(0, "n1", (0,), {}, extras=(("rdma/ib", 3),))
    ledger.reserve_pods("g", [pod])
    usage = ledger.node_usage("n1")
    assert (usage.pods_used, usage.extras_used) == (2, (("rdma/ib", 4),))
    with pytest.raises(ReservationError, match="rdma/ib"):
        ledger.reserve_pods("h", [PodAssignment(0, "n1", (1,), {}, extras=(("rdma/ib", 1),))])
    ledger.reserve_pods("h", [PodAssignment(0, "n1", (1,), {})])
    with pytest.raises(ReservationError, match="pod slot"):
        ledger.reserve_pods("i", [PodAssignment(0, "n1", (2,), {})])
    assert ledger.verify() == []
    ledger.release_gang("g")
    ledger.remove_foreign_usage("a/p")
    usage = ledger.node_usage("n1")
    assert (usage.pods_used, usage.extras_used) == (1, ())
    assert ledger.verify() == []


# -- whole decisions ------------------------------------------------------------------------------


def test_a_tainted_node_is_avoided_until_the_gang_tolerates_it() -> None:
    ledger = ClusterLedger(TOPOLOGY, [node("n1", taints=(BROKEN,)), node("n2", gpus=4)])
    # n1 is the only node that takes 8 GPUs: refused, with the taint counted.
    result = place_gang(ledger, request())
    assert isinstance(result, Unschedulable)
    assert "1 node excluded by taint gpu=broken:NoSchedule" in result.message
    assert [(e.reason, e.detail, e.nodes) for e in result.excluded] == [
        (FilterReason.TAINT, "gpu=broken:NoSchedule", 1)
    ]
    tolerant = NodeConstraints(tolerations=(Toleration("gpu", "Exists"),))
    placed = place_gang(ledger, request(constraints=tolerant))
    assert isinstance(placed, Placement) and placed.assignments[0].node == "n1"
    # The decision leaves the ledger as it found it.
    assert ledger.verify() == []
    assert ledger.free_gpus() == 12


def test_a_gang_never_spans_onto_a_refused_node() -> None:
    nodes = [node(f"n{i}", taints=(BROKEN,) if i % 2 else ()) for i in range(6)]
    ledger = ClusterLedger(TOPOLOGY, nodes)
    placed = place_gang(ledger, request(pods=3))
    assert isinstance(placed, Placement)
    assert sorted(a.node for a in placed.assignments) == ["n0", "n2", "n4"]
    refused = place_gang(ledger, request(pods=4))
    assert isinstance(refused, Unschedulable)
    assert "3 nodes excluded by taint gpu=broken:NoSchedule" in refused.message


def test_node_selector_and_affinity_choose_among_nodes() -> None:
    nodes = [
        node("a1", "la", labels={"pool": "a"}),
        node("b1", "lb", labels={"pool": "b", "gen": "5"}),
        node("b2", "lb", labels={"pool": "b", "gen": "3"}, gpus=4),
    ]
    ledger = ClusterLedger(TOPOLOGY, nodes)
    ask = NodeConstraints(node_selector=(("pool", "b"),))
    placed = place_gang(ledger, request(gpus=4, constraints=ask))
    assert isinstance(placed, Placement)
    assert placed.assignments[0].node == "b2"  # best fit among the pool's nodes
    newer = NodeConstraints(
        required=(SelectorTerm(expressions=(Requirement("gen", "Gt", ("4",)),)),)
    )
    placed = place_gang(ledger, request(gpus=4, constraints=newer))
    assert isinstance(placed, Placement) and placed.assignments[0].node == "b1"
    nowhere = NodeConstraints(node_selector=(("pool", "c"),))
    refused = place_gang(ledger, request(gpus=4, constraints=nowhere))
    assert isinstance(refused, Unschedulable)
    assert refused.message == (
        "no schedulable node with GPUs is left by the filters; "
        "3 nodes excluded by nodeSelector pool=c"
    )
    assert ledger.verify() == []


def test_a_node_full_by_pod_count_is_skipped_and_slots_limit_pods_per_node() -> None:
    ledger = ClusterLedger(TOPOLOGY, [node("n1", max_pods=1), node("n2", max_pods=2)])
    ledger.add_foreign_usage("kube-system/agent", "n1")
    placed = place_gang(ledger, request(gpus=2))
    assert isinstance(placed, Placement) and placed.assignments[0].node == "n2"
    # n2 takes 4 pods of 2 GPUs by GPUs, but only 2 by its pod count.
    placed = place_gang(ledger, request(pods=2, gpus=2))
    assert isinstance(placed, Placement)
    assert [a.node for a in placed.assignments] == ["n2", "n2"]
    refused = place_gang(ledger, request(pods=3, gpus=2))
    assert isinstance(refused, Unschedulable)
    assert "1 node excluded by pod count" in refused.message


def test_extended_resources_limit_pods_per_node_and_go_into_the_assignment() -> None:
    ledger = ClusterLedger(
        TOPOLOGY, [node("n1", extended={"rdma/ib": 1}), node("n2", extended={"rdma/ib": 4})]
    )
    placed = place_gang(ledger, request(pods=2, gpus=4, extras=(("rdma/ib", 1),)))
    assert isinstance(placed, Placement)
    assert [a.node for a in placed.assignments] == ["n2", "n2"]
    assert placed.assignments[0].extras == (("rdma/ib", 1),)
    ledger.reserve(placed)
    placed = place_gang(ledger, request(pods=1, gpus=4, extras=(("rdma/ib", 1),), gang="h"))
    assert isinstance(placed, Placement) and placed.assignments[0].node == "n1"
    ledger.reserve(placed)
    refused = place_gang(ledger, request(pods=1, gpus=1, extras=(("rdma/ib", 3),)))
    assert isinstance(refused, Unschedulable)
    assert "2 nodes excluded by insufficient rdma/ib" in refused.message


def test_two_pods_of_one_gang_asking_one_host_port_never_share_a_node() -> None:
    ledger = ClusterLedger(TOPOLOGY, [node("n1"), node("n2")])
    port = ((host_port_key("TCP", 7000), 1),)
    placed = place_gang(ledger, request(pods=2, gpus=1, extras=port))
    assert isinstance(placed, Placement)
    assert sorted(a.node for a in placed.assignments) == ["n1", "n2"]


def test_preferences_win_when_the_gang_fits_there_and_yield_when_not() -> None:
    soft = Taint("spot", "", "PreferNoSchedule")
    ledger = ClusterLedger(
        TOPOLOGY, [node("n1", gpus=4, taints=(soft,)), node("n2", labels={"fast": "yes"})]
    )
    # Best fit would take n1 (4 GPUs, tightest) but it carries a soft taint.
    placed = place_gang(ledger, request(gpus=4))
    assert isinstance(placed, Placement) and placed.assignments[0].node == "n2"
    ok = NodeConstraints(tolerations=(Toleration("spot", "Exists"),))
    placed = place_gang(ledger, request(gpus=4, constraints=ok))
    assert isinstance(placed, Placement) and placed.assignments[0].node == "n1"
    # A soft taint yields when the gang fits nowhere else.
    placed = place_gang(ledger, request(pods=3, gpus=4))
    assert isinstance(placed, Placement)
    assert sorted(a.node for a in placed.assignments) == ["n1", "n2", "n2"]
    # Preferred affinity: weights choose, best fit only among equals.
    prefer = NodeConstraints(
        tolerations=(Toleration("spot", "Exists"),),
        preferred=(PreferredTerm(10, SelectorTerm(expressions=(Requirement("fast", "Exists"),))),),
    )
    placed = place_gang(ledger, request(gpus=4, constraints=prefer))
    assert isinstance(placed, Placement) and placed.assignments[0].node == "n2"
    assert ledger.verify() == []


def test_score_tiers_go_from_the_best_score_down() -> None:
    assert score_tiers({}, 5) == []
    # thresholds, best first; the lowest score keeps every node, so it is no tier
    assert score_tiers({"a": -100}, 3) == [0]
    assert score_tiers({"a": 20, "b": 10, "c": -100}, 4) == [20, 10, 0]
    assert score_tiers({"a": 50}, 3) == [50]  # unscored nodes score 0, below it


def test_every_pod_of_a_gang_must_be_satisfied() -> None:
    ledger = ClusterLedger(
        TOPOLOGY,
        [node("n1", labels={"pool": "a"}), node("n2", labels={"pool": "a", "zone": "z"})],
    )
    one = NodeConstraints(node_selector=(("pool", "a"),))
    other = NodeConstraints(node_selector=(("zone", "z"),))
    r = GangRequest("g", 1, 8, constraints=(one, other))
    placed = place_gang(ledger, r)
    assert isinstance(placed, Placement) and placed.assignments[0].node == "n2"


def test_a_partial_gang_on_the_preferred_nodes_loses_to_the_whole_gang_elsewhere() -> None:
    soft = Taint("spot", "", "PreferNoSchedule")
    ledger = ClusterLedger(TOPOLOGY, [node("n1"), node("n2", taints=(soft,))])
    # Two pods of 8 GPUs, at least one: the untainted node takes one, both nodes take two.
    r = GangRequest("g", 2, 8, min_members=1)
    placed = place_gang(ledger, r)
    assert isinstance(placed, Placement)
    assert sorted(a.node for a in placed.assignments) == ["n1", "n2"]


def test_dra_pods_go_to_dra_nodes_only_and_device_plugin_pods_never_there() -> None:
    from dataclasses import replace

    ledger = ClusterLedger(TOPOLOGY)
    ledger.add_node(replace(node("dra-0"), dra=True))
    ledger.add_node(node("dp-0"))
    ledger.add_node(node("dp-1"))
    dra = place_gang(ledger, GangRequest("g1", pod_count=1, gpus_per_pod=8, dra=True))
    assert isinstance(dra, Placement) and dra.assignments[0].node == "dra-0"
    plain = place_gang(ledger, GangRequest("g2", pod_count=2, gpus_per_pod=8))
    assert isinstance(plain, Placement)
    assert {a.node for a in plain.assignments} == {"dp-0", "dp-1"}
    too_many = place_gang(ledger, GangRequest("g3", pod_count=2, gpus_per_pod=8, dra=True))
    assert isinstance(too_many, Unschedulable)
    assert "2 nodes excluded by GPU allocation (device plugin)" in too_many.message
    assert too_many.excluded[0].reason is FilterReason.GPU_ALLOCATION
