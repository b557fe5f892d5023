"""Pods whose GPUs come through their DRA claim: their GPU demand, their claim, and
which resource claims the binder refuses."""

from __future__ import annotations

from typing import Any

import pytest

from egpu.domain.dra import POD_GPU_CLAIM
from egpu.domain.labels import DRA_GPUS_ANNOTATION
from egpu.state.pods import read_pod
from objects import gpu_pod

pytestmark = pytest.mark.unit


def dra_pod(gpus: str | None = "4", claim: str | None = None, **kwargs: Any) -> dict[str, Any]:
    annotations = {DRA_GPUS_ANNOTATION: gpus} if gpus is not None else {}
    pod = gpu_pod("p", gpus=0, annotations=annotations, uid="u1", **kwargs)
    pod["spec"]["resourceClaims"] = [{"name": POD_GPU_CLAIM, "resourceClaimTemplateName": "w-gpus"}]
    pod["spec"]["containers"][0]["resources"]["claims"] = [{"name": POD_GPU_CLAIM}]
    if claim is not None:
        made = {"name": POD_GPU_CLAIM, "resourceClaimName": claim}
        pod["status"] = {"resourceClaimStatuses": [made]}
    return pod


def test_a_dra_pod_asks_the_gpus_its_claim_annotation_says() -> None:
    facts = read_pod(dra_pod())
    assert facts.dra and facts.demand.gpus == 4
    assert facts.unsupported == () and facts.problem is None
    assert facts.gpu_claim is None  # the controller manager has not made it yet


def test_the_generated_claim_is_read_from_the_pod_status() -> None:
    assert read_pod(dra_pod(claim="p-gpus-x7k2")).gpu_claim == "p-gpus-x7k2"


def test_a_device_plugin_pod_is_no_dra_pod() -> None:
    facts = read_pod(gpu_pod("p", gpus=2))
    assert not facts.dra and facts.gpu_claim is None and facts.demand.gpus == 2


def test_claims_the_binder_does_not_allocate_are_refused_by_name() -> None:
    pod = dra_pod()
    pod["spec"]["resourceClaims"].append({"name": "rdma", "resourceClaimTemplateName": "nic"})
    assert read_pod(pod).unsupported == ("spec.resourceClaims[1] (rdma)",)
    # Without the annotation that sizes it, the GPU claim is not one the binder knows.
    assert read_pod(dra_pod(gpus=None)).unsupported == ("spec.resourceClaims[0] (gpus)",)


def test_a_bad_gpu_count_is_a_problem_not_a_crash() -> None:
    facts = read_pod(dra_pod(gpus="two"))
    assert facts.problem is not None and DRA_GPUS_ANNOTATION in facts.problem
