"""Raw objects for tests: nodes and pods as the API server serves them (unit tests),
and GPUWorkload manifests as a user writes them (e2e tests)."""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]
WORKLOAD_API = "egpu.io/v1alpha1"


def gpu_node(
    name: str,
    gpus: int = 8,
    block: str = "b0",
    leaf: str = "l0",
    cpu: str = "128",
    memory: str = "1Ti",
    model: str = "NVIDIA-H100",
    ready: bool = True,
    **annotations: str,
) -> JSON:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {
                "egpu.io/block": block,
                "egpu.io/leaf": leaf,
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": model,
            },
            "annotations": dict(annotations),
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def owner(workload: str, uid: str | None = None, kind: str = "GPUWorkload") -> JSON:
    return {
        "apiVersion": WORKLOAD_API,
        "kind": kind,
        "name": workload,
        "uid": uid or f"uid-{workload}",
        "controller": True,
    }


def gpu_pod(
    name: str,
    gpus: int = 1,
    namespace: str = "ns",
    node: str | None = None,
    ours: bool = True,
    cpu: str = "1",
    memory: str = "1Gi",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: list[JSON] | None = None,
    uid: str | None = None,
) -> JSON:
    resources: JSON = {"requests": {"cpu": cpu, "memory": memory}}
    if gpus:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    spec: JSON = {"containers": [{"name": "main", "image": "x", "resources": resources}]}
    if ours:
        spec["schedulerName"] = "egpu-scheduler"
    if node:
        spec["nodeName"] = node
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels or {}),
        "annotations": dict(annotations or {}),
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    if uid is not None:
        meta["uid"] = uid
    if owners:
        meta["ownerReferences"] = owners
    return {"metadata": meta, "spec": spec, "status": {"phase": "Pending"}}


def member_pod(workload: str, rank: int, size: int, gpus: int = 8, **kw: Any) -> JSON:
    """A GPUWorkload member as the workload controller makes it."""
    annotations = {
        "egpu.io/gang-size": str(size),
        "egpu.io/gang-min-members": str(size),
        **kw.pop("annotations", {}),
    }
    labels = {"egpu.io/workload": workload, "egpu.io/gang": workload, "egpu.io/rank": str(rank)}
    return gpu_pod(
        f"{workload}-{rank}",
        gpus=gpus,
        labels=labels,
        annotations=annotations,
        owners=[owner(workload)],
        **kw,
    )


def plan_annotation(uid: str, node: str, gpus: list[int], plan: str, size: int) -> str:
    return json.dumps(
        {"uid": uid, "node": node, "gpus": gpus, "domain": {}, "plan": plan, "size": size}
    )


def gpu_workload(
    name: str,
    model: str,
    replicas: int = 1,
    gpus: int = 8,
    *,
    required: str | None = "egpu.io/leaf",
    gang: str | None = "AllOrNothing",
    requests: dict[str, str] | None = None,
    container: str = "trainer",
    image: str = "registry.local/egpu/trainer:latest",
    template_metadata: JSON | None = None,
    pod_spec: JSON | None = None,
    **spec: Any,
) -> str:
    """A GPUWorkload manifest (JSON text for `kubectl apply -f -`): a gang of
    `replicas` pods of `gpus` GPUs of `model`, in one `required` domain of the
    default topology. `spec` adds or overrides top-level spec fields (e.g.
    gpuAllocation, repair); `pod_spec` adds pod spec fields beside the container."""
    main: JSON = {"name": container, "image": image}
    if requests is None:
        requests = {"cpu": "1", "memory": "1Gi"}
    if requests:
        main["resources"] = {"requests": requests}
    template: JSON = {"spec": {"containers": [main], **(pod_spec or {})}}
    if template_metadata is not None:
        template["metadata"] = template_metadata
    body: JSON = {"replicas": replicas, "gpusPerPod": gpus, "gpuModel": model}
    if gang is not None:
        body["gang"] = {"policy": gang}
    if required is not None:
        body["topology"] = {"topologyName": "default", "required": required}
    body["template"] = template
    manifest = {
        "apiVersion": WORKLOAD_API,
        "kind": "GPUWorkload",
        "metadata": {"name": name},
        "spec": {**body, **spec},
    }
    return json.dumps(manifest)
