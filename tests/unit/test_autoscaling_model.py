"""Input validation of the autoscaling value types."""

from __future__ import annotations

import pytest

from egpu.engines.autoscaling import (
    ForecastPolicy,
    MetricKind,
    ScalerState,
    ScalingPolicy,
    ServiceStats,
)

pytestmark = pytest.mark.unit


def test_defaults_follow_knative_and_hpa() -> None:
    p = ScalingPolicy(metric=MetricKind.CONCURRENCY, target=10.0, max_replicas=5)
    assert (p.stable_window_s, p.panic_window_s, p.panic_threshold) == (60.0, 6.0, 2.0)
    assert (p.scale_down_stabilization_s, p.tolerance) == (300.0, 0.1)
    assert MetricKind("TokensPerSecond") is MetricKind.TOKENS_PER_SECOND


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target": 0.0}, "target"),
        ({"min_replicas": 6}, "max_replicas"),
        ({"metric": MetricKind.LATENCY_SLO}, "latency_target_s"),
        ({"latency_percentile": 1.0}, "latency_percentile"),
        ({"panic_window_s": 120.0}, "panic_window_s"),
        ({"panic_threshold": 1.0}, "panic_threshold"),
        ({"scale_down_max_rate": 0.5}, "max_rate"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"warm_pool_size": -1}, "warm_pool_size"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_policies_are_refused_with_the_reason(
    overrides: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "metric": MetricKind.CONCURRENCY,
        "target": 10.0,
        "max_replicas": 5,
    }
    fields.update(overrides)
    with pytest.raises(ValueError, match=message):
        ScalingPolicy(**fields)  # type: ignore[arg-type]


def test_other_value_checks() -> None:
    with pytest.raises(ValueError, match="quantile"):
        ForecastPolicy(quantile=0.0)
    with pytest.raises(ValueError, match="service stats"):
        ServiceStats(service_time_s=0.0)
    with pytest.raises(ValueError, match="replica counts"):
        ScalerState(current_replicas=-1, ready_replicas=0)
