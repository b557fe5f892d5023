"""The binder as DRA allocator, pure: what to do with a pod's GPU claim so that it
holds exactly the planned devices, and when to refuse.

A pod's claim is made by the controller manager from its workload's template, owned by
the pod, and allocated by the binder (status.allocation and status.reservedFor) after
the gang's plans are recorded and before the pod is bound. The binder never overwrites
an allocation that serves anyone else: a claim allocated elsewhere, or a planned
device that another claim holds, is a conflict, reported and left as it is. Only the
pod's own stale allocation (an attempt that did not reach its bind) is cleared and
made again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from egpu.domain.dra import (
    DRA_REQUEST,
    GPU_DEVICE_CLASS,
    AllocatedDevice,
    DraNode,
    parse_claim,
)


class ClaimAction(StrEnum):
    ALLOCATE = "Allocate"  # not allocated: write the allocation, reserved for the pod
    KEEP = "Keep"  # already allocated to the planned devices and reserved for the pod
    RESERVE = "Reserve"  # allocated to the planned devices, not yet reserved for the pod
    REALLOCATE = "Reallocate"  # the pod's own stale allocation: clear it, then allocate
    REFUSE = "Refuse"  # a conflict or a claim that is not the pod's: never written


@dataclass(frozen=True, slots=True)
class ClaimVerdict:
    action: ClaimAction
    message: str = ""


def planned_devices(node: DraNode, gpu_indices: Sequence[int]) -> tuple[AllocatedDevice, ...]:
    """The devices of the planned GPU indices on a DRA node. Raises ValueError for an
    index the node's slices do not publish."""
    names = {gpu.index: gpu.name for gpu in node.gpus}
    missing = [i for i in gpu_indices if i not in names]
    if missing:
        raise ValueError(f"node {node.node} publishes no GPU {missing}")
    return tuple(AllocatedDevice(node.driver, node.pool, names[i]) for i in gpu_indices)


def allocation_body(node: str, devices: Sequence[AllocatedDevice]) -> dict[str, Any]:
    """status.allocation for the devices, usable on `node` only."""
    return {
        "devices": {
            "results": [
                {"request": DRA_REQUEST, "driver": d.driver, "pool": d.pool, "device": d.device}
                for d in devices
            ]
        },
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
    }


def judge_claim(
    claim: Mapping[str, Any],
    pod_uid: str,
    planned: Sequence[AllocatedDevice],
    held_by_others: Mapping[AllocatedDevice, str],
) -> ClaimVerdict:
    """What to do with the pod's claim for the `planned` devices. `held_by_others`:
    devices that other allocated claims hold, with the claim's key."""
    meta = claim.get("metadata") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    if meta.get("deletionTimestamp"):
        return _refuse(f"ResourceClaim {name} is being deleted")
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
    if not any(o.get("kind") == "Pod" and o.get("uid") == pod_uid for o in owners):
        return _refuse(f"ResourceClaim {name} was not made for this pod")
    problem = _request_problem(claim, len(planned))
    if problem:
        return _refuse(f"ResourceClaim {name}: {problem}")
    taken = sorted(f"{d.device} ({held_by_others[d]})" for d in planned if d in held_by_others)
    if taken:
        return _refuse(f"devices already allocated to other claims: {', '.join(taken)}")
    try:
        current = parse_claim(claim)
    except ValueError as exc:
        return _refuse(str(exc))
    if current is None:
        return ClaimVerdict(ClaimAction.ALLOCATE)
    same = set(current.devices) == set(planned)
    if same and pod_uid in current.reserved_for:
        return ClaimVerdict(ClaimAction.KEEP)
    others = [uid for uid in current.reserved_for if uid != pod_uid]
    if others:
        return _refuse(f"ResourceClaim {name} is allocated and in use by {', '.join(others)}")
    if same:
        return ClaimVerdict(ClaimAction.RESERVE)
    return ClaimVerdict(
        ClaimAction.REALLOCATE,
        f"ResourceClaim {name} held other devices from an attempt that was not bound",
    )


def _refuse(message: str) -> ClaimVerdict:
    return ClaimVerdict(ClaimAction.REFUSE, message)


def _request_problem(claim: Mapping[str, Any], count: int) -> str:
    requests = ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []
    if len(requests) != 1 or requests[0].get("name") != DRA_REQUEST:
        return f"must hold exactly one request named {DRA_REQUEST!r}"
    exactly = requests[0].get("exactly") or {}
    if exactly.get("deviceClassName") != GPU_DEVICE_CLASS:
        return f"its request must name DeviceClass {GPU_DEVICE_CLASS}"
    if (exactly.get("allocationMode") or "ExactCount") != "ExactCount":
        return "its request must use allocationMode ExactCount"
    if exactly.get("selectors") or requests[0].get("firstAvailable"):
        return "selectors and firstAvailable are not supported by the binder"
    asked = exactly.get("count", 1)
    if asked != count:
        return f"asks for {asked} GPUs, the pod for {count}"
    return ""
