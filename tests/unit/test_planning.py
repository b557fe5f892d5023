from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from egpu.domain.node import node_from_kubernetes
from egpu.domain.placement import Placement
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, place_gang
from egpu.planning import (
    MissingTopologyError,
    describe_plan,
    plan_against,
    render_svg,
    render_text,
    request_for,
)
from egpu.sim.nodes import ClusterShape, node_manifests

pytestmark = pytest.mark.unit
H100 = ("NVIDIA-H100-80GB-HBM3",)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def ledger(shape: ClusterShape) -> ClusterLedger:
    nodes = [
        node_from_kubernetes(
            m["metadata"]["name"],
            m["metadata"]["labels"],
            m["metadata"]["annotations"],
            m["status"]["allocatable"],
        )
        for m in node_manifests(shape)
    ]
    return ClusterLedger(Topology(), nodes)


def test_request_from_the_training_example() -> None:
    workload = yaml.safe_load((EXAMPLES / "training-gang-64.yaml").read_text())
    request, topology = request_for(workload)
    assert topology == "default"
    assert (request.pod_count, request.gpus_per_pod, request.required_level) == (
        8,
        8,
        "egpu.io/leaf",
    )
    assert request.min_pods == 8


def test_plan_text_names_every_rank_and_the_domain() -> None:
    workload = yaml.safe_load((EXAMPLES / "training-gang-64.yaml").read_text())
    request, _ = request_for(workload)
    shape = ClusterShape(
        blocks=1, leaves_per_block=2, nodes_per_leaf=8, gpu_models=("NVIDIA-H100-80GB-HBM3",)
    )
    result = place_gang(ledger(shape), request)
    assert isinstance(result, Placement)
    text = describe_plan(result)
    assert text.startswith("PLACEABLE: 8/8 pods, 64 GPUs, smallest domain egpu.io/leaf")
    assert text.count("rank ") == 8


def test_unschedulable_plan_says_why_per_level() -> None:
    workload = yaml.safe_load((EXAMPLES / "training-gang-64.yaml").read_text())
    workload["spec"]["replicas"] = 9
    workload["spec"]["gang"]["minMembers"] = 9
    request, _ = request_for(workload)
    shape = ClusterShape(blocks=1, leaves_per_block=2, nodes_per_leaf=8)
    text = describe_plan(place_gang(ledger(shape), request))
    assert text.startswith("UNSCHEDULABLE")
    assert "egpu.io/leaf" in text


def test_topology_views_count_free_gpus_per_domain() -> None:
    shape = ClusterShape(blocks=1, leaves_per_block=2, nodes_per_leaf=2)
    text = render_text(ledger(shape))
    assert "cluster" in text and "b0-l1" in text
    assert "32/32" in text  # the cluster, all free
    svg = render_svg(ledger(shape))
    assert svg.startswith("<svg") and svg.count("<rect") == 2 * 4  # cluster, block, 2 leaves


def ready_nodes() -> list[dict[str, Any]]:
    """Simulated node objects as the API server shows them once KWOK marks them Ready."""
    shape = ClusterShape(blocks=1, leaves_per_block=2, nodes_per_leaf=8, gpu_models=H100)
    nodes = list(node_manifests(shape))
    for node in nodes:
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return nodes


def test_plan_says_plainly_when_its_topology_is_missing() -> None:
    # A fresh cluster without the GPUTopology: the answer names what is missing, not a level.
    workload = yaml.safe_load((EXAMPLES / "training-gang-64.yaml").read_text())
    nodes = ready_nodes()
    with pytest.raises(MissingTopologyError) as err:
        plan_against(workload, nodes, [], {})
    assert str(err.value) == "GPUTopology 'default' not found: apply examples/topology.yaml"


def test_plan_without_levels_places_by_node_when_the_topology_is_missing() -> None:
    workload = yaml.safe_load((EXAMPLES / "training-gang-64.yaml").read_text())
    del workload["spec"]["topology"]
    nodes = ready_nodes()
    ok, text = plan_against(workload, nodes, [], {})
    assert ok, text
    assert "GPUTopology 'default' not found; placing by node only" in text


def test_plan_against_the_topology_it_names() -> None:
    workload = yaml.safe_load((EXAMPLES / "training-gang-64.yaml").read_text())
    topology = yaml.safe_load((EXAMPLES / "topology.yaml").read_text())
    nodes = ready_nodes()
    ok, text = plan_against(workload, nodes, [], {"default": topology})
    assert ok, text
    assert text.startswith("PLACEABLE: 8/8 pods, 64 GPUs, smallest domain egpu.io/leaf")
