"""The resize loop's inputs built from raw objects: the workload's policy, resources
that must not be resized, the pod's QoS class, and the node's free room."""

from __future__ import annotations

from typing import Any

import pytest

from egpu.engines.resize import (
    GIB,
    NodeRoom,
    QoSClass,
    ResizeMode,
    ResourceKind,
    UsageSample,
)
from egpu.state.resize_inputs import (
    hidden_resources,
    pod_qos,
    pod_resize_input,
    resizable_now,
    workload_resize,
)

pytestmark = pytest.mark.unit

BOTH = {
    "mode": "Auto",
    "cpu": {"min": "500m", "max": "8", "step": "500m"},
    "memory": {"min": "1Gi", "max": "64Gi", "step": "1Gi"},
}


def container(name: str = "main", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
        },
        **extra,
    }


def running_pod(containers: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    containers = containers or [container()]
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"nodeName": "n1", "containers": containers},
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "containerStatuses": [
                {"name": c["name"], "resources": c["resources"]} for c in containers
            ],
            **status,
        },
    }


def test_policy_bounds_and_steps_become_integers() -> None:
    w = workload_resize(BOTH)
    assert w.policy.mode is ResizeMode.AUTO
    assert (w.policy.cpu.min, w.policy.cpu.max, w.policy.cpu.step) == (500, 8000, 500)
    assert (w.policy.memory.min, w.policy.memory.max, w.policy.memory.step) == (
        GIB,
        64 * GIB,
        GIB,
    )
    assert w.covers == {ResourceKind.CPU, ResourceKind.MEMORY}


def test_a_missing_bound_means_that_resource_is_not_resized() -> None:
    w = workload_resize({"mode": "Recommend", "memory": BOTH["memory"]})
    assert w.covers == {ResourceKind.MEMORY}
    assert hidden_resources(container(), w.covers) == {ResourceKind.CPU}


def test_default_policy_is_off_and_bad_policy_raises() -> None:
    assert workload_resize(None).policy.mode is ResizeMode.OFF
    with pytest.raises(ValueError):
        workload_resize({"mode": "Auto", "memory": {"min": "4Gi", "max": "2Gi", "step": "0"}})


def test_restart_container_resize_policy_hides_that_resource() -> None:
    c = container(
        resizePolicy=[
            {"resourceName": "memory", "restartPolicy": "RestartContainer"},
            {"resourceName": "cpu", "restartPolicy": "NotRequired"},
        ]
    )
    covers = frozenset({ResourceKind.CPU, ResourceKind.MEMORY})
    assert hidden_resources(c, covers) == {ResourceKind.MEMORY}


def test_engine_input_hides_resources_but_keeps_the_pods_qos() -> None:
    guaranteed = container()
    guaranteed["resources"]["requests"].update(cpu="2", memory="4Gi")
    pod = running_pod([guaranteed], qosClass="Guaranteed")
    sample = UsageSample(10.0, 500.0, float(GIB))
    inp = pod_resize_input(
        pod,
        workload_resize({"mode": "Auto", "memory": BOTH["memory"]}),
        NodeRoom(1000, GIB),
        lambda name: (sample,) if name == "main" else (),
        last_resize_at=5.0,
        resize_in_progress=True,
    )
    (state,) = inp.containers
    assert state.resources.cpu_request is None and state.resources.cpu_limit is None
    assert state.resources.memory_request == state.resources.memory_limit == 4 * GIB
    assert state.samples == (sample,)
    assert inp.qos is QoSClass.GUARANTEED
    assert inp.last_resize_at == 5.0 and inp.resize_in_progress


def test_qos_is_computed_when_the_status_lacks_it() -> None:
    pod = running_pod()
    del pod["status"]["qosClass"]
    assert pod_qos(pod) is QoSClass.BURSTABLE


def test_only_running_bound_pods_with_status_resources_are_resizable() -> None:
    assert resizable_now(running_pod())
    assert not resizable_now(running_pod(phase="Pending"))
    unbound = running_pod()
    del unbound["spec"]["nodeName"]
    assert not resizable_now(unbound)
    deleting = running_pod()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not resizable_now(deleting)
    no_resources = running_pod()
    del no_resources["status"]["containerStatuses"][0]["resources"]
    assert not resizable_now(no_resources), "the API server would refuse the resize"
