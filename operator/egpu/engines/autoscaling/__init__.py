"""Autoscaling decisions for GPU inference services (pure: `now` is passed in).

Entry point: `decide(policy, window, state, now, free_pod_slots=..., history=...)`.
"""

from egpu.engines.autoscaling.decide import decide, decider
from egpu.engines.autoscaling.forecast import build_daily_history
from egpu.engines.autoscaling.model import (
    Burst,
    DailyLoadHistory,
    Decision,
    Demand,
    Floors,
    ForecastPolicy,
    MetricKind,
    MetricSample,
    MetricWindow,
    Mode,
    Reason,
    ReasonCode,
    Recommendation,
    ScalerMemory,
    ScalerState,
    ScalingPolicy,
    ScheduleEntry,
    ServiceStats,
)

__all__ = [
    "Burst",
    "DailyLoadHistory",
    "Decision",
    "Demand",
    "Floors",
    "ForecastPolicy",
    "MetricKind",
    "MetricSample",
    "MetricWindow",
    "Mode",
    "Reason",
    "ReasonCode",
    "Recommendation",
    "ScalerMemory",
    "ScalerState",
    "ScalingPolicy",
    "ScheduleEntry",
    "ServiceStats",
    "build_daily_history",
    "decide",
    "decider",
]
