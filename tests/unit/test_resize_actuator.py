"""The resize actuator's pure parts: reading the kubelet's resize conditions, and the
last check of a pods/resize patch (cpu and memory only, QoS kept)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from egpu.actuators.resize import (
    ResizeRefusedError,
    apply_resize,
    check_patch,
    read_resize_status,
    resized_containers,
)
from egpu.kube.client import STRATEGIC_PATCH

pytestmark = pytest.mark.unit


def pod(
    *,
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    status_resources: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    generation: int = 1,
    observed: int | None = 1,
) -> dict[str, Any]:
    resources = {
        "requests": requests or {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"},
        "limits": limits or {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": conditions or [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "main", "resources": status_resources or copy.deepcopy(resources)}
        ],
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {"name": "p", "namespace": "ns", "generation": generation},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "resources": resources}]},
        "status": status,
    }


def patch(container: str = "main", **resources: dict[str, str]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": container, "resources": resources}]}}


# --- reading the kubelet's answer ------------------------------------------------------


def test_settled_pod_is_not_busy() -> None:
    status = read_resize_status(pod())
    assert not status.busy
    assert status.pending_reason is None and not status.in_progress and status.actuated


@pytest.mark.parametrize("reason", ["Deferred", "Infeasible"])
def test_pending_condition_is_read_with_its_reason_and_message(reason: str) -> None:
    condition = {
        "type": "PodResizePending",
        "status": "True",
        "reason": reason,
        "message": "Node didn't have enough capacity: memory",
    }
    status = read_resize_status(pod(conditions=[condition]))
    assert status.pending_reason == reason
    assert status.pending_message == "Node didn't have enough capacity: memory"
    assert status.busy


def test_in_progress_and_its_error_are_read() -> None:
    plain = read_resize_status(pod(conditions=[{"type": "PodResizeInProgress", "status": "True"}]))
    assert plain.in_progress and plain.busy and plain.error_message is None
    failed = read_resize_status(
        pod(
            conditions=[
                {
                    "type": "PodResizeInProgress",
                    "status": "True",
                    "reason": "Error",
                    "message": "cgroup write failed",
                }
            ]
        )
    )
    assert failed.error_message == "cgroup write failed"


def test_a_false_condition_is_no_resize() -> None:
    status = read_resize_status(
        pod(conditions=[{"type": "PodResizePending", "status": "False", "reason": "Deferred"}])
    )
    assert status.pending_reason is None and not status.busy


def test_kubelet_behind_the_spec_is_busy_and_absent_generation_is_not() -> None:
    assert read_resize_status(pod(generation=3, observed=2)).kubelet_behind
    assert read_resize_status(pod(generation=3, observed=2)).busy
    assert not read_resize_status(pod(generation=3, observed=None)).busy


def test_status_resources_behind_the_spec_are_not_actuated() -> None:
    old = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    status = read_resize_status(pod(status_resources=old))
    assert not status.actuated and status.busy


def test_quantities_are_compared_by_value_not_spelling() -> None:
    same = {
        "requests": {"cpu": "1000m", "memory": "2048Mi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert read_resize_status(pod(status_resources=same)).actuated


# --- the last check of the patch -------------------------------------------------------


def test_a_cpu_memory_patch_passes_and_merges_by_key() -> None:
    p = pod()
    change = patch(requests={"memory": "3Gi"}, limits={"memory": "6Gi"})
    check_patch(p, change)
    merged = resized_containers(p, change)[0]["resources"]
    assert merged["requests"] == {"cpu": "1", "memory": "3Gi", "nvidia.com/gpu": "1"}
    assert merged["limits"] == {"cpu": "2", "memory": "6Gi", "nvidia.com/gpu": "1"}
    assert p["spec"]["containers"][0]["resources"]["requests"]["memory"] == "2Gi", "mutated"


def test_a_gpu_in_the_patch_is_refused() -> None:
    with pytest.raises(ResizeRefusedError) as err:
        check_patch(pod(), patch(requests={"nvidia.com/gpu": "2"}, limits={"nvidia.com/gpu": "2"}))
    assert err.value.reason == "NotResizableInPlace"
    assert "nvidia.com/gpu" in err.value.message


@pytest.mark.parametrize(
    "bad",
    [
        patch(container="ghost", requests={"memory": "3Gi"}),
        {"spec": {"containers": [{"name": "main", "resources": {"claims": {"cpu": "1"}}}]}},
        {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}},
    ],
)
def test_patches_that_touch_anything_else_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ResizeRefusedError) as err:
        check_patch(pod(), bad)
    assert err.value.reason == "InvalidResizePatch"


def test_a_patch_that_would_change_the_qos_class_is_refused() -> None:
    guaranteed = pod(
        requests={"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
        limits={"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
    )
    with pytest.raises(ResizeRefusedError) as err:
        check_patch(guaranteed, patch(requests={"memory": "5Gi"}, limits={"memory": "6Gi"}))
    assert err.value.reason == "QoSWouldChange"
    assert "Guaranteed to Burstable" in err.value.message
    check_patch(guaranteed, patch(requests={"memory": "5Gi"}, limits={"memory": "5Gi"}))


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str]] = []

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        self.calls.append((path, body, content_type))
        return {"metadata": {"generation": 2}}


def test_apply_sends_a_strategic_patch_to_the_resize_subresource() -> None:
    client = RecordingClient()
    change = patch(requests={"memory": "3Gi"}, limits={"memory": "6Gi"})
    result = asyncio.run(apply_resize(client, pod(), change))  # type: ignore[arg-type]
    assert result == {"metadata": {"generation": 2}}
    assert client.calls == [("/api/v1/namespaces/ns/pods/p/resize", change, STRATEGIC_PATCH)]


def test_apply_refuses_before_sending() -> None:
    client = RecordingClient()
    with pytest.raises(ResizeRefusedError):
        asyncio.run(apply_resize(client, pod(), patch(requests={"nvidia.com/gpu": "2"})))  # type: ignore[arg-type]
    assert client.calls == []
