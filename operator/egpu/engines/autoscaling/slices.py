"""Counts kept in slices of a sliding window: what each ledger shares (budget.py counts
the SLO's requests, warm_budget.py the warm pool's GPU-seconds).

A ledger keeps one slice per `slice_s` that saw anything, oldest first, and the time
it has counted up to. A slice belongs to the window while it ends inside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, TypeVar

# Slices of the sliding window a ledger keeps (what the status stores).
WINDOW_SLICES = 12


class Timed(Protocol):
    @property
    def start(self) -> float: ...


SliceT = TypeVar("SliceT", bound=Timed)


def slice_of(now: float, slice_s: float) -> float:
    """The start of the slice `now` falls in."""
    return math.floor(now / slice_s) * slice_s


def within(
    slices: tuple[SliceT, ...], window_s: float, slice_s: float, now: float
) -> tuple[SliceT, ...]:
    """The slices that end inside the window (and none from the future)."""
    return tuple(s for s in slices if s.start + slice_s > now - window_s and s.start <= now)


def span_to_count(since: float | None, now: float, max_gap_s: float) -> float:
    """Seconds to count since the ledger's last count (0 on the first or a clock that
    went back). A gap longer than `max_gap_s` (the operator was away) counts only its
    last `max_gap_s`: what happened before is not known."""
    if since is None or now <= since:
        return 0.0
    return min(now - since, max_gap_s)


def add_to_newest(
    slices: tuple[SliceT, ...],
    start: float,
    fresh: SliceT,
    merge: Callable[[SliceT, SliceT], SliceT],
) -> tuple[SliceT, ...]:
    """`fresh` (of the slice at `start`) merged into the newest slice when it is that
    one, else appended."""
    if slices and slices[-1].start == start:
        return (*slices[:-1], merge(slices[-1], fresh))
    return (*slices, fresh)
