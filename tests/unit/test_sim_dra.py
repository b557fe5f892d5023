from __future__ import annotations

import json

import pytest

from egpu.domain.dra import GPU_DEVICE_CLASS, GPU_DRIVER, parse_slices
from egpu.domain.gpu import parse_interconnect
from egpu.sim.dra import device_class_manifest, gpu_uuid, resource_slice_manifests
from egpu.sim.nodes import ClusterShape, node_manifests

pytestmark = pytest.mark.unit

SHAPE = ClusterShape(blocks=1, leaves_per_block=1, nodes_per_leaf=2, dra=True)


def test_one_slice_per_node_with_one_device_per_gpu() -> None:
    slices = list(resource_slice_manifests(SHAPE))
    nodes = [n["metadata"]["name"] for n in node_manifests(SHAPE)]
    assert [s["spec"]["nodeName"] for s in slices] == nodes
    for s in slices:
        assert s["apiVersion"] == "resource.k8s.io/v1"
        assert s["spec"]["driver"] == GPU_DRIVER
        assert s["spec"]["pool"] == {
            "name": s["spec"]["nodeName"],
            "generation": 1,
            "resourceSliceCount": 1,
        }
        assert [d["name"] for d in s["spec"]["devices"]] == [f"gpu-{i}" for i in range(8)]
    assert len({s["metadata"]["name"] for s in slices}) == 2


def test_devices_carry_the_drivers_attributes() -> None:
    first = next(iter(resource_slice_manifests(SHAPE)))
    node = first["spec"]["nodeName"]
    dev = first["spec"]["devices"][5]
    attrs = dev["attributes"]
    assert attrs["index"] == {"int": 5}
    assert attrs["uuid"] == {"string": gpu_uuid(node, 5)}
    assert attrs["productName"] == {"string": "NVIDIA-H100-80GB-HBM3"}
    assert attrs["numaNode"] == {"int": 1}
    assert attrs["nvlinkGroup"] == {"int": 1}
    assert attrs["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:30"}
    assert attrs["pciBusID"] == {"string": "0000:68:00.0"}
    assert dev["capacity"] == {"memory": {"value": "81559Mi"}}
    uuids = {d["attributes"]["uuid"]["string"] for d in first["spec"]["devices"]}
    assert len(uuids) == 8
    assert gpu_uuid(node, 5) == gpu_uuid(node, 5) != gpu_uuid(node + "x", 5)


def test_dra_nodes_advertise_no_device_plugin_gpus() -> None:
    dra = next(iter(node_manifests(SHAPE)))
    classic = next(iter(node_manifests(ClusterShape(blocks=1, leaves_per_block=1))))
    assert "nvidia.com/gpu" not in dra["status"]["allocatable"]
    assert classic["status"]["allocatable"]["nvidia.com/gpu"] == "8"


def test_device_class_selects_the_driver() -> None:
    cls = device_class_manifest()
    assert cls["metadata"]["name"] == GPU_DEVICE_CLASS
    assert cls["spec"]["selectors"] == [{"cel": {"expression": f'device.driver == "{GPU_DRIVER}"'}}]


@pytest.mark.parametrize("group_size", [1, 2, 4, 8])
def test_slice_topology_is_the_nodes_interconnect(group_size: int) -> None:
    shape = ClusterShape(
        blocks=1, leaves_per_block=1, nodes_per_leaf=1, nvlink_group_size=group_size
    )
    node = next(iter(node_manifests(shape)))
    slice_ = next(iter(resource_slice_manifests(shape)))
    annotation = node["metadata"]["annotations"]["egpu.io/gpu-interconnect"]
    from_slice = parse_slices([slice_])[node["metadata"]["name"]].wiring()
    assert from_slice == parse_interconnect(annotation, 8)
    assert json.loads(annotation)["numa"] == list(from_slice.numa)
