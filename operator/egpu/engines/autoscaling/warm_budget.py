"""The warm pool's GPU-hour budget: what the pods learned from crowds may cost.

Burst memory (bursts.py) keeps warm pods for crowds seen, up to warmPool.maxSize, for
as long as the crowds are remembered, whatever that costs. With a budget, the ledger
counts the GPU-seconds the pool held beyond its floor (warmPool.size, which the user
pays for knowingly and is never cut) in slices of a sliding window, and the learned
pool is cut to what the budget left can pay for while it would be kept: until the
crowds are forgotten, or one whole window, whichever is shorter. Spent, the pool is
its floor until slices age out of the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from egpu.engines.autoscaling.slices import (
    WINDOW_SLICES,
    add_to_newest,
    slice_of,
    span_to_count,
    within,
)

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class WarmBudgetPolicy:
    gpu_hours: float  # the most the learned pool may hold over the window
    window_s: float

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (math.isfinite(self.gpu_hours) and self.gpu_hours > 0):
            problems.append("warm pool budget gpu_hours must be > 0")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            problems.append("warm pool budget window_s must be > 0")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def slice_s(self) -> float:
        return self.window_s / WINDOW_SLICES

    @property
    def gpu_seconds(self) -> float:
        return self.gpu_hours * SECONDS_PER_HOUR


@dataclass(frozen=True)
class WarmSlice:
    """GPU-seconds warm pods beyond the floor held in [start, start + slice_s)."""

    start: float
    gpu_seconds: float


@dataclass(frozen=True)
class WarmLedger:
    slices: tuple[WarmSlice, ...] = ()  # oldest first
    accounted_until: float | None = None  # what the pool held before this is counted


def account_warm(
    ledger: WarmLedger,
    policy: WarmBudgetPolicy,
    now: float,
    pods_beyond_floor: int,
    gpus_per_pod: int,
    max_gap_s: float,
) -> WarmLedger:
    """Count what the pool held since the ledger was last brought up to date: the
    pods it holds now beyond its floor, for the time since (at most `max_gap_s`)."""
    since = ledger.accounted_until
    kept = within(ledger.slices, policy.window_s, policy.slice_s, now)
    span = span_to_count(since, now, max_gap_s)
    held = max(0, pods_beyond_floor) * max(0, gpus_per_pod) * span
    if held <= 0:
        return WarmLedger(kept, now if since is None else max(since, now))
    start = slice_of(now, policy.slice_s)
    kept = add_to_newest(kept, start, WarmSlice(start, held), _merged)
    return WarmLedger(kept, now)


def _merged(a: WarmSlice, b: WarmSlice) -> WarmSlice:
    return WarmSlice(a.start, a.gpu_seconds + b.gpu_seconds)


def spent_gpu_seconds(ledger: WarmLedger, policy: WarmBudgetPolicy, now: float) -> float:
    kept = within(ledger.slices, policy.window_s, policy.slice_s, now)
    return sum(s.gpu_seconds for s in kept)


@dataclass(frozen=True)
class WarmBudgetCut:
    """The learned pool the budget pays for, of the one burst memory asks for."""

    learned: int  # warm pods beyond the floor burst memory asks for
    affordable: int  # of those, what the budget left pays for
    left_gpu_seconds: float
    hold_s: float  # how long it would pay for them

    @property
    def kept(self) -> int:
        return min(self.learned, self.affordable)


def warm_budget_cut(
    policy: WarmBudgetPolicy,
    ledger: WarmLedger,
    learned: int,
    gpus_per_pod: int,
    forgotten_at: float,
    now: float,
) -> WarmBudgetCut:
    """What the budget left pays for of `learned` warm pods beyond the floor, held
    until the crowds are forgotten (`forgotten_at`) or one window, whichever is
    shorter: floor(left / (gpus_per_pod x hold))."""
    left = policy.gpu_seconds - spent_gpu_seconds(ledger, policy, now)
    hold = min(max(0.0, forgotten_at - now), policy.window_s)
    cost = max(1, gpus_per_pod) * hold
    if left <= 0:
        affordable = 0
    elif cost <= 0:
        affordable = learned  # forgotten now: nothing left to pay for
    else:
        affordable = math.floor(left / cost)
    return WarmBudgetCut(learned, max(0, affordable), left, hold)
