"""What a pod asks of its node beyond CPU, memory and GPUs, read from the raw pod: node
constraints, extended resources and host ports (counted as the scheduler counts them),
and the fields the binder refuses rather than ignore."""

from __future__ import annotations

from typing import Any

import pytest

from egpu.domain.scheduling import (
    NodeConstraints,
    PreferredTerm,
    Requirement,
    SelectorTerm,
    Toleration,
    host_port_key,
)
from egpu.engines.binding import check_gang, gang_request, shape_key
from egpu.engines.binding.gangs import BadGang, Gang
from egpu.state.pods import pod_demand, read_pod
from objects import gpu_pod, member_pod

pytestmark = pytest.mark.unit
GIB = 2**30


def with_spec(pod: dict[str, Any], **spec: Any) -> dict[str, Any]:
    pod["spec"].update(spec)
    return pod


def test_node_selector_affinity_and_tolerations_are_read() -> None:
    pod = with_spec(
        gpu_pod("p"),
        nodeSelector={"pool": "train"},
        tolerations=[
            {"key": "gpu", "operator": "Equal", "value": "broken", "effect": "NoSchedule"},
            {"operator": "Exists"},
        ],
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["3"]}]},
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": ["n1"]}
                            ]
                        },
                    ]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 20,
                        "preference": {"matchExpressions": [{"key": "fast", "operator": "Exists"}]},
                    }
                ],
            }
        },
    )
    facts = read_pod(pod)
    assert facts.problem is None
    assert facts.constraints == NodeConstraints(
        node_selector=(("pool", "train"),),
        required=(
            SelectorTerm(expressions=(Requirement("gen", "Gt", ("3",)),)),
            SelectorTerm(fields=(Requirement("metadata.name", "In", ("n1",)),)),
        ),
        preferred=(PreferredTerm(20, SelectorTerm(expressions=(Requirement("fast", "Exists"),))),),
        tolerations=(Toleration("gpu", "Equal", "broken", "NoSchedule"), Toleration("", "Exists")),
    )
    assert not read_pod(gpu_pod("q")).constraints.active


def test_constraints_the_api_would_refuse_are_a_problem_not_an_exception() -> None:
    pod = with_spec(
        gpu_pod("p"),
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gen", "operator": "Near", "values": ["3"]}]}
                    ]
                }
            }
        },
    )
    facts = read_pod(pod)
    assert facts.problem is not None and "Near" in facts.problem


def test_extended_resources_count_init_containers_sidecars_and_overhead() -> None:
    pod = gpu_pod("p", gpus=2)
    main = pod["spec"]["containers"][0]["resources"]
    main["requests"].update({"rdma/ib": "1", "ephemeral-storage": "10Gi"})
    pod["spec"]["initContainers"] = [
        {"name": "fetch", "resources": {"requests": {"ephemeral-storage": "50Gi"}}},
        {
            "name": "proxy",
            "restartPolicy": "Always",
            "resources": {"limits": {"rdma/ib": "1"}, "requests": {"ephemeral-storage": "1Gi"}},
        },
    ]
    pod["spec"]["overhead"] = {"ephemeral-storage": "1Gi"}
    # fetch runs alone (50Gi) before main (10Gi) beside the proxy sidecar (1Gi)
    assert dict(pod_demand(pod).extras) == {"ephemeral-storage": 51 * GIB, "rdma/ib": 2}


def test_host_ports_are_held_one_each_by_protocol_and_port() -> None:
    pod = gpu_pod("p")
    pod["spec"]["containers"][0]["ports"] = [
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 53, "hostPort": 53, "protocol": "UDP"},
        {"containerPort": 9000},  # no host port
    ]
    assert dict(pod_demand(pod).extras) == {
        host_port_key("TCP", 8080): 1,
        host_port_key("UDP", 53): 1,
    }


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "kubernetes.io/hostname"}
                        ]
                    }
                }
            },
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution",
        ),
        (
            {
                "affinity": {
                    "podAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]
                    }
                }
            },
            "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution",
        ),
        (
            {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]},
            "spec.topologySpreadConstraints",
        ),
        (
            {"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}]},
            "spec.volumes[0].ephemeral (scratch)",
        ),
    ],
)
def test_what_the_binder_does_not_do_sets_the_gang_aside_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    facts = read_pod(with_spec(gpu_pod("p"), **spec))
    assert facts.unsupported == (field,)
    checked = check_gang(facts.gang_id, [facts])
    assert isinstance(checked, BadGang) and checked.unsupported
    assert field in checked.message
    assert read_pod(gpu_pod("q")).unsupported == ()


def test_a_gang_request_carries_its_pods_constraints_and_extras() -> None:
    pods = [
        read_pod(with_spec(member_pod("train", r, 2), nodeSelector={"pool": "a"})) for r in range(2)
    ]
    second = member_pod("train", 1, 2)
    second["spec"]["nodeSelector"] = {"pool": "a"}
    second["spec"]["containers"][0]["ports"] = [{"containerPort": 1, "hostPort": 7000}]
    pods[1] = read_pod(second)
    gang = check_gang("ns/train", pods)
    assert isinstance(gang, Gang)
    request = gang_request(gang, gang.pending, 0, ())
    assert request.constraints == (NodeConstraints(node_selector=(("pool", "a"),)),)
    assert request.extras == ((host_port_key("TCP", 7000), 1),)
    plain = gang_request(gang, [read_pod(member_pod("train", 0, 2))], 0, ())
    assert shape_key(plain) != shape_key(request), "a cached refusal must not be shared"
