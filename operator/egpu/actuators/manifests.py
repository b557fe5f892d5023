"""Pure builders of the objects the operator creates: small, unit-tested."""

from __future__ import annotations

import copy
import json
from typing import Any

from egpu import API_VERSION, SCHEDULER_NAME
from egpu.domain.dra import DRA_API_VERSION, DRA_REQUEST, GPU_DEVICE_CLASS, POD_GPU_CLAIM
from egpu.domain.labels import (
    DOMAIN_ANNOTATION,
    DRA_GPUS_ANNOTATION,
    GANG_LABEL,
    GANG_MIN_ANNOTATION,
    GANG_SIZE_ANNOTATION,
    GPU_IDS_ANNOTATION,
    GPU_MODEL_ANNOTATION,
    GPU_RESOURCE,
    MANAGED_BY_LABEL,
    OPERATOR_OWNED_ANNOTATIONS,
    OPERATOR_OWNED_LABELS,
    PREFERRED_LEVEL_ANNOTATION,
    RANK_LABEL,
    REPAIR_ANNOTATION,
    REQUIRED_LEVEL_ANNOTATION,
    RESIZE_HEADROOM_ANNOTATION,
    RESUME_FROM_ANNOTATION,
    TOPOLOGY_ANNOTATION,
    WITHIN_ANNOTATION,
    WORKLOAD_LABEL,
)

# On the GPUWorkload: members moved to another node to grow (resize policy Move),
# by rank: {"3": {"within": [...], "containers": {"main": {"requests": {...},
# "limits": {...}}}}}. A recreated member of that rank gets these resources.
MOVED_MEMBERS_ANNOTATION = "egpu.io/moved-members"

RESIZED_RESOURCES = ("cpu", "memory")


def uses_dra(spec: dict[str, Any]) -> bool:
    return spec.get("gpuAllocation") == "DRA"


def claim_template_name(workload: str) -> str:
    return f"{workload}-gpus"


def _owner(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "GPUWorkload",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_claim_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The ResourceClaimTemplate of a DRA workload: exactly gpusPerPod GPUs per pod.

    The controller manager makes one claim per pod from it, owned by the pod, so a
    claim goes with its pod."""
    meta, spec = workload["metadata"], workload["spec"]
    labels = {WORKLOAD_LABEL: meta["name"], MANAGED_BY_LABEL: "egpu-operator"}
    request = {
        "name": DRA_REQUEST,
        "exactly": {
            "deviceClassName": GPU_DEVICE_CLASS,
            "allocationMode": "ExactCount",
            "count": int(spec.get("gpusPerPod", 1)),
        },
    }
    return {
        "apiVersion": DRA_API_VERSION,
        "kind": "ResourceClaimTemplate",
        "metadata": {
            "name": claim_template_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [_owner(meta)],
        },
        "spec": {
            "metadata": {"labels": dict(labels)},
            "spec": {"devices": {"requests": [request]}},
        },
    }


def member_pod_name(workload: str, rank: int) -> str:
    return f"{workload}-{rank}"


def _without(values: dict[str, Any] | None, owned: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if k not in owned}


def template_overrides(template: dict[str, Any]) -> list[str]:
    """What a pod template sets that the operator decides itself, so it is dropped or
    replaced in every pod made from it: the operator's own labels and annotations,
    `nodeName` (the binder places the pods), a `schedulerName` other than ours."""
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    found = [
        f"metadata.labels[{key}]"
        for key in sorted(meta.get("labels") or {})
        if key in OPERATOR_OWNED_LABELS
    ]
    found += [
        f"metadata.annotations[{key}]"
        for key in sorted(meta.get("annotations") or {})
        if key in OPERATOR_OWNED_ANNOTATIONS
    ]
    if spec.get("nodeName"):
        found.append(f"spec.nodeName={spec['nodeName']}")
    if spec.get("schedulerName") not in (None, "", SCHEDULER_NAME):
        found.append(f"spec.schedulerName={spec['schedulerName']}")
    return found


def resize_headroom(spec: dict[str, Any]) -> dict[str, str] | None:
    """What the binder keeps free beyond the requests of an Auto-resized member:
    `resize.headroom`, else one step of each resized resource; None when nothing."""
    resize = spec.get("resize") or {}
    if resize.get("mode") != "Auto":
        return None
    if "headroom" in resize:
        chosen = {k: str(v) for k, v in (resize.get("headroom") or {}).items() if v is not None}
    else:
        chosen = {
            kind: str((resize.get(kind) or {}).get("step") or default)
            for kind, default in (("cpu", "500m"), ("memory", "1Gi"))
            if resize.get(kind)
        }
    return chosen or None


def moved_members(workload: dict[str, Any]) -> dict[str, Any]:
    """The workload's record of moved members by rank; {} when absent or unreadable."""
    raw = ((workload.get("metadata") or {}).get("annotations") or {}).get(MOVED_MEMBERS_ANNOTATION)
    try:
        found = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def repair_record(workload: dict[str, Any]) -> dict[str, Any]:
    """The repair controller's record on the workload; {} when absent or unreadable."""
    raw = ((workload.get("metadata") or {}).get("annotations") or {}).get(REPAIR_ANNOTATION)
    try:
        found = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def _apply_moved_size(containers: list[dict[str, Any]], moved: dict[str, Any]) -> None:
    sizes = moved.get("containers")
    if not isinstance(sizes, dict):
        return
    for container in containers:
        size = sizes.get(container.get("name"))
        if not isinstance(size, dict):
            continue
        resources = container.setdefault("resources", {})
        for part in ("requests", "limits"):
            values = size.get(part)
            for kind in RESIZED_RESOURCES:
                value = values.get(kind) if isinstance(values, dict) else None
                if value is not None:
                    resources.setdefault(part, {})[kind] = str(value)


def moved_member_record(
    pod: dict[str, Any], resized: list[dict[str, Any]] | None, within: tuple[str, ...]
) -> dict[str, Any]:
    """What the workload keeps of a member moved to grow: the domain it stays in, and the
    cpu/memory of every container (the pod's own, then `resized`: resize patch
    containers, `{"name", "resources": {"requests", "limits"}}`)."""
    sizes: dict[str, dict[str, dict[str, str]]] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        sizes[container["name"]] = {
            part: {
                k: str(v) for k, v in (resources.get(part) or {}).items() if k in RESIZED_RESOURCES
            }
            for part in ("requests", "limits")
        }
    for change in resized or []:
        size = sizes.setdefault(str(change["name"]), {"requests": {}, "limits": {}})
        for part, values in (change.get("resources") or {}).items():
            size.setdefault(part, {}).update({k: str(v) for k, v in values.items()})
    return {"within": list(within), "containers": sizes}


def with_moved_size(pod: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A copy of `pod` whose containers carry the record's cpu/memory."""
    copied = copy.deepcopy(pod)
    _apply_moved_size(copied.get("spec", {}).get("containers") or [], record)
    return copied


def dropped_ranks(workload: dict[str, Any]) -> frozenset[int]:
    """Ranks an elastic repair dropped (not recreated until it grows back), below
    spec.replicas; from the repair record."""
    raw = repair_record(workload).get("dropped")
    replicas = int((workload.get("spec") or {}).get("replicas", 1))
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(r for r in raw if isinstance(r, int) and 0 <= r < replicas)


def gang_marks(spec: dict[str, Any], dropped: int = 0) -> tuple[str, str]:
    """The gang size and min members a workload's pods carry (wire spec, camelCase);
    `dropped`: members an elastic repair dropped, so the gang is smaller now."""
    gang = spec.get("gang") or {}
    size = max(1, int(spec.get("replicas", 1)) - dropped)
    if gang.get("policy", "AllOrNothing") == "AllOrNothing":
        return str(size), str(min(size, int(gang.get("minMembers") or size)))
    return "1", "1"


def build_member_pod(workload: dict[str, Any], rank: int) -> dict[str, Any]:
    """The pod of one gang member of a GPUWorkload (raw object, camelCase spec).

    A rank the resize loop moved to grow (`egpu.io/moved-members`) comes back at its
    grown size, to be placed inside its old domain."""
    meta, spec = workload["metadata"], workload["spec"]
    name, namespace = meta["name"], meta["namespace"]
    template = copy.deepcopy(spec["template"])
    pod_meta = template.get("metadata") or {}
    pod_spec = template["spec"]
    gpus = int(spec.get("gpusPerPod", 1))
    dra = uses_dra(spec)
    topology = spec.get("topology") or {}

    labels = {
        **_without(pod_meta.get("labels"), OPERATOR_OWNED_LABELS),
        WORKLOAD_LABEL: name,
        GANG_LABEL: name,
        RANK_LABEL: str(rank),
        MANAGED_BY_LABEL: "egpu-operator",
    }
    annotations = _without(pod_meta.get("annotations"), OPERATOR_OWNED_ANNOTATIONS)
    annotations[GANG_SIZE_ANNOTATION], annotations[GANG_MIN_ANNOTATION] = gang_marks(
        spec, len(dropped_ranks(workload))
    )
    if dra:
        annotations[DRA_GPUS_ANNOTATION] = str(gpus)
    if spec.get("gpuModel"):
        annotations[GPU_MODEL_ANNOTATION] = spec["gpuModel"]
    if topology.get("topologyName"):
        annotations[TOPOLOGY_ANNOTATION] = topology["topologyName"]
    if topology.get("required"):
        annotations[REQUIRED_LEVEL_ANNOTATION] = topology["required"]
    if topology.get("preferred"):
        annotations[PREFERRED_LEVEL_ANNOTATION] = topology["preferred"]
    headroom = resize_headroom(spec)
    if headroom:
        annotations[RESIZE_HEADROOM_ANNOTATION] = json.dumps(headroom, sort_keys=True)
    moved = moved_members(workload).get(str(rank))
    if isinstance(moved, dict) and moved.get("within"):
        annotations[WITHIN_ANNOTATION] = json.dumps([str(v) for v in moved["within"]])

    resume = repair_record(workload).get("resumeFrom")
    if isinstance(resume, str) and resume:
        annotations[RESUME_FROM_ANNOTATION] = resume

    containers = pod_spec["containers"]
    if isinstance(moved, dict):
        _apply_moved_size(containers, moved)
    for i, container in enumerate(containers):
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        requests = resources.setdefault("requests", {})
        # The GPUs go to the first container; extended resources need
        # requests == limits. Through DRA, the pod's claim carries them instead.
        if dra:
            limits.pop(GPU_RESOURCE, None)
            requests.pop(GPU_RESOURCE, None)
            if i == 0:
                claims = [
                    c for c in resources.get("claims") or [] if c.get("name") != POD_GPU_CLAIM
                ]
                resources["claims"] = [*claims, {"name": POD_GPU_CLAIM}]
        elif i == 0:
            limits[GPU_RESOURCE] = str(gpus)
            requests[GPU_RESOURCE] = str(gpus)
        env = container.setdefault("env", [])
        known = {e.get("name") for e in env}
        for var, path in (
            ("EGPU_RANK", f"metadata.labels['{RANK_LABEL}']"),
            ("EGPU_WORLD_SIZE", f"metadata.annotations['{GANG_SIZE_ANNOTATION}']"),
            ("EGPU_GPU_IDS", f"metadata.annotations['{GPU_IDS_ANNOTATION}']"),
            ("EGPU_TOPOLOGY_DOMAIN", f"metadata.annotations['{DOMAIN_ANNOTATION}']"),
            ("EGPU_NODE_NAME", "spec.nodeName"),
            ("EGPU_RESUME_FROM", f"metadata.annotations['{RESUME_FROM_ANNOTATION}']"),
        ):
            if var not in known:
                env.append({"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}})

    if dra:
        claims = [c for c in pod_spec.get("resourceClaims") or [] if c.get("name") != POD_GPU_CLAIM]
        template_ref = {
            "name": POD_GPU_CLAIM,
            "resourceClaimTemplateName": claim_template_name(name),
        }
        pod_spec["resourceClaims"] = [*claims, template_ref]
    pod_spec["schedulerName"] = SCHEDULER_NAME
    pod_spec.pop("nodeName", None)  # the binder places every member
    pod_spec.setdefault("restartPolicy", "Never")
    pod_spec.setdefault("hostname", member_pod_name(name, rank))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": member_pod_name(name, rank),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [_owner(meta)],
        },
        "spec": pod_spec,
    }
