"""Engine policies for unit tests: the bench's egpu service as the engine sees it."""

from __future__ import annotations

from egpu.engines.autoscaling import MetricKind, ScalingPolicy


def slo_policy(**overrides: object) -> ScalingPolicy:
    """p99 under 2 s at 4 requests/s a replica, 30 s stable and 6 s panic windows, 60 s
    scale-down stabilisation, a 10 s cold start, one warm pod; `overrides` on top."""
    base: dict[str, object] = {
        "metric": MetricKind.LATENCY_SLO,
        "target": 4.0,
        "latency_target_s": 2.0,
        "latency_percentile": 0.99,
        "max_replicas": 40,
        "stable_window_s": 30.0,
        "panic_window_s": 6.0,
        "scale_down_stabilization_s": 60.0,
        "time_to_ready_s": 10.0,
        "warm_pool_size": 1,
    }
    base.update(overrides)
    return ScalingPolicy(**base)  # type: ignore[arg-type]
