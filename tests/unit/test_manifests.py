"""The member pod builder: headroom for pods that grow in place, moved members."""

from __future__ import annotations

import json
from typing import Any

import pytest

from egpu.actuators.manifests import (
    MOVED_MEMBERS_ANNOTATION,
    build_member_pod,
    dropped_ranks,
    gang_marks,
    moved_member_record,
    resize_headroom,
    with_moved_size,
)
from egpu.state.ledger_sync import pod_demand

pytestmark = pytest.mark.unit
GIB = 2**30


def workload(resize: dict[str, Any] | None = None, moved: Any = None) -> dict[str, Any]:
    annotations = {MOVED_MEMBERS_ANNOTATION: json.dumps(moved)} if moved is not None else {}
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "annotations": annotations},
        "spec": {
            "replicas": 2,
            "gpusPerPod": 2,
            "resize": resize or {"mode": "Off"},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "4Gi"},
                                "limits": {"memory": "8Gi"},
                            },
                        },
                        {"name": "side", "resources": {"requests": {"cpu": "100m"}}},
                    ]
                }
            },
        },
    }


AUTO = {
    "mode": "Auto",
    "cpu": {"min": "1", "max": "8", "step": "500m"},
    "memory": {"min": "1Gi", "max": "64Gi", "step": "2Gi"},
}


@pytest.mark.parametrize(
    ("resize", "headroom"),
    [
        ({"mode": "Off"}, None),
        ({**AUTO, "mode": "Recommend"}, None),
        (AUTO, {"cpu": "500m", "memory": "2Gi"}),  # one step of each resized resource
        ({"mode": "Auto", "memory": AUTO["memory"]}, {"memory": "2Gi"}),
        ({**AUTO, "headroom": {"memory": "8Gi"}}, {"memory": "8Gi"}),
        ({**AUTO, "headroom": {}}, None),  # explicitly none
    ],
)
def test_resize_headroom(resize: dict[str, Any], headroom: dict[str, str] | None) -> None:
    assert resize_headroom({"resize": resize}) == headroom
    pod = build_member_pod(workload(resize), 0)
    raw = pod["metadata"]["annotations"].get("egpu.io/resize-headroom")
    assert (json.loads(raw) if raw else None) == headroom


def test_a_moved_rank_comes_back_at_its_new_size_inside_its_domain() -> None:
    before = build_member_pod(workload(AUTO), 1)
    grown = [
        {
            "name": "main",
            "resources": {"requests": {"memory": "12Gi"}, "limits": {"memory": "16Gi"}},
        }
    ]
    record = moved_member_record(before, grown, ("b0", "b0-l1"))
    assert record["containers"]["main"] == {
        "requests": {"cpu": "1", "memory": "12Gi"},
        "limits": {"memory": "16Gi"},  # the GPU limit is not the record's to keep
    }
    assert pod_demand(with_moved_size(before, record)).memory_bytes == 12 * GIB
    assert pod_demand(before).memory_bytes == 4 * GIB  # the copy, not the pod, changed

    body = workload(AUTO, moved={"1": record})
    again = build_member_pod(body, 1)
    main = again["spec"]["containers"][0]["resources"]
    assert main["requests"] == {"cpu": "1", "memory": "12Gi", "nvidia.com/gpu": "2"}
    assert main["limits"] == {"memory": "16Gi", "nvidia.com/gpu": "2"}
    assert json.loads(again["metadata"]["annotations"]["egpu.io/within"]) == ["b0", "b0-l1"]
    other = build_member_pod(body, 0)  # other ranks keep the template's size
    assert other["spec"]["containers"][0]["resources"]["requests"]["memory"] == "4Gi"
    assert "egpu.io/within" not in other["metadata"]["annotations"]


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', '{"0": {"containers": [1]}}'])
def test_an_unreadable_moved_record_is_ignored(raw: str) -> None:
    body = workload(AUTO)
    body["metadata"]["annotations"][MOVED_MEMBERS_ANNOTATION] = raw
    pod = build_member_pod(body, 0)
    assert pod["spec"]["containers"][0]["resources"]["requests"]["memory"] == "4Gi"


def test_a_repaired_member_gets_the_resume_point_in_env_and_annotation() -> None:
    body = workload()
    body["metadata"]["annotations"]["egpu.io/repair"] = json.dumps(
        {"restarts": 1, "lastRepair": 5.0, "resumeFrom": "s3://ckpt/step-900"}
    )
    pod = build_member_pod(body, 1)
    assert pod["metadata"]["annotations"]["egpu.io/resume-from"] == "s3://ckpt/step-900"
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["EGPU_RESUME_FROM"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['egpu.io/resume-from']"
    )


@pytest.mark.parametrize("raw", ["{", "[]", '{"resumeFrom": 7}', '{"restarts": 1}'])
def test_no_resume_point_without_a_readable_one(raw: str) -> None:
    body = workload()
    body["metadata"]["annotations"]["egpu.io/repair"] = raw
    pod = build_member_pod(body, 0)
    assert "egpu.io/resume-from" not in pod["metadata"]["annotations"]


def test_a_template_cannot_set_the_resume_point() -> None:
    body = workload()
    body["spec"]["template"]["metadata"] = {"annotations": {"egpu.io/resume-from": "fake"}}
    assert "egpu.io/resume-from" not in build_member_pod(body, 0)["metadata"]["annotations"]


def test_ranks_an_elastic_repair_dropped_make_the_gang_smaller() -> None:
    body = workload()
    body["spec"]["replicas"] = 4
    body["metadata"]["annotations"]["egpu.io/repair"] = json.dumps(
        {"restarts": 1, "dropped": [1, 3, 9, -1, "2"]}
    )
    assert dropped_ranks(body) == {1, 3}  # 9 is beyond replicas, the others are not ranks
    pod = build_member_pod(body, 0)
    annotations = pod["metadata"]["annotations"]
    assert (annotations["egpu.io/gang-size"], annotations["egpu.io/gang-min-members"]) == ("2", "2")
    assert gang_marks({"replicas": 4, "gang": {"minMembers": 3}}, dropped=2) == ("2", "2")
    assert gang_marks({"replicas": 4, "gang": {"minMembers": 3}}) == ("4", "3")


@pytest.mark.parametrize("raw", ["{", '{"dropped": 2}', '{"dropped": null}'])
def test_an_unreadable_record_drops_nothing(raw: str) -> None:
    body = workload()
    body["metadata"]["annotations"]["egpu.io/repair"] = raw
    assert dropped_ranks(body) == frozenset()
