"""Domain value types and their parsers: good input gives values, bad input a clear ValueError."""

from __future__ import annotations

import json

import pytest

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import Gpu, Interconnect, parse_interconnect, parse_unhealthy_gpus
from egpu.domain.node import Node, node_from_kubernetes
from egpu.domain.quantity import cpu_millis, memory_bytes, parse_quantity, whole_count
from egpu.domain.topology import Topology
from egpu.sim.nodes import ClusterShape, node_manifests

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "millis"),
    [("500m", 500), ("2", 2000), ("0.1", 100), ("1.5", 1500), ("100u", 1), ("1e3", 1_000_000)],
)
def test_cpu_millis(text: str, millis: int) -> None:
    assert cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1Gi", 2**30),
        ("16G", 16 * 10**9),
        ("2048Mi", 2**31),
        ("128974848", 128974848),
        ("129e6", 129_000_000),
        ("1.5Ki", 1536),
        ("0.5", 1),  # rounds up: never under-count a request
    ],
)
def test_memory_bytes(text: str, size: int) -> None:
    assert memory_bytes(text) == size


@pytest.mark.parametrize("text", ["", "1Gb", "abc", "1.2.3", "Gi", "1 Gi x", "--1"])
def test_bad_quantities_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_negative_and_fractional_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        cpu_millis("-1")
    with pytest.raises(ValueError, match="whole number"):
        whole_count("1.5", "nvidia.com/gpu")
    assert whole_count("8") == 8


def test_interconnect_annotation() -> None:
    text = json.dumps({"nvlinkGroups": [[0, 1, 2, 3], [4, 5, 6, 7]], "numa": [0] * 4 + [1] * 4})
    wiring = parse_interconnect(text, 8)
    assert wiring.nvlink_groups == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert wiring.numa == (0, 0, 0, 0, 1, 1, 1, 1)


def test_interconnect_defaults() -> None:
    assert parse_interconnect(None, 2) == Interconnect(((0,), (1,)), (0, 0))
    # GPUs left out of every group become their own group; numa defaults to node 0.
    assert parse_interconnect('{"nvlinkGroups": [[0, 1]]}', 3).nvlink_groups == ((0, 1), (2,))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"nvlinkGroups": [[0, 9]]}', "names GPU 9"),
        ('{"nvlinkGroups": [[0, 1], [1, 2]]}', "more than one NVLink group"),
        ('{"nvlinkGroups": [[0, "x"]]}', "list of integers"),
        ('{"nvlinkGroups": [[0]], "numa": [0]}', "numa lists 1 GPUs"),
        ('{"nvlinks": []}', "unknown keys"),
    ],
)
def test_bad_interconnect_annotations(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_interconnect(text, 4)


def test_unhealthy_gpus_annotation() -> None:
    assert parse_unhealthy_gpus("3,5", 8) == {3, 5}
    assert parse_unhealthy_gpus(" 3 , 5, ", 8) == {3, 5}
    assert parse_unhealthy_gpus(None, 8) == frozenset()
    assert parse_unhealthy_gpus("", 8) == frozenset()
    with pytest.raises(ValueError, match="names GPU 8"):
        parse_unhealthy_gpus("8", 8)
    with pytest.raises(ValueError, match="not a GPU index"):
        parse_unhealthy_gpus("3;5", 8)
    with pytest.raises(ValueError, match="not a GPU index"):
        parse_unhealthy_gpus("-1", 8)


def test_node_from_the_simulated_cluster() -> None:
    manifest = next(node_manifests(ClusterShape(blocks=1, leaves_per_block=1, nodes_per_leaf=1)))
    meta = manifest["metadata"]
    annotations = {**meta["annotations"], "egpu.io/unhealthy-gpus": "3"}
    node = node_from_kubernetes(
        meta["name"], meta["labels"], annotations, manifest["status"]["allocatable"]
    )
    assert node.gpu_count == 8
    assert node.gpu_model == "NVIDIA-H100-80GB-HBM3"
    assert node.cpu_millis == 128_000
    assert node.memory_bytes == 2048 * 2**30
    assert node.wiring.nvlink_groups == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert node.free_gpus == (0, 1, 2, 4, 5, 6, 7)
    assert node.gpus[3] == Gpu(3, "NVIDIA-H100-80GB-HBM3", healthy=False)
    assert node.gpus[4].healthy
    assert node.labels["egpu.io/leaf"] == "b0-l0"


def test_node_parse_errors_name_the_node() -> None:
    with pytest.raises(ValueError, match=r"node n1: .*not a Kubernetes quantity"):
        node_from_kubernetes("n1", {}, {}, {"cpu": "lots", "nvidia.com/gpu": "8"})
    with pytest.raises(ValueError, match="node n1: unhealthy-gpus"):
        node_from_kubernetes("n1", {}, {"egpu.io/unhealthy-gpus": "9"}, {"nvidia.com/gpu": "8"})


def test_node_checks_its_own_consistency() -> None:
    with pytest.raises(ValueError, match=r"used_gpus \[2\] do not exist"):
        Node("n", {}, 1000, 1000, gpu_count=2, used_gpus=frozenset({2}))


def test_topology_levels() -> None:
    topo = Topology()
    assert topo.domain_levels == ("egpu.io/block", "egpu.io/leaf")
    assert topo.knows("kubernetes.io/hostname")
    assert not topo.knows("zone")
    assert Topology(("zone",)).domain_levels == ("zone",)
    with pytest.raises(ValueError, match="repeat"):
        Topology(("a", "a"))
    with pytest.raises(ValueError, match="innermost"):
        Topology(("kubernetes.io/hostname", "egpu.io/leaf"))


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"pod_count": 0}, "pod_count"),
        ({"gpus_per_pod": 0}, "gpus_per_pod"),
        ({"min_members": 5}, "min_members"),
        ({"cpu_millis_per_pod": -1}, "negative"),
    ],
)
def test_bad_gang_requests(kwargs: dict[str, int], problem: str) -> None:
    base = {"gang_id": "g", "pod_count": 4, "gpus_per_pod": 8}
    with pytest.raises(ValueError, match=problem):
        GangRequest(**{**base, **kwargs})  # type: ignore[arg-type]
