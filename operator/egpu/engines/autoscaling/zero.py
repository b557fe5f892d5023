"""Scale to zero after an idle period; wake on the first sign of demand."""

from __future__ import annotations

from collections.abc import Iterable

from egpu.engines.autoscaling.model import MetricSample
from egpu.engines.autoscaling.windows import has_demand, samples_in


def idle_for(last_demand_at: float, now: float) -> float:
    return max(0.0, now - last_demand_at)


def idle_long_enough(last_demand_at: float, now: float, idle_period_s: float) -> bool:
    """Demand seen at `now` itself is never idle, even with a zero idle period."""
    idle = idle_for(last_demand_at, now)
    return idle > 0.0 and idle >= idle_period_s


def wake_signal(samples: Iterable[MetricSample], now: float, window_s: float) -> bool:
    """Any request, queued item or arrival in the recent window."""
    return any(has_demand(s) for s in samples_in(samples, now, window_s))
