"""The engine-only run of a trace gives the traffic simulator's scorecard."""

from __future__ import annotations

import pytest

from egpu.engines.autoscaling import MetricKind, ScalingPolicy
from egpu.engines.autoscaling.simulate import ServiceModel, SimConfig
from egpu.sim.engine_run import engine_result
from egpu.sim.traces import steps

pytestmark = pytest.mark.unit

MODEL = ServiceModel(service_time_s=1.0, slots_per_replica=4, cold_start_s=10.0, warm_start_s=0.0)


def test_a_step_is_scored_per_second_with_its_capacity_lag() -> None:
    policy = ScalingPolicy(
        metric=MetricKind.LATENCY_SLO,
        target=4.0,
        latency_target_s=2.0,
        latency_percentile=0.99,
        max_replicas=40,
        stable_window_s=30.0,
        panic_window_s=6.0,
        time_to_ready_s=10.0,
    )
    trace = steps([(0, 3), (30, 40), (90, 40)])
    result = engine_result("egpu-x", trace, policy, MODEL, 2.0, SimConfig(0.25, 0.5))
    seconds = result["seconds"]
    assert len(seconds) == 90
    assert sum(s[1] for s in seconds) == pytest.approx(30 * 3 + 60 * 40, rel=1e-3)
    met = sum(s[2] for s in seconds) / sum(s[1] for s in seconds)
    assert result["slo_pct"] == pytest.approx(100.0 * met, rel=1e-3)
    assert all(s[2] == pytest.approx(s[1]) for s in seconds[:30])  # calm: all in time
    # The jump to 40 req/s waits a cold start for its capacity, not much more.
    (lag,) = result["capacity_lag_s"]
    assert lag is not None and 10.0 <= lag <= 12.0
    assert result["peak_pods"] >= 10
    assert 89.0 <= result["timeline"][-1]["t"] <= 90.0  # one point a second
