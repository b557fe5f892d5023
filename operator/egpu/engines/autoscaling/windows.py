"""Reading a window of samples: averages, growth, and whether any demand arrived."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from egpu.engines.autoscaling.model import MetricKind, MetricSample

DemandReader = Callable[[MetricSample], float | None]


def demand_of(sample: MetricSample, metric: MetricKind, backlog_drain_s: float) -> float | None:
    """The demand a sample reports in the unit the policy sizes on.

    Ratio kinds size on the metric total. LatencySLO sizes on a request rate: the
    arrival rate (the queueing model's lambda) plus the rate that clears the backlog
    within `backlog_drain_s`; a steady-state model alone would leave a flash crowd's
    backlog draining at only the small spare rate.
    """
    if metric is not MetricKind.LATENCY_SLO:
        return sample.value
    if sample.arrival_rate is None:
        return None
    backlog = max(0.0, sample.queued or 0.0)
    return sample.arrival_rate + (backlog / backlog_drain_s if backlog_drain_s > 0 else 0.0)


def samples_in(samples: Iterable[MetricSample], now: float, length_s: float) -> list[MetricSample]:
    """Samples with now - length < timestamp <= now, oldest first."""
    kept = [s for s in samples if now - length_s < s.timestamp <= now]
    kept.sort(key=lambda s: s.timestamp)
    return kept


def _points(
    samples: Iterable[MetricSample], demand: DemandReader, now: float, length_s: float
) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for sample in samples_in(samples, now, length_s):
        value = demand(sample)
        if value is not None:
            points.append((sample.timestamp, max(0.0, value)))
    return points


def window_average(
    samples: Sequence[MetricSample], demand: DemandReader, now: float, length_s: float
) -> float | None:
    """Mean demand over the window, or None when the window holds no usable sample."""
    points = _points(samples, demand, now, length_s)
    if not points:
        return None
    return sum(v for _, v in points) / len(points)


def newest_demand(
    samples: Sequence[MetricSample], demand: DemandReader, now: float, length_s: float
) -> float | None:
    """Demand of the newest usable sample in the window, or None when there is none."""
    points = _points(samples, demand, now, length_s)
    return points[-1][1] if points else None


def growth_rate(
    samples: Sequence[MetricSample], demand: DemandReader, now: float, length_s: float
) -> float:
    """Least-squares slope of demand over the window, in demand units per second.

    A fitted slope rather than last-minus-first, so one noisy scrape cannot fake a trend.
    """
    points = _points(samples, demand, now, length_s)
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0.0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var_t


def has_demand(sample: MetricSample) -> bool:
    """Any request, queued item or arrival at all, whatever the metric kind."""
    return sample.value > 0.0 or (sample.arrival_rate or 0.0) > 0.0 or (sample.queued or 0.0) > 0.0


def last_demand_time(samples: Iterable[MetricSample], now: float) -> float | None:
    """Timestamp of the newest sample (not in the future) that showed any demand."""
    times = [s.timestamp for s in samples if s.timestamp <= now and has_demand(s)]
    return max(times) if times else None
