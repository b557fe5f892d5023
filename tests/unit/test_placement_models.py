"""One GPU model per gang, and model selectors that match GPU Feature Discovery names."""

from __future__ import annotations

import pytest

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import Interconnect, model_matches
from egpu.domain.node import Node
from egpu.domain.placement import Placement, Unschedulable
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, place_gang

pytestmark = pytest.mark.unit

H200 = "NVIDIA-H200-141GB-HBM3e"
H100 = "NVIDIA-H100-80GB-HBM3"


def node(name: str, model: str) -> Node:
    return Node(
        name=name,
        labels={"egpu.io/block": "b0", "egpu.io/leaf": "b0-l0", "kubernetes.io/hostname": name},
        cpu_millis=64_000,
        memory_bytes=512 * 2**30,
        gpu_count=8,
        gpu_model=model,
        interconnect=Interconnect.unknown(8),
    )


@pytest.mark.parametrize(
    ("selector", "product", "matches"),
    [
        ("H200", H200, True),
        ("h200", H200, True),
        ("H200-141GB", H200, True),
        ("nvidia h200", H200, True),
        (H200, H200, True),
        ("H200 HBM3e", H200, True),  # in order, not necessarily adjacent
        ("H20", H200, False),  # whole words only
        ("141GB-H200", H200, False),  # order counts
        ("H100", H200, False),
        ("", H200, False),
        ("A100", "A100", True),
        ("a100_80gb", "NVIDIA-A100-SXM4-80GB", True),
    ],
)
def test_model_selector_rule(selector: str, product: str, matches: bool) -> None:
    assert model_matches(selector, product) is matches


def mixed_cluster() -> list[Node]:
    # By name the two H200 nodes come first; four H100 nodes follow.
    return [node("n0", H200), node("n1", H200), *(node(f"n{i}", H100) for i in range(2, 6))]


def placed(nodes: list[Node], request: GangRequest) -> Placement:
    result = place_gang(ClusterLedger(Topology(), nodes), request)
    assert isinstance(result, Placement), getattr(result, "message", result)
    return result


def test_a_gang_without_a_model_keeps_one_model_when_one_holds_it() -> None:
    result = placed(mixed_cluster(), GangRequest("g", 3, 8))
    assert {a.node for a in result.assignments} == {"n2", "n3", "n4"}
    assert result.models == (H100,)
    assert result.note is None


def test_a_gang_mixes_models_only_when_no_single_model_holds_it_and_says_so() -> None:
    result = placed(mixed_cluster(), GangRequest("g", 5, 8))
    assert len(result.assignments) == 5
    assert result.models == (H100, H200)
    assert result.note is not None and "mix" in result.note and H200 in result.note


def test_between_models_that_both_hold_the_gang_the_smaller_domain_wins() -> None:
    # One H200 node takes both pods; H100 would need two nodes.
    nodes = [node("n0", H100), node("n1", H100), node("n2", H200)]
    busy = [
        Node(
            name=n.name,
            labels=n.labels,
            cpu_millis=n.cpu_millis,
            memory_bytes=n.memory_bytes,
            gpu_count=8,
            gpu_model=n.gpu_model,
            interconnect=Interconnect.unknown(8),
            used_gpus=frozenset(range(4)) if n.gpu_model == H100 else frozenset(),
        )
        for n in nodes
    ]
    result = placed(busy, GangRequest("g", 2, 4))
    assert {a.node for a in result.assignments} == {"n2"}
    assert result.models == (H200,)


def test_a_selector_matches_gpu_feature_discovery_products() -> None:
    for selector in ("H200", "h200", "H200-141GB", H200):
        result = placed(mixed_cluster(), GangRequest("g", 2, 8, gpu_model=selector))
        assert {a.node for a in result.assignments} == {"n0", "n1"}, selector
        assert result.models == (H200,)


def test_a_selector_that_matches_several_models_keeps_one() -> None:
    result = placed(mixed_cluster(), GangRequest("g", 3, 8, gpu_model="NVIDIA"))
    assert result.models == (H100,)
    refused = place_gang(
        ClusterLedger(Topology(), mixed_cluster()), GangRequest("g", 5, 8, gpu_model="nvidia")
    )
    assert isinstance(refused, Unschedulable)
    assert "no single model matching 'nvidia'" in refused.message


def test_free_capacity_by_selector_counts_every_matching_model() -> None:
    ledger = ClusterLedger(Topology(), mixed_cluster())
    assert ledger.domain_stats((), "H200").free_gpus == 16
    assert ledger.domain_stats((), "nvidia").free_gpus == 48
    assert ledger.domain_stats((), H100).free_gpus == 32
    assert ledger.domain_stats((), "A100").free_gpus == 0


def test_the_rest_of_a_gang_keeps_the_model_of_its_placed_members() -> None:
    # Its first members run on H200; H100 would be the better fit by name and count.
    rest = GangRequest("g", 2, 8, keep_model=H200)
    result = placed(mixed_cluster(), rest)
    assert result.models == (H200,)
    assert result.note is None


def test_the_rest_of_a_gang_mixes_only_when_its_model_has_no_room_and_says_so() -> None:
    rest = GangRequest("g", 3, 8, keep_model=H200)  # two H200 nodes only
    result = placed(mixed_cluster(), rest)
    assert len(result.assignments) == 3
    assert result.note is not None and H200 in result.note and H100 in result.note
