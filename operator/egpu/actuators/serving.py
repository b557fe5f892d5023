"""Pure builders of a GPUInferenceService's objects: its pods and its Service.

Serving pods name `egpu-scheduler`, so the binder places them (each a gang of one:
no gang label). Their role label decides whether the Service selects them: warm-pool
pods are placed and started with the same template but carry `role=warm`, so
promoting one is a relabel, with no cold start.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from egpu import API_VERSION, SCHEDULER_NAME
from egpu.domain.labels import (
    ARTEFACTS_ANNOTATION,
    GPU_IDS_ANNOTATION,
    GPU_MODEL_ANNOTATION,
    GPU_RESOURCE,
    MANAGED_BY_LABEL,
)
from egpu.engines.inference.rollout import Role

SERVICE_LABEL = "egpu.io/inference-service"
ROLE_LABEL = "egpu.io/role"
REVISION_LABEL = "egpu.io/revision"
INDEX_LABEL = "egpu.io/replica-index"
KIND = "GPUInferenceService"


def template_revision(spec: dict[str, Any]) -> str:
    """A short hash of what the pods are made from: a change means a rollout."""
    basis = {
        "template": spec.get("template") or {},
        "gpusPerPod": spec.get("gpusPerPod", 1),
        "gpuModel": spec.get("gpuModel"),
    }
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()[:10]


def serving_pod_name(service: str, revision: str, index: int) -> str:
    return f"{service}-{revision}-{index}"


def serving_selector(service: str) -> dict[str, str]:
    """The Service's selector (and the scale subresource's): serving pods only."""
    return {SERVICE_LABEL: service, ROLE_LABEL: "serving"}


def selector_string(service: str) -> str:
    return ",".join(f"{k}={v}" for k, v in serving_selector(service).items())


def owner_reference(service: dict[str, Any]) -> dict[str, Any]:
    meta = service["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_serving_pod(
    service: dict[str, Any], revision: str, index: int, role: Role
) -> dict[str, Any]:
    """One serving (or warm) pod of the service (raw object, camelCase spec)."""
    meta, spec = service["metadata"], service["spec"]
    name, namespace = meta["name"], meta["namespace"]
    template = copy.deepcopy(spec["template"])
    pod_meta = template.get("metadata") or {}
    pod_spec = template["spec"]
    gpus = int(spec.get("gpusPerPod", 1))
    labels = {
        **(pod_meta.get("labels") or {}),
        SERVICE_LABEL: name,
        ROLE_LABEL: role,
        REVISION_LABEL: revision,
        INDEX_LABEL: str(index),
        MANAGED_BY_LABEL: "egpu-operator",
    }
    annotations = {**(pod_meta.get("annotations") or {})}
    if spec.get("gpuModel"):
        annotations[GPU_MODEL_ANNOTATION] = spec["gpuModel"]
    # What the binder looks for on nodes comes from spec.startup alone, never the template.
    annotations.pop(ARTEFACTS_ANNOTATION, None)
    artefacts = (spec.get("startup") or {}).get("artefacts") or []
    if artefacts:
        annotations[ARTEFACTS_ANNOTATION] = ",".join(artefacts)
    for i, container in enumerate(pod_spec["containers"]):
        resources = container.setdefault("resources", {})
        if i == 0 and gpus > 0:
            resources.setdefault("limits", {})[GPU_RESOURCE] = str(gpus)
            resources.setdefault("requests", {})[GPU_RESOURCE] = str(gpus)
        env = container.setdefault("env", [])
        if not any(e.get("name") == "EGPU_GPU_IDS" for e in env):
            env.append(
                {
                    "name": "EGPU_GPU_IDS",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": f"metadata.annotations['{GPU_IDS_ANNOTATION}']"}
                    },
                }
            )
    pod_spec["schedulerName"] = SCHEDULER_NAME
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": serving_pod_name(name, revision, index),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(service)],
        },
        "spec": pod_spec,
    }


def role_patch(role: Role) -> dict[str, Any]:
    """Merge patch that promotes (serving) or demotes (warm) a pod."""
    return {"metadata": {"labels": {ROLE_LABEL: role}}}


def service_ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    """One Service port per named or numbered container port of the template."""
    ports = []
    containers = ((service["spec"].get("template") or {}).get("spec") or {}).get("containers")
    for container in containers or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if number is None:
                continue
            entry: dict[str, Any] = {
                "name": port.get("name") or f"port-{number}",
                "port": number,
                "targetPort": number,
                "protocol": port.get("protocol", "TCP"),
            }
            ports.append(entry)
    return ports


def build_service(service: dict[str, Any]) -> dict[str, Any]:
    """The Service in front of the serving pods; only Ready ones get endpoints.

    Without a container port it is headless: it still names the ready pods in DNS.
    """
    meta = service["metadata"]
    ports = service_ports(service)
    spec: dict[str, Any] = {"selector": serving_selector(meta["name"])}
    if ports:
        spec["ports"] = ports
    else:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {SERVICE_LABEL: meta["name"], MANAGED_BY_LABEL: "egpu-operator"},
            "ownerReferences": [owner_reference(service)],
        },
        "spec": spec,
    }
