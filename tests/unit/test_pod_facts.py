"""Reading pods for the binder and the ledger: what they hold, what they belong to, and
which of the operator's own annotations may be believed. Never raises on user input."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from egpu.domain.pod import group_gang_id, lone_gang_id, workload_gang_id
from egpu.state.pods import pod_demand, read_plan, read_pod
from objects import gpu_pod, member_pod, owner, plan_annotation

pytestmark = pytest.mark.unit
GIB = 2**30


def test_demand_counts_init_containers_sidecars_overhead_and_resizes_in_progress() -> None:
    pod = gpu_pod("p", gpus=2, cpu="2", memory="4Gi")
    pod["spec"]["initContainers"] = [
        {"name": "fetch", "resources": {"requests": {"cpu": "6", "memory": "1Gi"}}},
        {
            "name": "proxy",
            "restartPolicy": "Always",
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        },
    ]
    pod["spec"]["overhead"] = {"cpu": "100m", "memory": "128Mi"}
    # fetch runs alone before the sidecar: 6 CPUs; then main (2) beside proxy (0.5)
    demand = pod_demand(pod)
    assert demand.cpu_millis == 6000 + 100
    assert demand.memory_bytes == 5 * GIB + 128 * 2**20
    assert demand.gpus == 2
    # The kubelet still holds the old, larger size while a shrink is in progress.
    pod["status"]["containerStatuses"] = [{"name": "main", "allocatedResources": {"cpu": "8"}}]
    assert pod_demand(pod).cpu_millis == 8000 + 500 + 100


def test_a_plan_is_believed_only_on_the_pod_it_was_made_for() -> None:
    text = plan_annotation("uid-1", "n1", [0, 1], "p1", 2)
    assert read_plan(text, "uid-1") is not None
    assert read_plan(text, "uid-2") is None, "copied from a template or another pod"
    assert read_plan("{not json", "uid-1") is None
    bad = json.dumps({"uid": "uid-1", "node": "n1", "gpus": [-1], "plan": "p", "size": 1})
    assert read_plan(bad, "uid-1") is None


def test_gpu_ids_of_a_bound_pod_need_its_own_plan_for_that_node_and_the_right_count() -> None:
    plan = plan_annotation("u1", "n1", [2, 3], "p", 1)
    trusted = gpu_pod(
        "p",
        gpus=2,
        node="n1",
        uid="u1",
        annotations={"egpu.io/plan": plan, "egpu.io/gpu-ids": "2,3"},
    )
    assert read_pod(trusted).bound_gpus == (2, 3)
    forged = gpu_pod("q", gpus=1, node="n1", uid="u9", annotations={"egpu.io/gpu-ids": "0,1,2"})
    assert read_pod(forged).bound_gpus is None, "no plan of its own: counted, not trusted"
    wrong_count = gpu_pod(
        "r",
        gpus=1,
        node="n1",
        uid="u1",
        annotations={"egpu.io/plan": plan, "egpu.io/gpu-ids": "2,3"},
    )
    assert read_pod(wrong_count).bound_gpus is None
    elsewhere = gpu_pod(
        "s",
        gpus=2,
        node="n2",
        uid="u1",
        annotations={"egpu.io/plan": plan, "egpu.io/gpu-ids": "2,3"},
    )
    assert read_pod(elsewhere).bound_gpus is None


def test_membership_comes_from_the_owner_reference_not_the_labels() -> None:
    member = read_pod(member_pod("train", 3, 4))
    assert (member.gang_id, member.workload, member.rank) == (
        workload_gang_id("ns", "train"),
        "train",
        3,
    )
    assert (member.gang_size, member.gang_min) == (4, 4)
    impostor = gpu_pod(
        "x", labels={"egpu.io/workload": "train", "egpu.io/rank": "0"}, annotations={}
    )
    facts = read_pod(impostor)
    assert facts.workload is None and facts.gang_id == lone_gang_id("ns", "x")
    grouped = read_pod(gpu_pod("g0", labels={"egpu.io/gang": "team"}))
    assert grouped.gang_id == group_gang_id("ns", "team")
    assert read_pod(gpu_pod("other", owners=[owner("rs", kind="ReplicaSet")])).workload is None


def test_a_lone_pod_is_a_gang_of_one_whatever_its_annotations_say() -> None:
    facts = read_pod(gpu_pod("solo", annotations={"egpu.io/gang-size": "8"}))
    assert (facts.gang_size, facts.gang_min, facts.problem) == (1, 1, None)


@pytest.mark.parametrize(
    ("labels", "annotations", "problem"),
    [
        ({"egpu.io/gang": "g"}, {"egpu.io/gang-size": "abc"}, "egpu.io/gang-size='abc'"),
        ({"egpu.io/gang": "g"}, {"egpu.io/gang-size": "0"}, "egpu.io/gang-size='0'"),
        ({"egpu.io/gang": "g", "egpu.io/rank": "abc"}, {}, "egpu.io/rank='abc'"),
        (
            {"egpu.io/gang": "g"},
            {"egpu.io/gang-size": "2", "egpu.io/gang-min-members": "3"},
            "more",
        ),
        ({}, {"egpu.io/resize-headroom": "lots"}, "egpu.io/resize-headroom"),
        ({}, {"egpu.io/within": "[1]"}, "egpu.io/within"),
    ],
)
def test_unreadable_labels_and_annotations_are_problems_not_exceptions(
    labels: dict[str, str], annotations: dict[str, str], problem: str
) -> None:
    facts = read_pod(gpu_pod("p", labels=labels, annotations=annotations))
    assert facts.problem is not None and problem in facts.problem


def test_a_member_without_a_rank_is_a_problem() -> None:
    pod = member_pod("train", 0, 2)
    del pod["metadata"]["labels"]["egpu.io/rank"]
    facts = read_pod(pod)
    assert facts.problem is not None and "egpu.io/rank" in facts.problem


def test_unreadable_resources_are_a_problem_and_count_as_nothing() -> None:
    pod = gpu_pod("p")
    pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    facts = read_pod(pod)
    assert facts.problem is not None and "resources" in facts.problem
    assert facts.demand.gpus == 0


def junk(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Any] = [None, 0, -1, 1.5, "", "abc", "8", True, [], {}]
    if depth < 3:
        choices += [[junk(rng, depth + 1)], {"x": junk(rng, depth + 1)}]
    return rng.choice(choices)


def test_no_pod_however_strange_makes_the_reader_raise() -> None:
    rng = random.Random(7)
    base = member_pod("w", 0, 2, node="n1")
    paths = [
        ("metadata", "labels", "egpu.io/rank"),
        ("metadata", "annotations", "egpu.io/gang-size"),
        ("metadata", "annotations", "egpu.io/plan"),
        ("metadata", "annotations", "egpu.io/gpu-ids"),
        ("metadata", "annotations", "egpu.io/within"),
        ("metadata", "ownerReferences"),
        ("spec", "priority"),
        ("spec", "nodeName"),
        ("status", "containerStatuses"),
    ]
    for _ in range(500):
        pod = json.loads(json.dumps(base))
        for path in rng.sample(paths, 3):
            target = pod
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = junk(rng)
        read_pod(pod)  # must not raise
