"""A simulated DRA driver: one ResourceSlice per simulated node, one device per GPU.

Devices carry the attributes NVIDIA's DRA driver publishes (see `egpu.domain.dra`),
derived from the same shape as the node's interconnect annotation: NVLink groups of
consecutive GPUs, one NUMA node per group, one PCIe root per pair of GPUs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from egpu.domain.dra import (
    ATTR_INDEX,
    ATTR_NUMA_NODE,
    ATTR_NVLINK_GROUP,
    ATTR_PCI_BUS_ID,
    ATTR_PCIE_ROOT,
    ATTR_PRODUCT,
    ATTR_UUID,
    CAPACITY_MEMORY,
    DRA_API_VERSION,
    GPU_DEVICE_CLASS,
    GPU_DRIVER,
)
from egpu.sim.nodes import GPU_MEMORY_MIB, SIMULATED_LABEL, ClusterShape, node_manifests

GPUS_PER_PCIE_ROOT = 2
_UUID_NAMESPACE = uuid.UUID("6f1c1b0e-5d0a-4a39-9a51-0c7b2f3e6d10")


def device_name(index: int) -> str:
    return f"gpu-{index}"


def slice_name(node: str) -> str:
    return f"{node}-{GPU_DRIVER}"


def gpu_uuid(node: str, index: int) -> str:
    """Stable per node and GPU, so a republished slice names the same devices."""
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{node}/{index}')}"


def device_class_manifest() -> dict[str, Any]:
    return {
        "apiVersion": DRA_API_VERSION,
        "kind": "DeviceClass",
        "metadata": {"name": GPU_DEVICE_CLASS, "labels": {SIMULATED_LABEL: "true"}},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{GPU_DRIVER}"'}}]},
    }


def _device(node: str, index: int, shape: ClusterShape, model: str) -> dict[str, Any]:
    group = index // shape.nvlink_group_size
    root = index // GPUS_PER_PCIE_ROOT
    return {
        "name": device_name(index),
        "attributes": {
            ATTR_INDEX: {"int": index},
            ATTR_UUID: {"string": gpu_uuid(node, index)},
            ATTR_PRODUCT: {"string": model},
            ATTR_PCI_BUS_ID: {"string": f"0000:{0x18 + 0x10 * index:02x}:00.0"},
            ATTR_PCIE_ROOT: {"string": f"pci0000:{0x10 * (root + 1):02x}"},
            ATTR_NUMA_NODE: {"int": group},
            ATTR_NVLINK_GROUP: {"int": group},
        },
        "capacity": {CAPACITY_MEMORY: {"value": f"{GPU_MEMORY_MIB.get(model, 81920)}Mi"}},
    }


def resource_slice_manifests(shape: ClusterShape) -> Iterator[dict[str, Any]]:
    """One slice per node of the shape; its pool is the node (one slice, generation 1)."""
    for node in node_manifests(shape):
        name = node["metadata"]["name"]
        model = node["metadata"]["labels"]["nvidia.com/gpu.product"]
        yield {
            "apiVersion": DRA_API_VERSION,
            "kind": "ResourceSlice",
            "metadata": {"name": slice_name(name), "labels": {SIMULATED_LABEL: "true"}},
            "spec": {
                "driver": GPU_DRIVER,
                "nodeName": name,
                "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                "devices": [_device(name, i, shape, model) for i in range(shape.gpus_per_node)],
            },
        }


def create_resource_slices(shape: ClusterShape, kubeconfig: str | None = None) -> int:
    """Publish the DeviceClass and every node's slice (existing ones are left alone)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    config.load_kube_config(config_file=kubeconfig)
    api = client.CustomObjectsApi()
    group, version = DRA_API_VERSION.split("/")
    objects = [("deviceclasses", device_class_manifest())]
    objects += [("resourceslices", s) for s in resource_slice_manifests(shape)]
    for plural, body in objects:
        try:
            api.create_cluster_custom_object(group, version, plural, body)
        except ApiException as exc:
            if exc.status != 409:  # already there
                raise
    return len(objects) - 1


def delete_resource_slices(kubeconfig: str | None = None) -> None:
    """Delete every simulated slice and the simulated DeviceClass."""
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)
    api = client.CustomObjectsApi()
    group, version = DRA_API_VERSION.split("/")
    selector = f"{SIMULATED_LABEL}=true"
    for plural in ("resourceslices", "deviceclasses"):
        api.delete_collection_cluster_custom_object(group, version, plural, label_selector=selector)
