"""Which GPUs inside one node a pod gets: one NVLink group if it can, else one NUMA node.

GPU sets are bit masks (bit i = GPU i). Best fit at every step: the group with the
fewest free GPUs that still holds the pod, so whole groups stay free for pods that
need a whole group.
"""

from __future__ import annotations


def lowest_bits(mask: int, count: int) -> int:
    """The `count` lowest set bits of `mask`."""
    taken = 0
    for _ in range(count):
        bit = mask & -mask
        taken |= bit
        mask ^= bit
    return taken


_INDICES: dict[int, tuple[int, ...]] = {}


def indices(mask: int) -> tuple[int, ...]:
    """The GPU indices in a mask, ascending (memoised: a cluster has few distinct masks)."""
    found = _INDICES.get(mask)
    if found is not None:
        return found
    out = []
    rest = mask
    while rest:
        bit = rest & -rest
        out.append(bit.bit_length() - 1)
        rest ^= bit
    found = tuple(out)
    if len(_INDICES) < 65536:
        _INDICES[mask] = found
    return found


def _fewest_groups(free: int, groups: tuple[int, ...], count: int) -> int:
    """Span as few groups as possible: the fullest free groups whole, the rest best fit."""
    parts = [free & g for g in groups if free & g]
    chosen = 0
    remaining = count
    while remaining:
        fitting = [p for p in parts if p.bit_count() >= remaining]
        if fitting:
            part = min(fitting, key=lambda p: (p.bit_count(), p & -p))
            return chosen | lowest_bits(part, remaining)
        part = max(parts, key=lambda p: (p.bit_count(), -(p & -p)))
        parts.remove(part)
        chosen |= part
        remaining -= part.bit_count()
    return chosen


def pick_gpus(free: int, groups: tuple[int, ...], numa: tuple[int, ...], count: int) -> int:
    """A mask of `count` GPUs from `free`, or 0 when fewer than `count` are free."""
    available = free.bit_count()
    if available < count or count <= 0:
        return 0
    if available == count:
        return free
    best_group = 0
    best_free = 0
    for group in groups:
        in_group = (free & group).bit_count()
        if in_group >= count and (not best_group or in_group < best_free):
            best_group, best_free = group, in_group
    if best_group:
        return lowest_bits(free & best_group, count)
    numa_fits = [free & n for n in numa if (free & n).bit_count() >= count]
    if numa_fits:
        home = min(numa_fits, key=lambda m: (m.bit_count(), m & -m))
        return _fewest_groups(home, groups, count)
    return _fewest_groups(free, groups, count)
