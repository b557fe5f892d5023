from __future__ import annotations

import json

import pytest

from egpu.sim.nodes import ClusterShape, interconnect, node_manifests

pytestmark = pytest.mark.unit


def test_default_shape_is_the_demo_cluster() -> None:
    shape = ClusterShape()
    assert (shape.node_count, shape.gpu_count) == (128, 1024)
    nodes = list(node_manifests(shape))
    assert len({n["metadata"]["name"] for n in nodes}) == 128
    leaves = {n["metadata"]["labels"]["egpu.io/leaf"] for n in nodes}
    assert len(leaves) == 8


def test_every_node_carries_gpus_labels_and_interconnect() -> None:
    shape = ClusterShape(
        blocks=2,
        leaves_per_block=1,
        nodes_per_leaf=1,
        gpu_models=("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"),
    )
    first, second = node_manifests(shape)
    assert first["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert first["metadata"]["labels"]["type"] == "kwok"
    assert first["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert second["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert second["metadata"]["labels"]["egpu.io/block"] == "b1"
    ic = json.loads(first["metadata"]["annotations"]["egpu.io/gpu-interconnect"])
    assert ic == {"nvlinkGroups": [[0, 1, 2, 3], [4, 5, 6, 7]], "numa": [0, 0, 0, 0, 1, 1, 1, 1]}


def test_single_nvlink_domain() -> None:
    shape = ClusterShape(gpus_per_node=8, nvlink_group_size=8)
    assert interconnect(shape)["nvlinkGroups"] == [list(range(8))]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blocks": 0}, "blocks must be at least 1"),
        ({"gpus_per_node": 8, "nvlink_group_size": 3}, "must divide"),
        ({"gpu_models": ()}, "at least one GPU model"),
    ],
)
def test_bad_shapes_are_refused_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterShape(**kwargs)  # type: ignore[arg-type]


def test_cached_artefacts_go_on_nodes_spread_across_the_leaves() -> None:
    shape = ClusterShape(
        blocks=2,
        leaves_per_block=2,
        nodes_per_leaf=4,
        cached_artefacts=("registry.example/llm/vllm:0.6.3", "llama-3-8b@r2"),
        cached_nodes=4,
    )
    nodes = list(node_manifests(shape))
    held = [n for n in nodes if "egpu.io/cached-artefacts" in n["metadata"]["annotations"]]
    assert len(held) == 4
    assert {n["metadata"]["labels"]["egpu.io/leaf"] for n in held} == {
        "b0-l0",
        "b0-l1",
        "b1-l0",
        "b1-l1",
    }
    assert held[0]["metadata"]["annotations"]["egpu.io/cached-artefacts"] == (
        "registry.example/llm/vllm:0.6.3,llama-3-8b@r2"
    )
    every = ClusterShape(blocks=1, leaves_per_block=1, nodes_per_leaf=3, cached_artefacts=("m@1",))
    assert all(
        n["metadata"]["annotations"]["egpu.io/cached-artefacts"] == "m@1"
        for n in node_manifests(every)
    )
    plain = list(node_manifests(ClusterShape(blocks=1, leaves_per_block=1, nodes_per_leaf=2)))
    assert all("egpu.io/cached-artefacts" not in n["metadata"]["annotations"] for n in plain)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cached_artefacts": ("a,b",)}, "no comma"),
        ({"cached_artefacts": (" a",)}, "no comma or blanks"),
        ({"cached_nodes": 2}, "needs cached_artefacts"),
        ({"cached_artefacts": ("a",), "cached_nodes": 999}, "between 0 and the 128 nodes"),
    ],
)
def test_bad_cached_artefact_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterShape(**kwargs)  # type: ignore[arg-type]
