"""GPUs published through Dynamic Resource Allocation (`resource.k8s.io/v1`).

A DRA driver publishes a node's GPUs as devices of a ResourceSlice, each with typed
attributes; claims allocated by anyone name the devices they hold. The parsers here
turn both into the values the engines already use: a GPU index per device, the
in-node wiring (NUMA node, PCIe root, NVLink group) and the devices in use. Bad input
raises a ValueError that says what is wrong, so nothing malformed reaches the engines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from egpu.domain.gpu import Interconnect

# The project's simulated driver and the DeviceClass its claims name.
GPU_DRIVER = "gpu.egpu.io"
GPU_DEVICE_CLASS = "gpu.egpu.io"
DRA_API_VERSION = "resource.k8s.io/v1"
# The request name in every claim the operator generates (one request, N GPUs).
DRA_REQUEST = "gpus"
# The name, in a pod's spec.resourceClaims, of the claim that holds its GPUs.
POD_GPU_CLAIM = "gpus"
# What an allocator puts on a claim it allocates, so that the controller manager
# clears the allocation before the claim is deleted (as kube-scheduler does).
CLAIM_FINALIZER = "resource.kubernetes.io/delete-protection"

# Device attributes. Unqualified names belong to the driver's own domain; the PCIe
# root is the standard name that every driver shares.
ATTR_INDEX = "index"
ATTR_UUID = "uuid"
ATTR_PRODUCT = "productName"
ATTR_PCI_BUS_ID = "pciBusID"
ATTR_NUMA_NODE = "numaNode"
ATTR_NVLINK_GROUP = "nvlinkGroup"
ATTR_PCIE_ROOT = "resource.kubernetes.io/pcieRoot"
CAPACITY_MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class DraGpu:
    """One GPU device of a ResourceSlice, as the engine sees it."""

    name: str  # the device name in the slice (what an allocation names)
    index: int
    uuid: str | None = None
    product: str | None = None
    numa_node: int | None = None
    pcie_root: str | None = None
    nvlink_group: int | None = None


@dataclass(frozen=True, slots=True)
class DraNode:
    """The GPUs one driver publishes for one node (all slices of its pool)."""

    node: str
    driver: str
    pool: str
    gpus: tuple[DraGpu, ...]

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def product(self) -> str | None:
        """The GPU model when every device names the same one."""
        products = {gpu.product for gpu in self.gpus}
        return products.pop() if len(products) == 1 else None

    def device_index(self) -> dict[str, int]:
        return {gpu.name: gpu.index for gpu in self.gpus}

    def wiring(self) -> Interconnect:
        """NVLink groups from the group attribute (a GPU without one is alone); NUMA
        nodes from `numaNode`, else one NUMA node per PCIe root, else node 0."""
        by_index = sorted(self.gpus, key=lambda gpu: gpu.index)
        groups: dict[int, list[int]] = {}
        alone: list[tuple[int, ...]] = []
        for gpu in by_index:
            if gpu.nvlink_group is None:
                alone.append((gpu.index,))
            else:
                groups.setdefault(gpu.nvlink_group, []).append(gpu.index)
        nvlink = tuple(tuple(members) for _, members in sorted(groups.items())) + tuple(alone)
        roots = sorted({gpu.pcie_root for gpu in by_index if gpu.pcie_root is not None})
        numa: list[int] = []
        for gpu in by_index:
            if gpu.numa_node is not None:
                numa.append(gpu.numa_node)
            elif gpu.pcie_root is not None:
                numa.append(roots.index(gpu.pcie_root))
            else:
                numa.append(0)
        try:
            return Interconnect(nvlink, tuple(numa))
        except ValueError as exc:
            raise ValueError(f"ResourceSlice devices of node {self.node}: {exc}") from None


def _attribute(device: Mapping[str, Any], name: str, kind: str) -> Any:
    attributes = device.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise ValueError(f"device {device.get('name')!r}: attributes must be an object")
    value = attributes.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping) or kind not in value:
        raise ValueError(f"device {device.get('name')!r}: attribute {name} must be of type {kind}")
    raw = value[kind]
    expected: type = {"int": int, "string": str, "bool": bool, "version": str}[kind]
    if not isinstance(raw, expected) or (kind == "int" and isinstance(raw, bool)):
        raise ValueError(f"device {device.get('name')!r}: attribute {name} must be of type {kind}")
    return raw


def parse_slices(
    slices: Sequence[Mapping[str, Any]], driver: str = GPU_DRIVER
) -> dict[str, DraNode]:
    """The GPUs `driver` publishes, per node name, from ResourceSlice objects.

    Slices of other drivers, and slices without a node (network-attached pools), are
    left out. A device without an `index` takes its place in the pool's name order.
    Only the newest generation of a pool counts (older slices are being replaced).
    """
    newest: dict[str, int] = {}
    for item in slices:
        spec = item.get("spec") or {}
        if spec.get("driver") != driver or not spec.get("nodeName"):
            continue
        pool = spec.get("pool") or {}
        name = str(pool.get("name") or spec["nodeName"])
        newest[name] = max(newest.get(name, 0), int(pool.get("generation") or 0))
    devices: dict[str, list[Mapping[str, Any]]] = {}
    node_of: dict[str, str] = {}
    for item in slices:
        spec = item.get("spec") or {}
        if spec.get("driver") != driver or not spec.get("nodeName"):
            continue
        pool = spec.get("pool") or {}
        name = str(pool.get("name") or spec["nodeName"])
        if int(pool.get("generation") or 0) != newest[name]:
            continue
        node_of[name] = str(spec["nodeName"])
        raw = spec.get("devices") or []
        if not isinstance(raw, list):
            raise ValueError(f"ResourceSlice of pool {name}: devices must be a list")
        devices.setdefault(name, []).extend(raw)
    result: dict[str, DraNode] = {}
    for pool_name, raw_devices in devices.items():
        node = node_of[pool_name]
        gpus = _gpus(raw_devices, node)
        result[node] = DraNode(node=node, driver=driver, pool=pool_name, gpus=gpus)
    return result


def _gpus(raw_devices: Sequence[Mapping[str, Any]], node: str) -> tuple[DraGpu, ...]:
    names = [str(device.get("name") or "") for device in raw_devices]
    if "" in names or len(set(names)) != len(names):
        raise ValueError(f"ResourceSlice devices of node {node}: names must be set and unique")
    by_name = dict(zip(names, raw_devices, strict=True))
    order = sorted(names)
    gpus: list[DraGpu] = []
    for name in names:
        device = by_name[name]
        index = _attribute(device, ATTR_INDEX, "int")
        gpus.append(
            DraGpu(
                name=name,
                index=order.index(name) if index is None else index,
                uuid=_attribute(device, ATTR_UUID, "string"),
                product=_attribute(device, ATTR_PRODUCT, "string"),
                numa_node=_attribute(device, ATTR_NUMA_NODE, "int"),
                pcie_root=_attribute(device, ATTR_PCIE_ROOT, "string"),
                nvlink_group=_attribute(device, ATTR_NVLINK_GROUP, "int"),
            )
        )
    indices = sorted(gpu.index for gpu in gpus)
    if indices != list(range(len(gpus))):
        raise ValueError(
            f"ResourceSlice devices of node {node}: indices {indices} are not 0..{len(gpus) - 1}"
        )
    return tuple(gpus)


@dataclass(frozen=True, slots=True)
class AllocatedDevice:
    driver: str
    pool: str
    device: str


@dataclass(frozen=True, slots=True)
class ClaimAllocation:
    """What one ResourceClaim holds: its devices and the pods it is reserved for."""

    namespace: str
    name: str
    uid: str
    devices: tuple[AllocatedDevice, ...]
    reserved_for: tuple[str, ...]  # pod UIDs


def parse_claim(claim: Mapping[str, Any]) -> ClaimAllocation | None:
    """The allocation of a ResourceClaim object, or None when it holds nothing."""
    meta = claim.get("metadata") or {}
    status = claim.get("status") or {}
    allocation = status.get("allocation")
    if not allocation:
        return None
    results = (allocation.get("devices") or {}).get("results") or []
    if not isinstance(results, list):
        raise ValueError(f"ResourceClaim {meta.get('name')}: allocation results must be a list")
    devices = []
    for result in results:
        if not isinstance(result, Mapping) or not all(
            isinstance(result.get(key), str) for key in ("driver", "pool", "device")
        ):
            raise ValueError(
                f"ResourceClaim {meta.get('name')}: an allocation result lacks driver/pool/device"
            )
        devices.append(AllocatedDevice(result["driver"], result["pool"], result["device"]))
    reserved = tuple(
        str(ref.get("uid"))
        for ref in status.get("reservedFor") or []
        if isinstance(ref, Mapping) and ref.get("resource") == "pods"
    )
    return ClaimAllocation(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        devices=tuple(devices),
        reserved_for=reserved,
    )


def used_gpus(
    claims: Sequence[ClaimAllocation], nodes: Mapping[str, DraNode]
) -> dict[str, frozenset[int]]:
    """GPU indices in use per node: every device any allocated claim names."""
    by_pool = {(node.driver, node.pool): node for node in nodes.values()}
    used: dict[str, set[int]] = {}
    for claim in claims:
        for device in claim.devices:
            node = by_pool.get((device.driver, device.pool))
            if node is None:
                continue
            index = node.device_index().get(device.device)
            if index is not None:
                used.setdefault(node.node, set()).add(index)
    return {node: frozenset(indices) for node, indices in used.items()}
