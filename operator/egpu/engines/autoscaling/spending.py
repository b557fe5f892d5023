"""Spending the SLO's error budget in a decision: the ledger brought up to date with
what the ready replicas served since the last, the percentile the moment may be sized
for, and whether the budget left can stand in for the warm pool (budget.py has the
ledger's rules; decide.py says when they apply)."""

from __future__ import annotations

from dataclasses import dataclass

from egpu.engines.autoscaling.budget import (
    BudgetLedger,
    BudgetStanding,
    account,
    has_budget,
    moment_percentile,
    standing,
)
from egpu.engines.autoscaling.model import MetricSample, ScalerState, ScalingPolicy
from egpu.engines.autoscaling.queueing import miss_share
from egpu.engines.autoscaling.sizing import Sizer
from egpu.engines.autoscaling.sizing import fmt as _fmt


@dataclass(frozen=True)
class BudgetView:
    """The error budget brought up to date, and the percentile this moment may be
    sized for (the objective's without a budget)."""

    ledger: BudgetLedger
    standing: BudgetStanding | None  # None: no error budget, or no queueing model
    percentile: float
    held: bool = False  # a rise no trusted tide foresaw: sized for the objective

    def describe(self, policy: ScalingPolicy) -> str:
        view, budget = self.standing, policy.error_budget
        if view is None or budget is None:
            return ""
        window = _fmt(budget.window_s)
        if not has_budget(view):
            return (
                f"error budget: {_fmt(view.offered)} requests in the last {window}s, too few "
                f"to spend; sized for p{_fmt(100 * policy.latency_percentile)}"
            )
        message = (
            f"error budget: {view.spent:.0%} spent ({_fmt(view.missed)} of the "
            f"{_fmt(view.allowed)} of {_fmt(view.offered)} requests the last {window}s may "
            f"miss); sized for p{_fmt(100 * self.percentile)}"
        )
        if self.held:
            message += ": the load is rising and no tide profile agrees"
        return message


def budget_view(
    policy: ScalingPolicy,
    sizer: Sizer,
    newest: MetricSample | None,
    state: ScalerState,
    now: float,
) -> BudgetView:
    """Count the requests since the last decision (at the newest sample's arrival
    rate, with the replicas ready now) and read what the budget allows."""
    ledger = state.memory.budget
    budget = policy.error_budget
    objective = policy.latency_percentile
    if budget is None or not sizer.uses_queueing_model or policy.latency_target_s is None:
        return BudgetView(ledger, None, objective)
    assert sizer.service is not None
    rate, share = 0.0, 0.0
    if newest is not None and newest.arrival_rate is not None:
        rate = newest.arrival_rate
        since = now if ledger.accounted_until is None else ledger.accounted_until
        horizon = min(max(0.0, now - since), policy.panic_window_s)
        share = (
            miss_share(
                state.ready_replicas,
                rate,
                newest.queued or 0.0,
                sizer.service,
                policy.latency_target_s,
                horizon,
            )
            or 0.0
        )
    ledger = account(ledger, budget, now, rate, share, policy.panic_window_s)
    view = standing(ledger, budget, objective, now)
    return BudgetView(ledger, view, moment_percentile(view, budget, objective))


def stand_in_for_warm(
    policy: ScalingPolicy, spend: BudgetView, pool_size: int, replica_rps: float
) -> str:
    """Why the warm pool's floor may go this moment ("" when it may not), for the
    caller to say only while the tide is trusted and sizes ahead: the budget left
    covers what the warm pods could save a surprise (their rate for one cold start)."""
    view = spend.standing
    if view is None or pool_size <= 0 or not has_budget(view):
        return ""
    rate = replica_rps
    worth = pool_size * rate * policy.time_to_ready_s
    if view.left < worth:
        return ""
    return (
        f"no warm pool (warmPool.size {policy.warm_pool_size}): the tide profile agrees and "
        f"sizes ahead; the error budget left, {_fmt(view.left)} requests, covers the "
        f"{_fmt(worth)} a surprise could miss without it ({pool_size} x {_fmt(rate)} req/s "
        f"for a {_fmt(policy.time_to_ready_s)}s cold start)"
    )
