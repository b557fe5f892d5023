"""Daily-seasonality forecast: raise the floor ahead of a peak seen on previous days.

The history is a per-time-of-day profile per day. Looking ahead past midnight reads
the same day's early buckets, i.e. each day is treated as a 24-hour cycle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from egpu.engines.autoscaling.model import SECONDS_PER_DAY, DailyLoadHistory, ForecastPolicy
from egpu.engines.autoscaling.schedule import local_time, seconds_of_day


def lookahead_buckets(second_of_day: int, lead_s: float, bucket_s: int) -> list[int]:
    """Bucket indices covering [now, now + lead], wrapping past midnight."""
    per_day = SECONDS_PER_DAY // bucket_s
    first = second_of_day // bucket_s
    last = int((second_of_day + max(0.0, lead_s)) // bucket_s)
    count = min(per_day, last - first + 1)
    return [(first + i) % per_day for i in range(count)]


def nearest_rank(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    index = max(0, math.ceil(quantile * len(ordered)) - 1)
    return ordered[index]


def forecast_demand(
    history: DailyLoadHistory,
    now: float,
    lead_s: float,
    timezone: str,
    policy: ForecastPolicy,
) -> float | None:
    """Demand expected within the next `lead_s`, from the same hours on previous days.

    Per day, the peak over the look-ahead buckets; across days, a quantile of those
    peaks (robust against one unusual day), times the margin. None when disabled or
    fewer than `min_days` days have data for those hours.
    """
    if not policy.enabled:
        return None
    buckets = lookahead_buckets(seconds_of_day(local_time(now, timezone)), lead_s, history.bucket_s)
    peaks: list[float] = []
    for day in history.days:
        seen = [v for v in (day[b] for b in buckets) if v is not None]
        if seen:
            peaks.append(max(seen))
    if len(peaks) < policy.min_days:
        return None
    return nearest_rank(peaks, policy.quantile) * policy.margin


def build_daily_history(
    points: Iterable[tuple[float, float]],
    now: float,
    bucket_s: int,
    days: int,
    timezone: str,
) -> DailyLoadHistory:
    """Bin (timestamp, demand) points into per-day, per-bucket peaks.

    Day 0 is yesterday (local calendar); today's points are left out, being already
    visible to the reactive rules. Points older than `days` days are dropped.
    """
    per_day = SECONDS_PER_DAY // bucket_s
    rows: list[list[float | None]] = [[None] * per_day for _ in range(days)]
    today = local_time(now, timezone).date()
    for timestamp, demand in points:
        moment = local_time(timestamp, timezone)
        age = (today - moment.date()).days - 1
        if not 0 <= age < days:
            continue
        index = seconds_of_day(moment) // bucket_s
        previous = rows[age][index]
        rows[age][index] = demand if previous is None else max(previous, demand)
    return DailyLoadHistory(bucket_s, tuple(tuple(row) for row in rows))
