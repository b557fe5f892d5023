"""The SLO's error budget: the share of requests that may miss, counted over a window.

A LatencySLO asks that a share p of the requests (say 99 %) meet the latency target.
Sized for the p-th percentile at every moment, a service spends almost none of the
1 - p that may miss: replicas come whole, so most moments do far better than p. The
ledger counts, over a sliding window, the requests that arrived and those expected to
have missed (queueing.miss_share, with the replicas that were ready then). While at
most half of what the window allows to miss has been spent, a moment may be sized
for a looser percentile (never below `loosest_percentile`); from half spent to all of
it the percentile tightens linearly back to p. Panic is always sized for p.

A window that has seen too few requests for its budget to hold MIN_BUDGET_REQUESTS
gives nothing to spend: a quiet service is sized strictly.
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

# Fewer requests than this allowed to miss in the window: nothing to spend.
MIN_BUDGET_REQUESTS = 10.0
# Spent up to this share of the budget: the loosest percentile.
LOOSE_UNTIL_SPENT = 0.5
BUDGET_SLICES = WINDOW_SLICES


@dataclass(frozen=True)
class BudgetPolicy:
    window_s: float
    loosest_percentile: float  # a fraction, e.g. 0.90

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            problems.append("error budget window_s must be > 0")
        if not 0.0 < self.loosest_percentile < 1.0:
            problems.append("error budget loosest_percentile must be in (0, 1)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def slice_s(self) -> float:
        return self.window_s / BUDGET_SLICES


@dataclass(frozen=True)
class BudgetSlice:
    """Requests that arrived in [start, start + slice_s), and those expected to miss."""

    start: float
    offered: float
    missed: float


@dataclass(frozen=True)
class BudgetLedger:
    slices: tuple[BudgetSlice, ...] = ()  # oldest first
    accounted_until: float | None = None  # requests before this are counted


def account(
    ledger: BudgetLedger,
    policy: BudgetPolicy,
    now: float,
    arrival_rate: float,
    miss_share: float,
    max_gap_s: float,
) -> BudgetLedger:
    """Count the requests since the ledger was last brought up to date, at the
    current arrival rate and miss share. A gap longer than `max_gap_s` (the operator
    was away) counts only its last `max_gap_s`: what happened before is not known."""
    since = ledger.accounted_until
    kept = _within(ledger.slices, policy, now)
    span = span_to_count(since, now, max_gap_s)
    if span <= 0 or not math.isfinite(arrival_rate):
        return BudgetLedger(kept, now if since is None else max(since, now))
    offered = max(0.0, arrival_rate) * span
    missed = offered * min(1.0, max(0.0, miss_share))
    start = slice_of(now, policy.slice_s)
    kept = add_to_newest(kept, start, BudgetSlice(start, offered, missed), _merged)
    return BudgetLedger(kept, now)


def _merged(a: BudgetSlice, b: BudgetSlice) -> BudgetSlice:
    return BudgetSlice(a.start, a.offered + b.offered, a.missed + b.missed)


def _within(
    slices: tuple[BudgetSlice, ...], policy: BudgetPolicy, now: float
) -> tuple[BudgetSlice, ...]:
    return within(slices, policy.window_s, policy.slice_s, now)


@dataclass(frozen=True)
class BudgetStanding:
    offered: float
    missed: float
    allowed: float  # requests the objective lets miss over the window

    @property
    def spent(self) -> float:
        return self.missed / self.allowed if self.allowed > 0 else math.inf

    @property
    def left(self) -> float:
        return self.allowed - self.missed


def standing(
    ledger: BudgetLedger, policy: BudgetPolicy, objective: float, now: float
) -> BudgetStanding:
    kept = _within(ledger.slices, policy, now)
    offered = sum(s.offered for s in kept)
    missed = sum(s.missed for s in kept)
    return BudgetStanding(offered, missed, (1.0 - objective) * offered)


def has_budget(view: BudgetStanding) -> bool:
    return view.allowed >= MIN_BUDGET_REQUESTS


def moment_percentile(view: BudgetStanding, policy: BudgetPolicy, objective: float) -> float:
    """The percentile this moment may be sized for: the loosest while at most half the
    budget is spent, then linearly back to the objective once all of it is."""
    loosest = min(policy.loosest_percentile, objective)
    if not has_budget(view) or view.spent >= 1.0:
        return objective
    if view.spent <= LOOSE_UNTIL_SPENT:
        return loosest
    tightened = (view.spent - LOOSE_UNTIL_SPENT) / (1.0 - LOOSE_UNTIL_SPENT)
    return loosest + (objective - loosest) * tightened
