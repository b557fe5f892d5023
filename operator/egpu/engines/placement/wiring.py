"""A node's free GPUs as its wiring sees them: a profile the indexes count by.

A profile is (NVLink groups, NUMA nodes): per group and per NUMA node (free GPUs,
size), each sorted, so nodes that differ only by which group is
which share one profile. A cluster has few distinct profiles (15 for 8 GPUs in two
groups of four), so a domain can count its nodes by profile and answer "does any
node here keep a pod inside one NVLink group" without visiting nodes.
"""

from __future__ import annotations

from collections.abc import Iterable

Profile = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]

# How a pod's GPUs sit on a node, best first (one place for the order).
IN_GROUP = 0  # every pod inside one NVLink group
IN_NUMA = 1  # every pod inside one NUMA node
BY_COUNT = 2  # some pod spans NUMA nodes

_PROFILES: dict[tuple[int, tuple[int, ...], tuple[int, ...]], Profile] = {}


def profile_of(free: int, groups: tuple[int, ...], numa: tuple[int, ...]) -> Profile:
    """The profile of a node whose free GPUs are the mask `free` (memoised)."""
    key = (free, groups, numa)
    found = _PROFILES.get(key)
    if found is None:
        found = (
            tuple(sorted(((free & g).bit_count(), g.bit_count()) for g in groups)),
            tuple(sorted(((free & n).bit_count(), n.bit_count()) for n in numa)),
        )
        if len(_PROFILES) < 65536:
            _PROFILES[key] = found
    return found


def free_of(profile: Profile) -> int:
    return sum(free for free, _ in profile[0])


def group_pods(profile: Profile, gpus: int) -> int:
    """Pods of `gpus` GPUs that fit inside one NVLink group each."""
    return sum(free // gpus for free, _ in profile[0])


def numa_pods(profile: Profile, gpus: int) -> int:
    """Pods of `gpus` GPUs that fit inside one NUMA node each."""
    return sum(free // gpus for free, _ in profile[1])


def keep_class(profile: Profile, gpus: int, pods: int) -> int:
    """IN_GROUP, IN_NUMA or BY_COUNT for `pods` pods of `gpus` GPUs on such a node."""
    if group_pods(profile, gpus) >= pods:
        return IN_GROUP
    if numa_pods(profile, gpus) >= pods:
        return IN_NUMA
    return BY_COUNT


def tier_pods(profile: Profile, gpus: int) -> tuple[int, int, int]:
    """Pods that fit per class, cumulative: (in a group, in a group or NUMA node, any)."""
    grouped = group_pods(profile, gpus)
    numa = max(grouped, numa_pods(profile, gpus))
    return grouped, numa, max(numa, free_of(profile) // gpus)


def whole_groups_taken(profile: Profile, gpus: int, pods: int) -> int:
    """Whole free NVLink groups that `pods` pods inside groups break into, placed best
    fit first as `gpus.pick_gpus` does (0 when they do not all fit inside groups)."""
    if group_pods(profile, gpus) < pods:
        return 0
    frees = [[free, size, free == size] for free, size in profile[0]]
    for _ in range(pods):
        pick = min((g for g in frees if g[0] >= gpus), key=lambda g: g[0])
        pick[0] -= gpus
    return sum(1 for free, size, whole in frees if whole and free < size)


def wiring_matters(profiles: Iterable[Profile], gpus: int) -> bool:
    """Whether, on some node with one of these profiles, a pod of `gpus` GPUs could sit
    inside one of several groups or NUMA nodes (else wiring cannot rank nodes for it)."""
    for groups, numa in profiles:
        for parts in (groups, numa):
            if len(parts) > 1 and any(size >= gpus for _, size in parts):
                return True
    return False
