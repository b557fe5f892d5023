"""Member pods of a DRA workload: one generated claim per pod, no device-plugin GPUs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from egpu.actuators.manifests import (
    POD_GPU_CLAIM,
    build_claim_template,
    build_member_pod,
    claim_template_name,
)
from egpu.api.workload import GPUWorkloadSpec
from egpu.domain.dra import DRA_REQUEST, GPU_DEVICE_CLASS

pytestmark = pytest.mark.unit


def workload(allocation: str | None, gpus: int = 4) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 2,
        "gpusPerPod": gpus,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "8Gi"}},
                    },
                    {
                        "name": "side",
                        "image": "busybox",
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    },
                ],
                "resourceClaims": [{"name": "scratch", "resourceClaimName": "scratch"}],
            }
        },
    }
    if allocation is not None:
        spec["gpuAllocation"] = allocation
    return {"metadata": {"name": "w", "namespace": "ns", "uid": "u1"}, "spec": spec}


def test_the_api_defaults_to_the_device_plugin() -> None:
    spec = GPUWorkloadSpec.model_validate(workload(None)["spec"])
    assert spec.gpu_allocation == "DevicePlugin"
    assert GPUWorkloadSpec.model_validate(workload("DRA")["spec"]).gpu_allocation == "DRA"
    with pytest.raises(ValueError):
        GPUWorkloadSpec.model_validate(workload("Magic")["spec"])


def test_a_dra_pod_names_the_workloads_claim_template_instead_of_nvidia_gpu() -> None:
    pod = build_member_pod(workload("DRA"), 1)
    main, side = pod["spec"]["containers"]
    assert "nvidia.com/gpu" not in main["resources"]["limits"]
    assert "nvidia.com/gpu" not in main["resources"].get("requests", {})
    assert "nvidia.com/gpu" not in side["resources"]["limits"]
    assert main["resources"]["claims"] == [{"name": POD_GPU_CLAIM}]
    assert "claims" not in side["resources"]
    assert pod["spec"]["resourceClaims"] == [
        {"name": "scratch", "resourceClaimName": "scratch"},
        {"name": POD_GPU_CLAIM, "resourceClaimTemplateName": claim_template_name("w")},
    ]


def test_a_template_cannot_bring_its_own_gpu_claim() -> None:
    body = workload("DRA")
    body["spec"]["template"]["spec"]["resourceClaims"].append(
        {"name": POD_GPU_CLAIM, "resourceClaimName": "someone-elses"}
    )
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["claims"] = [
        {"name": POD_GPU_CLAIM}
    ]
    pod = build_member_pod(body, 0)
    ours = [c for c in pod["spec"]["resourceClaims"] if c["name"] == POD_GPU_CLAIM]
    assert ours == [{"name": POD_GPU_CLAIM, "resourceClaimTemplateName": "w-gpus"}]
    assert pod["spec"]["containers"][0]["resources"]["claims"] == [{"name": POD_GPU_CLAIM}]


def test_a_device_plugin_pod_is_unchanged_by_dra() -> None:
    for allocation in (None, "DevicePlugin"):
        pod = build_member_pod(workload(allocation), 0)
        main = pod["spec"]["containers"][0]
        assert main["resources"]["limits"]["nvidia.com/gpu"] == "4"
        assert main["resources"]["requests"]["nvidia.com/gpu"] == "4"
        assert "claims" not in main["resources"]
        assert pod["spec"]["resourceClaims"] == [
            {"name": "scratch", "resourceClaimName": "scratch"}
        ]


def test_the_claim_template_asks_exactly_gpus_per_pod_of_the_project_class() -> None:
    body = workload("DRA", gpus=8)
    before = copy.deepcopy(body)
    template = build_claim_template(body)
    assert body == before
    assert template["apiVersion"] == "resource.k8s.io/v1"
    assert template["kind"] == "ResourceClaimTemplate"
    assert template["metadata"]["name"] == "w-gpus"
    assert template["metadata"]["namespace"] == "ns"
    owner = template["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("GPUWorkload", "u1", True)
    assert template["spec"]["spec"]["devices"]["requests"] == [
        {
            "name": DRA_REQUEST,
            "exactly": {
                "deviceClassName": GPU_DEVICE_CLASS,
                "allocationMode": "ExactCount",
                "count": 8,
            },
        }
    ]
