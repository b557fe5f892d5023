from __future__ import annotations

import json
from typing import Any

import pytest

from egpu.controllers.binder import Gang, bound_domain, gang_request, shape_key

pytestmark = pytest.mark.unit
LEVELS = ("egpu.io/block", "egpu.io/leaf")


def pod(
    name: str,
    rank: int,
    node: str | None = None,
    domain: dict[str, str] | None = None,
    required: str | None = "egpu.io/leaf",
) -> dict[str, Any]:
    annotations = {"egpu.io/gang-size": "4", "egpu.io/gang-min-members": "4"}
    if required:
        annotations["egpu.io/topology-required"] = required
    if domain:
        annotations["egpu.io/domain"] = json.dumps(domain)
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"egpu.io/rank": str(rank)},
            "annotations": annotations,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "c",
                    "resources": {"limits": {"nvidia.com/gpu": "8", "cpu": "4", "memory": "8Gi"}},
                }
            ],
        },
    }


def test_the_rest_of_a_partly_bound_gang_is_pinned_to_its_leaf() -> None:
    where = {"egpu.io/block": "b1", "egpu.io/leaf": "b1-l2", "kubernetes.io/hostname": "n"}
    gang = Gang(
        "ns/g",
        "ns",
        4,
        4,
        pending=[pod("g-2", 2), pod("g-3", 3)],
        bound=[pod("g-0", 0, "n", where), pod("g-1", 1, "n2", where)],
    )
    assert bound_domain(gang, LEVELS, "egpu.io/leaf") == ("b1", "b1-l2")
    request = gang_request(gang, gang.pending, LEVELS)
    assert request.within == ("b1", "b1-l2")
    assert (request.pod_count, request.gpus_per_pod, request.cpu_millis_per_pod) == (2, 8, 4000)
    assert request.min_members is None  # both missing members are needed


def test_no_pin_without_bound_members_or_a_required_level() -> None:
    fresh = Gang("ns/g", "ns", 2, 2, pending=[pod("g-0", 0), pod("g-1", 1)])
    assert bound_domain(fresh, LEVELS, "egpu.io/leaf") == ()
    where = {"egpu.io/block": "b0", "egpu.io/leaf": "b0-l0"}
    loose = Gang(
        "ns/g",
        "ns",
        2,
        2,
        pending=[pod("g-1", 1, required=None)],
        bound=[pod("g-0", 0, "n", where, required=None)],
    )
    assert bound_domain(loose, LEVELS, None) == ()


def test_shape_key_ignores_the_gang_name_only() -> None:
    a = gang_request(Gang("ns/a", "ns", 1, 1, pending=[pod("a-0", 0)]), [pod("a-0", 0)], LEVELS)
    b = gang_request(Gang("ns/b", "ns", 1, 1, pending=[pod("b-0", 0)]), [pod("b-0", 0)], LEVELS)
    assert a.gang_id != b.gang_id and shape_key(a) == shape_key(b)


def with_annotations(p: dict[str, Any], **extra: str) -> dict[str, Any]:
    p["metadata"]["annotations"].update(extra)
    return p


def test_resize_headroom_is_asked_for_and_keys_the_shape() -> None:
    roomy = with_annotations(
        pod("g-0", 0, required=None),
        **{"egpu.io/resize-headroom": json.dumps({"cpu": "500m", "memory": "2Gi"})},
    )
    gang = Gang("ns/g", "ns", 1, 1, pending=[roomy])
    request = gang_request(gang, gang.pending, LEVELS)
    assert (request.cpu_headroom_millis, request.memory_headroom_bytes) == (500, 2 * 2**30)
    plain = Gang("ns/h", "ns", 1, 1, pending=[pod("h-0", 0, required=None)])
    assert shape_key(request) != shape_key(gang_request(plain, plain.pending, LEVELS))


def test_unreadable_headroom_is_a_clear_error() -> None:
    bad = with_annotations(pod("g-0", 0), **{"egpu.io/resize-headroom": "lots"})
    gang = Gang("ns/g", "ns", 1, 1, pending=[bad])
    with pytest.raises(ValueError, match=r"egpu\.io/resize-headroom"):
        gang_request(gang, gang.pending, LEVELS)


def test_a_moved_member_stays_in_its_recorded_domain() -> None:
    moved = with_annotations(
        pod("g-0", 0, required=None), **{"egpu.io/within": json.dumps(["b1", "b1-l2"])}
    )
    gang = Gang("ns/g", "ns", 1, 1, pending=[moved])
    assert gang_request(gang, gang.pending, LEVELS).within == ("b1", "b1-l2")
    # With a required level the bound members' domain rules; a record that agrees
    # with it may only narrow it.
    where = {"egpu.io/block": "b1", "egpu.io/leaf": "b1-l2"}
    inside = Gang(
        "ns/k",
        "ns",
        2,
        2,
        pending=[with_annotations(pod("k-1", 1), **{"egpu.io/within": json.dumps(["b9"])})],
        bound=[pod("k-0", 0, "n", where)],
    )
    assert gang_request(inside, inside.pending, LEVELS).within == ("b1", "b1-l2")
