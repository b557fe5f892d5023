"""Pure builders of the objects the operator creates: small, unit-tested."""

from __future__ import annotations

import copy
from typing import Any

from egpu import API_VERSION, SCHEDULER_NAME

WORKLOAD_LABEL = "egpu.io/workload"
GANG_LABEL = "egpu.io/gang"
RANK_LABEL = "egpu.io/rank"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

GANG_SIZE_ANNOTATION = "egpu.io/gang-size"
GANG_MIN_ANNOTATION = "egpu.io/gang-min-members"
GPU_MODEL_ANNOTATION = "egpu.io/gpu-model"
TOPOLOGY_ANNOTATION = "egpu.io/topology"
REQUIRED_LEVEL_ANNOTATION = "egpu.io/topology-required"
PREFERRED_LEVEL_ANNOTATION = "egpu.io/topology-preferred"
# Written by the binder before it binds: the plan survives an operator restart.
ASSIGNED_NODE_ANNOTATION = "egpu.io/assigned-node"
GPU_IDS_ANNOTATION = "egpu.io/gpu-ids"
DOMAIN_ANNOTATION = "egpu.io/domain"

GPU_RESOURCE = "nvidia.com/gpu"


def member_pod_name(workload: str, rank: int) -> str:
    return f"{workload}-{rank}"


def build_member_pod(workload: dict[str, Any], rank: int) -> dict[str, Any]:
    """The pod of one gang member of a GPUWorkload (raw object, camelCase spec)."""
    meta, spec = workload["metadata"], workload["spec"]
    name, namespace = meta["name"], meta["namespace"]
    template = copy.deepcopy(spec["template"])
    pod_meta = template.get("metadata") or {}
    pod_spec = template["spec"]
    gpus = int(spec.get("gpusPerPod", 1))
    topology = spec.get("topology") or {}
    gang = spec.get("gang") or {}
    replicas = int(spec.get("replicas", 1))

    labels = {
        **(pod_meta.get("labels") or {}),
        WORKLOAD_LABEL: name,
        GANG_LABEL: name,
        RANK_LABEL: str(rank),
        MANAGED_BY_LABEL: "egpu-operator",
    }
    annotations = {**(pod_meta.get("annotations") or {})}
    if gang.get("policy", "AllOrNothing") == "AllOrNothing":
        annotations[GANG_SIZE_ANNOTATION] = str(replicas)
        annotations[GANG_MIN_ANNOTATION] = str(gang.get("minMembers") or replicas)
    else:
        annotations[GANG_SIZE_ANNOTATION] = "1"
        annotations[GANG_MIN_ANNOTATION] = "1"
    if spec.get("gpuModel"):
        annotations[GPU_MODEL_ANNOTATION] = spec["gpuModel"]
    if topology.get("topologyName"):
        annotations[TOPOLOGY_ANNOTATION] = topology["topologyName"]
    if topology.get("required"):
        annotations[REQUIRED_LEVEL_ANNOTATION] = topology["required"]
    if topology.get("preferred"):
        annotations[PREFERRED_LEVEL_ANNOTATION] = topology["preferred"]

    containers = pod_spec["containers"]
    for i, container in enumerate(containers):
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        requests = resources.setdefault("requests", {})
        # The GPUs go to the first container; extended resources need
        # requests == limits.
        if i == 0:
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
        ):
            if var not in known:
                env.append({"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}})

    pod_spec["schedulerName"] = SCHEDULER_NAME
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
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "GPUWorkload",
                    "name": name,
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }
