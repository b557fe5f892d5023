"""The binder as DRA allocator: every judgement on a pod's claim, and the allocation it
writes (exactly the planned devices, usable on the planned node only)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from egpu.domain.dra import GPU_DEVICE_CLASS, GPU_DRIVER, AllocatedDevice, DraGpu, DraNode
from egpu.engines.binding.claims import (
    ClaimAction,
    allocation_body,
    judge_claim,
    planned_devices,
)

pytestmark = pytest.mark.unit

NODE = DraNode("n0", GPU_DRIVER, "n0", tuple(DraGpu(f"gpu-{i}", i) for i in range(4)))
PLANNED = planned_devices(NODE, (2, 3))


def claim(count: int = 2, owner: str = "pod-uid", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "p-gpus-abc",
            "resourceVersion": "7",
            "ownerReferences": [{"kind": "Pod", "name": "p", "uid": owner, "controller": True}],
        },
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpus",
                        "exactly": {
                            "deviceClassName": GPU_DEVICE_CLASS,
                            "allocationMode": "ExactCount",
                            "count": count,
                        },
                    }
                ]
            }
        },
        "status": status,
    }


def allocated(devices: tuple[AllocatedDevice, ...], *users: str) -> dict[str, Any]:
    reserved = [{"resource": "pods", "name": "x", "uid": u} for u in users]
    return {"allocation": allocation_body("n0", devices), "reservedFor": reserved}


def test_planned_indices_name_the_slice_devices() -> None:
    names = [(d.driver, d.pool, d.device) for d in PLANNED]
    assert names == [(GPU_DRIVER, "n0", "gpu-2"), (GPU_DRIVER, "n0", "gpu-3")]
    with pytest.raises(ValueError, match="no GPU"):
        planned_devices(NODE, (4,))


def test_the_allocation_names_exactly_the_planned_devices_on_the_node() -> None:
    body = allocation_body("n0", PLANNED)
    assert [r["device"] for r in body["devices"]["results"]] == ["gpu-2", "gpu-3"]
    assert {r["request"] for r in body["devices"]["results"]} == {"gpus"}
    term = body["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]
    assert term == {"key": "metadata.name", "operator": "In", "values": ["n0"]}


def test_an_unallocated_claim_of_the_pod_is_allocated() -> None:
    assert judge_claim(claim(), "pod-uid", PLANNED, {}).action is ClaimAction.ALLOCATE


def test_an_allocation_already_made_for_the_pod_is_kept() -> None:
    done = claim(**allocated(PLANNED, "pod-uid"))
    assert judge_claim(done, "pod-uid", PLANNED, {}).action is ClaimAction.KEEP
    unreserved = claim(**allocated(PLANNED))
    assert judge_claim(unreserved, "pod-uid", PLANNED, {}).action is ClaimAction.RESERVE


def test_the_pods_own_stale_allocation_is_made_again() -> None:
    stale = claim(**allocated(planned_devices(NODE, (0, 1)), "pod-uid"))
    assert judge_claim(stale, "pod-uid", PLANNED, {}).action is ClaimAction.REALLOCATE


@pytest.mark.parametrize(
    ("body", "held", "words"),
    [
        (claim(owner="someone-else"), {}, "not made for this pod"),
        (claim(count=3), {}, "asks for 3 GPUs, the pod for 2"),
        (claim(), {PLANNED[1]: "other/theirs"}, "gpu-3 (other/theirs)"),
        (claim(**allocated(planned_devices(NODE, (0, 1)), "other")), {}, "in use by other"),
    ],
)
def test_conflicts_are_refused_and_never_written(
    body: dict[str, Any], held: dict[AllocatedDevice, str], words: str
) -> None:
    verdict = judge_claim(body, "pod-uid", PLANNED, held)
    assert verdict.action is ClaimAction.REFUSE and words in verdict.message


def test_a_claim_being_deleted_or_of_another_class_is_refused() -> None:
    going = claim()
    going["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    assert judge_claim(going, "pod-uid", PLANNED, {}).action is ClaimAction.REFUSE
    other = copy.deepcopy(claim())
    other["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "nic"
    verdict = judge_claim(other, "pod-uid", PLANNED, {})
    assert verdict.action is ClaimAction.REFUSE and "DeviceClass" in verdict.message
