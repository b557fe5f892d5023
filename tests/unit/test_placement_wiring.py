"""Wiring profiles: what the indexes count nodes by, and the ranks read from them."""

from __future__ import annotations

import pytest

from egpu.engines.placement.wiring import (
    BY_COUNT,
    IN_GROUP,
    IN_NUMA,
    free_of,
    keep_class,
    profile_of,
    tier_pods,
    whole_groups_taken,
    wiring_matters,
)

pytestmark = pytest.mark.unit

GROUPS = (0b00001111, 0b11110000)  # two NVLink groups of four
PAIRS = (0b11, 0b1100, 0b110000, 0b11000000)
NUMA = (0b00001111, 0b11110000)


def free(*gpus: int) -> int:
    return sum(1 << g for g in gpus)


def test_a_profile_forgets_which_group_is_which() -> None:
    a = profile_of(free(0, 1, 2, 3, 4), GROUPS, NUMA)
    b = profile_of(free(0, 4, 5, 6, 7), GROUPS, NUMA)
    assert a == b == (((1, 4), (4, 4)), ((1, 4), (4, 4)))
    assert free_of(a) == 5


@pytest.mark.parametrize(
    ("gpus_free", "groups", "gpus", "pods", "expected"),
    [
        ((0, 1, 2, 3), GROUPS, 4, 1, IN_GROUP),
        ((2, 3, 4, 5), GROUPS, 4, 1, BY_COUNT),  # 2 + 2 on both groups and NUMA nodes
        ((0, 1, 2, 3), PAIRS, 3, 1, IN_NUMA),  # no pair holds 3; NUMA node 0 does
        ((1, 2, 3, 5, 6, 7), GROUPS, 3, 2, IN_GROUP),
        ((1, 2, 3, 5, 6, 7), GROUPS, 3, 3, BY_COUNT),
    ],
)
def test_keep_class(
    gpus_free: tuple[int, ...], groups: tuple[int, ...], gpus: int, pods: int, expected: int
) -> None:
    assert keep_class(profile_of(free(*gpus_free), groups, NUMA), gpus, pods) == expected


def test_tier_pods_are_cumulative() -> None:
    # Pairs: 0-1 free, 2 free, 4 free; NUMA 0 has 3 free, NUMA 1 has 1.
    profile = profile_of(free(0, 1, 2, 4), PAIRS, NUMA)
    assert tier_pods(profile, 2) == (1, 1, 2)
    assert tier_pods(profile, 1) == (4, 4, 4)


def test_whole_groups_taken_follows_best_fit() -> None:
    # A 2-GPU pod goes to the half group (2 free) and breaks no whole group.
    profile = profile_of(free(2, 3, 4, 5, 6, 7), GROUPS, NUMA)
    assert whole_groups_taken(profile, 2, 1) == 0
    assert whole_groups_taken(profile, 2, 2) == 1
    assert whole_groups_taken(profile, 4, 1) == 1
    assert whole_groups_taken(profile, 3, 2) == 0  # they do not all fit in groups


def test_wiring_matters_only_where_a_pod_fits_one_of_several_parts() -> None:
    two_groups = [profile_of(free(*range(8)), GROUPS, NUMA)]
    assert wiring_matters(two_groups, 4)
    assert not wiring_matters(two_groups, 8)
    flat = [profile_of(free(*range(8)), tuple(1 << i for i in range(8)), (0xFF,))]
    assert not wiring_matters(flat, 2)
