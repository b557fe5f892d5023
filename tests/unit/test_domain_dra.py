from __future__ import annotations

from typing import Any

import pytest

from egpu.domain.dra import (
    GPU_DRIVER,
    AllocatedDevice,
    parse_claim,
    parse_slices,
    used_gpus,
)

pytestmark = pytest.mark.unit


def device(name: str, **attributes: Any) -> dict[str, Any]:
    typed = {
        key: {"int": value} if isinstance(value, int) else {"string": value}
        for key, value in attributes.items()
    }
    return {"name": name, "attributes": typed}


def slice_of(
    node: str, devices: list[dict[str, Any]], driver: str = GPU_DRIVER, generation: int = 1
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{node}-{driver}-{generation}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def claim(name: str, devices: list[tuple[str, str]], pods: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "gpus", "driver": GPU_DRIVER, "pool": pool, "device": dev}
                        for pool, dev in devices
                    ]
                }
            },
            "reservedFor": [{"resource": "pods", "name": p, "uid": p} for p in pods],
        },
    }


def test_wiring_comes_from_nvlink_group_and_numa_attributes() -> None:
    devices = [device(f"gpu-{i}", index=i, numaNode=i // 2, nvlinkGroup=i // 2) for i in range(4)]
    node = parse_slices([slice_of("n1", devices)])["n1"]
    assert node.gpu_count == 4
    wiring = node.wiring()
    assert wiring.nvlink_groups == ((0, 1), (2, 3))
    assert wiring.numa == (0, 0, 1, 1)


def test_numa_falls_back_to_pcie_root_and_gpus_without_group_stand_alone() -> None:
    roots = ["pci0000:20", "pci0000:20", "pci0000:10"]
    devices = [
        device(f"gpu-{i}", index=i, **{"resource.kubernetes.io/pcieRoot": root})
        for i, root in enumerate(roots)
    ]
    wiring = parse_slices([slice_of("n1", devices)])["n1"].wiring()
    assert wiring.nvlink_groups == ((0,), (1,), (2,))
    assert wiring.numa == (1, 1, 0)  # roots in name order: pci0000:10 is 0


def test_devices_without_index_are_numbered_in_name_order() -> None:
    node = parse_slices([slice_of("n1", [device("b"), device("a")])])["n1"]
    assert node.device_index() == {"a": 0, "b": 1}


def test_other_drivers_nodeless_slices_and_old_generations_are_left_out() -> None:
    slices = [
        slice_of("n1", [device("gpu-0", index=0)], generation=1),
        slice_of("n1", [device("gpu-0", index=0), device("gpu-1", index=1)], generation=2),
        slice_of("n2", [device("nic-0")], driver="nic.example.com"),
        {"spec": {"driver": GPU_DRIVER, "pool": {"name": "net"}, "devices": []}},
    ]
    nodes = parse_slices(slices)
    assert set(nodes) == {"n1"}
    assert nodes["n1"].gpu_count == 2


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ([device("gpu-0", index=0), device("gpu-0", index=1)], "unique"),
        ([device("gpu-0", index=0), device("gpu-1", index=5)], "not 0..1"),
        ([{"name": "gpu-0", "attributes": {"index": {"string": "0"}}}], "must be of type int"),
        ([device("gpu-0", index=0, nvlinkGroup=0), device("gpu-1", index=0)], "not 0..1"),
    ],
)
def test_bad_slices_raise_a_clear_error(devices: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slices([slice_of("n1", devices)])


def test_claims_name_the_devices_they_hold_and_count_as_used() -> None:
    nodes = parse_slices(
        [slice_of("n1", [device(f"gpu-{i}", index=i) for i in range(4)]), slice_of("n2", [])]
    )
    first = parse_claim(claim("a", [("n1", "gpu-1"), ("n1", "gpu-3")], pods=("pod-a",)))
    foreign = parse_claim(claim("b", [("n1", "gpu-0"), ("elsewhere", "gpu-0")]))
    assert first is not None and foreign is not None
    assert first.devices[0] == AllocatedDevice(GPU_DRIVER, "n1", "gpu-1")
    assert first.reserved_for == ("pod-a",)
    assert used_gpus([first, foreign], nodes) == {"n1": frozenset({0, 1, 3})}


def test_a_claim_without_allocation_holds_nothing_and_a_broken_one_is_refused() -> None:
    assert parse_claim({"metadata": {"name": "c"}, "status": {}}) is None
    broken = {"metadata": {"name": "c"}, "status": {"allocation": {"devices": {"results": [{}]}}}}
    with pytest.raises(ValueError, match="lacks driver/pool/device"):
        parse_claim(broken)


def test_a_node_with_a_slice_takes_count_model_and_wiring_from_it_not_its_annotation() -> None:
    from egpu.domain.node import node_from_kubernetes

    devices = [
        device(f"gpu-{i}", index=i, numaNode=i % 2, nvlinkGroup=i % 2, productName="H200")
        for i in range(4)
    ]
    dra = parse_slices([slice_of("n1", devices)])["n1"]
    annotation = '{"nvlinkGroups": [[0, 1, 2, 3, 4, 5, 6, 7]]}'
    node = node_from_kubernetes(
        "n1", {"nvidia.com/gpu.count": "8"}, {"egpu.io/gpu-interconnect": annotation}, {}, dra=dra
    )
    assert (node.gpu_count, node.gpu_model, node.dra) == (4, "H200", True)
    assert node.wiring.nvlink_groups == ((0, 2), (1, 3))
    assert node.wiring.numa == (0, 1, 0, 1)
    plain = node_from_kubernetes(
        "n1", {}, {"egpu.io/gpu-interconnect": annotation}, {"nvidia.com/gpu": "8"}
    )
    assert not plain.dra and plain.wiring.nvlink_groups == (tuple(range(8)),)
